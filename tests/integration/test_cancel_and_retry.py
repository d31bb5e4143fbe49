"""Cancel (at once, or after the rollback) and retry (where it stopped).

On every backend, the App and a worker in one Python process (the command line's side is
in tests/e2e)."""

from __future__ import annotations

import threading
import time

import pytest

from corral import (
    App,
    Context,
    Status,
    UsageError,
    Worker,
    WorkerOptions,
)
from tests.integration.common import drain


def test_cancel_before_start_ends_it_at_once(app: App) -> None:
    ran: list[bool] = []

    @app.job()
    def never() -> None:
        ran.append(True)

    p = app.submit("never")
    assert app.cancel(p.id).status is Status.CANCELED
    drain(app)
    assert not ran and app.get(p.id).status is Status.CANCELED


def test_cancel_of_a_started_process_rolls_it_back_then_ends_canceled(app: App) -> None:
    rolled: list[bool] = []

    @app.process("long")
    class Long:
        def step(self, ctx: Context) -> bool:
            return False  # would run forever

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("long")
    Worker(app, WorkerOptions(once=True, max_time=0.2, poll_interval=0.01)).run()
    assert app.get(p.id).status is Status.RUNNING
    assert app.cancel(p.id).cancel_requested
    drain(app)
    assert app.get(p.id).status is Status.CANCELED and rolled == [True]


def test_a_running_handler_sees_the_cancel_request(app: App) -> None:
    app.lease_seconds = 0.3  # renewals every 0.1 s carry the request to the handler
    rolled: list[bool] = []
    running = threading.Event()

    @app.process("patient")
    class Patient:
        def step(self, ctx: Context) -> bool:
            running.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ctx.heartbeat()  # raises Cancelled once asked
                time.sleep(0.02)
            return True

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("patient")
    worker = Worker(
        app, WorkerOptions(poll_interval=0.05), until=lambda: app.get(p.id).status.terminal
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert running.wait(5)
    app.cancel(p.id)
    thread.join(15)
    assert not thread.is_alive()
    assert app.get(p.id).status is Status.CANCELED and rolled == [True]


def test_retry_resumes_a_failed_process_where_it_stopped(app: App) -> None:
    fail = [True]

    @app.process("resumable")
    class Resumable:
        def start(self, ctx: Context) -> None:
            ctx.store["started"] = ctx.store.get("started", 0) + 1

        def step(self, ctx: Context) -> bool:
            if fail[0]:
                raise RuntimeError("transient")
            return True

    p = app.submit("resumable")
    drain(app)
    assert app.get(p.id).status is Status.FAILED
    fail[0] = False
    resumed = app.retry(p.id)
    assert resumed.status is Status.RUNNING and resumed.error is None
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.COMPLETED and done.store == {"started": 1}
    with pytest.raises(UsageError.__mro__[1]):  # CorralError: only failed/canceled retry
        app.retry(p.id)
