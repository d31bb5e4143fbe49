"""`corral execute`: drive one process to its end in the foreground, with a progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from corral.app import App
from corral.model import Status
from corral.worker import Worker, WorkerOptions

#: Seconds between two reads of the process for the progress bar.
REFRESH = 0.1


def drive(
    app: App,
    process_id: str,
    *,
    console: Console,
    on_signals: Callable[[Callable[[], None]], None],
) -> int:
    """Work on this one process only, cooperating with any other worker, until it ends.

    Returns the exit code: 0 completed, 1 failed or canceled, 130 interrupted (the
    process is left for other workers to continue). One process runs one iteration at a
    time: the worker needs one slot.
    """
    last = 0.0
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    process = app.get(process_id)
    task = progress.add_task(f"{process.job} {process.status.value}", total=None)

    def tick() -> None:
        nonlocal last
        if time.monotonic() - last < REFRESH:
            return
        last = time.monotonic()
        p = app.get(process_id)
        progress.update(
            task,
            description=f"{p.job} {p.status.value}",
            completed=p.progress_done or 0,
            total=p.progress_total,
        )

    def finished() -> bool:
        return app.get(process_id).status.terminal

    interrupted = False
    worker = Worker(
        app,
        WorkerOptions(concurrency=1, process_ids=[process_id], poll_interval=0.2),
        until=finished,
        tick=tick,
    )

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        worker.stop()

    on_signals(stop)
    console.print(f"process {process_id}", highlight=False)
    with progress:
        worker.run()
        last = 0.0
        tick()
    p = app.get(process_id)
    if p.status is Status.COMPLETED:
        console.print(f"[green]completed[/green] {p.id}", highlight=False)
        return 0
    if p.status.terminal:
        why = f": {p.error.type}: {p.error.message}" if p.error else ""
        console.print(f"[red]{p.status.value}[/red] {p.id}{why}", highlight=False)
        return 1
    if interrupted:
        console.print(
            f"interrupted: process {p.id} is {p.status.value}; any worker will continue it",
            highlight=False,
        )
    return 130
