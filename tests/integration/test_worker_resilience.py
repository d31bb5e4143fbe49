"""Nothing healthy ends failed, nothing wedges the worker, on every backend.

Heartbeats count whatever the lease length; a cancel ends a process canceled; a handler
that raises anything, or hangs past its timeout, costs its own process and not the
worker's capacity; work waits for a worker that knows its job; a process class gets a
fresh instance per iteration."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import App, Context, Retry, RetryLater, Status, Worker, WorkerOptions
from corral.errors import Cancelled
from corral.worker import EXIT_WEDGED, WorkerStats
from tests.backends import backend_url
from tests.e2e.conftest import wait_until


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, lease_seconds=30)
        yield a
        a.close()


def drain(app: App, **kw: Any) -> WorkerStats:
    return Worker(app, WorkerOptions(once=True, poll_interval=0.05, **kw)).run()


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[Worker, list[WorkerStats]]]]:
    """Start a worker in a thread; it must have returned by the end of the test."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(app: App, **kw: Any) -> tuple[Worker, list[WorkerStats]]:
        options = {"poll_interval": 0.05, "sweep_interval": 0.1, **kw}
        worker = Worker(app, WorkerOptions(**options))
        out: list[WorkerStats] = []
        thread = threading.Thread(target=lambda: out.append(worker.run()), daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker, out

    yield start
    for worker, thread in started:
        worker.stop(immediately=True)
        thread.join(timeout=10)
        assert not thread.is_alive(), "the worker loop is stuck"


def kinds(app: App, pid: str) -> list[str]:
    return [e.kind for e in app.history(pid)]


def ended(app: App, pid: str, timeout: float = 15) -> Any:
    wait_until(lambda: app.get(pid).status.terminal, timeout=timeout, interval=0.02)
    return app.get(pid)


# --- heartbeats count ---------------------------------------------------------------------------


def test_a_handler_beating_within_its_heartbeat_timeout_is_never_timed_out(
    app: App, running: Callable[..., Any]
) -> None:
    # The lease is 30 s (renewals every 10 s by default), the heartbeat timeout 1 s: the
    # database must learn of the beats far more often than the lease needs renewing.
    @app.job(heartbeat_timeout=1.0, retry=Retry(attempts=1))
    def beats(ctx: Context) -> str:
        for _ in range(10):
            ctx.heartbeat()
            time.sleep(0.3)
        return "alive"

    p = app.submit("beats")
    running(app)
    done = ended(app, p.id)
    assert (done.status, done.result) == (Status.COMPLETED, "alive"), done.error
    assert "timeout" not in kinds(app, p.id)


# --- cancel means canceled ----------------------------------------------------------------------


def test_a_running_process_without_rollback_canceled_ends_canceled(
    app: App, running: Callable[..., Any]
) -> None:
    app.lease_seconds = 0.6  # the cancel request reaches the handler with a renewal
    started = threading.Event()

    @app.job()
    def long(ctx: Context) -> None:
        started.set()
        for _ in range(200):
            ctx.heartbeat()  # raises Cancelled once the request has arrived
            time.sleep(0.05)

    p = app.submit("long")
    running(app)
    assert started.wait(10)
    app.cancel(p.id)
    done = ended(app, p.id)
    assert done.status is Status.CANCELED and done.error is None
    reasons = [e.detail.get("reason") for e in app.history(p.id) if e.kind == "transition"]
    assert "no rollback handler" not in reasons


def test_a_handler_that_sees_cancelled_and_returns_ends_canceled_with_rollback(
    app: App, running: Callable[..., Any]
) -> None:
    app.lease_seconds = 0.6
    rolled: list[str] = []

    @app.process("slow")
    class Slow:
        def start(self, ctx: Context) -> None:
            ctx.store["made"] = "tmp"

        def step(self, ctx: Context) -> bool:
            for _ in range(200):
                if ctx.cancelled:
                    raise Cancelled("asked to stop")
                time.sleep(0.05)
            return True

        def rollback(self, ctx: Context) -> None:
            rolled.append(str(ctx.store.get("made")))

    p = app.submit("slow")
    running(app)
    wait_until(lambda: app.get(p.id).status is Status.RUNNING, timeout=10, interval=0.02)
    app.cancel(p.id)
    done = ended(app, p.id)
    assert done.status is Status.CANCELED and rolled == ["tmp"]


@pytest.mark.parametrize("how", ["retry_later", "graceful_stop"])
def test_a_process_whose_start_ran_gets_its_rollback_on_cancel(app: App, how: str) -> None:
    rolled: list[bool] = []
    release = threading.Event()

    @app.process("setup")
    class Setup:
        def start(self, ctx: Context) -> None:
            if how == "retry_later":
                raise RetryLater(after=3600)
            release.wait(10)  # still running when its worker is told to stop

        def step(self, ctx: Context) -> bool:
            return True

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("setup")
    if how == "retry_later":
        drain(app)
    else:
        worker = Worker(app, WorkerOptions(poll_interval=0.05, grace=0.2))
        thread = threading.Thread(target=worker.run)
        thread.start()
        wait_until(lambda: app.get(p.id).leased, timeout=10, interval=0.02)
        worker.stop()
        thread.join(10)
        release.set()
        assert kinds(app, p.id)[-1] == "released"
    after = app.get(p.id)
    assert after.status is Status.STARTING and after.attempt == 0
    assert app.cancel(p.id).status is Status.STARTING  # a request: its rollback runs first
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.CANCELED and rolled == [True]


def test_a_process_never_claimed_is_canceled_at_once_without_rollback(app: App) -> None:
    rolled: list[bool] = []

    @app.process("never")
    class Never:
        def start(self, ctx: Context) -> None: ...

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("never")
    assert app.cancel(p.id).status is Status.CANCELED
    drain(app)
    assert rolled == []


# --- no handler wedges a worker -----------------------------------------------------------------


async def _cancelled_coroutine() -> None:
    raise asyncio.CancelledError()


@pytest.mark.parametrize(
    ("name", "raise_it"),
    [
        ("SystemExit", lambda: (_ for _ in ()).throw(SystemExit(3))),
        ("KeyboardInterrupt", lambda: (_ for _ in ()).throw(KeyboardInterrupt())),
        ("GeneratorExit", lambda: (_ for _ in ()).throw(GeneratorExit())),
        ("CancelledError", _cancelled_coroutine),
    ],
)
def test_a_base_exception_settles_as_an_error(
    app: App, name: str, raise_it: Callable[[], Any]
) -> None:
    @app.job()
    def dies() -> Any:
        return raise_it()

    @app.job()
    def fine() -> int:
        return 1

    bad, good = app.submit("dies"), app.submit("fine")
    stats = drain(app)
    failed = app.get(bad.id)
    assert failed.status is Status.FAILED and failed.error is not None
    assert failed.error.type == name and not failed.leased
    assert app.get(good.id).status is Status.COMPLETED
    assert stats.exit_code == 0


def test_handlers_stuck_past_start_to_close_do_not_take_the_workers_capacity(
    app: App, running: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="corral.worker")
    release = threading.Event()

    @app.job(start_to_close=0.3, retry=Retry(attempts=1))
    def hangs() -> None:
        release.wait(30)  # ignores every signal: Python cannot stop its thread

    @app.job()
    def quick(x: int) -> int:
        return x

    try:
        stuck = [app.submit("hangs").id for _ in range(2)]
        running(app, concurrency=2)
        for pid in stuck:
            done = ended(app, pid)
            assert done.status is Status.FAILED and done.error is not None
            assert done.error.reason == "timeout"
        # Both slots' threads are still stuck, yet the worker runs at full concurrency.
        quick = [app.submit("quick", {"x": x}).id for x in range(20)]
        for pid in quick:
            assert ended(app, pid).status is Status.COMPLETED
        warnings = [r.getMessage() for r in caplog.records if "handler still running" in r.message]
        assert len(warnings) == 2 and all("start_to_close" in w for w in warnings)
    finally:
        release.set()


def test_a_worker_with_more_stuck_handlers_than_it_tolerates_exits_to_be_replaced(
    app: App, running: Callable[..., Any]
) -> None:
    release = threading.Event()

    @app.job(start_to_close=0.3, retry=Retry(attempts=1))
    def hangs() -> None:
        release.wait(30)

    try:
        for _ in range(3):
            app.submit("hangs")
        _, out = running(app, concurrency=1, max_stuck=2)
        wait_until(lambda: out, timeout=20, interval=0.05)
        assert out[0].stopped_by == "wedged" and out[0].exit_code == EXIT_WEDGED
        assert out[0].stuck == 3
    finally:
        release.set()


# --- work waits for a worker that knows it ------------------------------------------------------


def test_a_process_of_a_job_no_worker_knows_stays_queued(backend: str, tmp_path: Path) -> None:
    if backend == "memory":
        pytest.skip("two apps on one database need a file or a server")
    with backend_url(backend, tmp_path) as url:
        old, new = App(url), App(url)  # a rolling deploy: the new code has a new job

        @old.job()
        def known() -> str:
            return "old"

        @new.job()
        def known() -> str:  # noqa: F811 - the same job in the other app
            return "new"

        @new.job()
        def added() -> str:
            return "added"

        try:
            a, b = new.submit("added"), new.submit("known")
            drain(old)  # the old workers run what they know and leave the rest
            waiting = old.get(a.id)
            assert waiting.status is Status.STARTING and waiting.attempt == 0
            assert not waiting.leased and kinds(old, a.id) == ["submitted"]
            assert old.get(b.id).result == "old"
            drain(new)
            assert new.get(a.id).result == "added"
        finally:
            old.close()
            new.close()


# --- a fresh instance per iteration -------------------------------------------------------------


def test_a_process_class_gets_a_fresh_instance_per_iteration(app: App) -> None:
    seen: list[tuple[int, int]] = []

    @app.process
    class Counted:
        def __init__(self) -> None:
            self.calls = 0

        def validate(self, ctx: Context) -> None:
            self.calls += 1

        def start(self, ctx: Context) -> None:
            self.calls += 1  # validate and start share the iteration's instance
            seen.append((id(self), self.calls))
            ctx.store["steps"] = 0

        def step(self, ctx: Context) -> bool:
            self.calls += 1
            seen.append((id(self), self.calls))
            ctx.store["steps"] = int(ctx.store["steps"]) + 1
            return int(ctx.store["steps"]) >= 3

    p = app.submit("Counted")
    drain(app, concurrency=2)
    assert app.get(p.id).status is Status.COMPLETED
    assert [calls for _, calls in seen] == [2, 1, 1, 1]
