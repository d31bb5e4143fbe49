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
    """Work on this one process, and on what it waits for (its dependencies, the children
    it spawns), cooperating with any other worker, until it ends.

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

    driven = [process_id]  # the worker claims these: the process, and what it waits for

    def tick() -> None:
        nonlocal last
        if time.monotonic() - last < REFRESH:
            return
        last = time.monotonic()
        p = app.get(process_id)
        if p.status is Status.WAITING:
            _drive_dependencies(app, driven)
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
        WorkerOptions(concurrency=1, process_ids=driven, poll_interval=0.2),
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


def _drive_dependencies(app: App, driven: list[str]) -> None:
    """Add to `driven` (in place: the worker reads it at each claim) what the processes
    there wait for: the children a parent spawned, a dependent's dependencies, theirs in
    turn. Without it `execute` of a process that waits would wait for other workers."""
    seen = set(driven)
    queue = list(driven)
    while queue:
        pid = queue.pop()
        if app.get(pid).status is not Status.WAITING:
            continue
        for dep in app.dependencies(pid)[0]:
            if dep not in seen:
                seen.add(dep)
                driven.append(dep)
                queue.append(dep)
