"""What the App-and-worker integration tests share (their `app` fixture is in conftest.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

from corral import App, Worker, WorkerOptions


def drain(app: App, **kw: Any) -> None:
    Worker(app, WorkerOptions(once=True, poll_interval=0.05, **kw)).run()


def kinds(app: App, pid: str) -> list[str]:
    return [e.kind for e in app.history(pid)]


class VmSteps:
    """The SQLite virtual-machine steps, in units of `every`, of what runs on `conn` inside
    `with VmSteps(conn) as steps:` (`steps.count` afterwards): the cost tests count work,
    not time, so that a noisy machine cannot fail them."""

    def __init__(self, conn: sqlite3.Connection, every: int = 100) -> None:
        self.conn, self.every, self.count = conn, every, 0

    def _tick(self) -> int:
        self.count += 1
        return 0  # go on

    def __enter__(self) -> VmSteps:
        self.count = 0
        self.conn.set_progress_handler(self._tick, self.every)
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.set_progress_handler(None, 0)
