"""What the App-and-worker integration tests share (their `app` fixture is in conftest.py)."""

from __future__ import annotations

from typing import Any

from corral import App, Worker, WorkerOptions


def drain(app: App, **kw: Any) -> None:
    Worker(app, WorkerOptions(once=True, poll_interval=0.05, **kw)).run()


def kinds(app: App, pid: str) -> list[str]:
    return [e.kind for e in app.history(pid)]
