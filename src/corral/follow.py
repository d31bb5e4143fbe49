"""`corral show --follow`: a process's status and progress, live, until it ends.

It only watches: no worker runs here (that is `execute`). It reads the process whenever
the database says something changed, and at least every half second. Progress is what
the worker saved: what a running handler reported, with each lease renewal (every third
of the lease), and each iteration's own at its commit.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corral.app import App
from corral.cli_output import progress_text, state_words
from corral.model import Process

#: Longest wait between two reads, when no change wakes the watcher sooner (seconds).
REFRESH = 0.5


def follow_process(
    app: App,
    process_id: str,
    console: Console,
    *,
    on_signals: Callable[[Callable[[], None]], None],
) -> Process | None:
    """Show the process live on `console` until it ends; the process as it ended, or None
    when interrupted (SIGINT, SIGTERM)."""
    interrupted = False

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        app.storage.notify_local()

    on_signals(stop)
    last_line = ""

    def show(p: Process) -> None:
        # On a terminal a live bar; elsewhere (a log, a pipe) a line whenever it changes.
        nonlocal last_line
        doing = state_words(p, app.clock(), compact=True)
        if console.is_terminal:
            progress.update(
                task,
                description=f"{p.job} {doing}",
                completed=p.progress_done or 0,
                total=p.progress_total,
            )
            return
        line = f"{p.job} {doing} {progress_text(p)}".rstrip()
        if line != last_line:
            console.print(line, highlight=False, soft_wrap=True)
            last_line = line

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task("", total=None)
        while True:
            epoch = app.storage.change_epoch()
            p = app.get(process_id)
            show(p)
            if p.status.terminal:
                return p
            if interrupted:
                return None
            app.storage.wait_for_change(epoch, REFRESH)
