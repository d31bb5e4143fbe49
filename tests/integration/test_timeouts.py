"""The four timeouts (docs/timeouts.md), applied by the recovery sweep, on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import App, Context, Retry, RetryLater, Status, UsageError, Worker, WorkerOptions
from corral.errors import ConfigurationError
from corral.recovery import Recovery
from tests.backends import backend_url


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, lease_seconds=5)
        yield a
        a.close()


@pytest.fixture
def clock(app: App) -> list[float]:
    now = [1_000_000.0]
    app.clock = lambda: now[0]
    return now


def drain(app: App) -> None:
    # One iteration at a time: a handler that moves the test's clock past its own lease
    # would otherwise see its process claimed again, as taken over, by its own worker.
    options = WorkerOptions(once=True, concurrency=1, poll_interval=0.02, sweep_interval=0.05)
    Worker(app, options).run()


def run_until_ended(app: App, pid: str) -> None:
    """Run a worker (sweeping often) until the process is terminal; at most 15 s."""
    worker = Worker(
        app,
        WorkerOptions(poll_interval=0.05, sweep_interval=0.1),
        until=lambda: app.get(pid).status.terminal,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "the worker did not stop: the process never ended"


def timeout_events(app: App, pid: str) -> list[str]:
    return [str(e.detail["cause"]) for e in app.history(pid) if e.kind == "timeout"]


def test_process_timeout_fails_the_process_and_runs_its_rollback(
    app: App, clock: list[float]
) -> None:
    rolled: list[bool] = []

    @app.process("slowpoke", process_timeout=60)
    class Slowpoke:
        def step(self, ctx: Context) -> bool:
            clock[0] += 40  # each step takes 40 "seconds"
            return False

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("slowpoke")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and rolled == [True]
    assert done.error is not None and done.error.reason == "timeout"
    assert timeout_events(app, p.id) == ["process_timeout"]


def test_submit_overrides_the_jobs_timeouts(app: App, clock: list[float]) -> None:
    @app.job(process_timeout=10)
    def job() -> None: ...

    short = app.submit("job")
    long = app.submit("job", process_timeout=1000)
    assert short.process.deadline_at == clock[0] + 10
    assert long.process.deadline_at == clock[0] + 1000
    clock[0] += 20
    assert Recovery.of(app, "me").sweep() == 1
    assert app.get(short.id).status is Status.FAILED
    assert app.get(long.id).status is Status.STARTING


def test_schedule_to_close_retries_then_fails(app: App, clock: list[float]) -> None:
    @app.job(schedule_to_close=10, retry=Retry(attempts=2, backoff=0, jitter=0))
    def waits() -> None: ...

    app.pause()  # nobody runs it in time
    p = app.submit("waits")
    clock[0] += 11
    drain(app)  # the sweep: schedule_to_close expired, one attempt left -> retried at once
    assert timeout_events(app, p.id) == ["schedule_to_close"]
    assert app.get(p.id).status is Status.STARTING
    clock[0] += 11
    drain(app)  # expired again, attempts spent
    done = app.get(p.id)
    assert done.status is Status.FAILED and done.error is not None
    assert done.error.reason == "timeout"
    assert timeout_events(app, p.id) == ["schedule_to_close", "schedule_to_close"]


def test_a_deliberate_wait_restarts_the_schedule_to_close_clock(
    app: App, clock: list[float]
) -> None:
    calls: list[float] = []

    @app.job(schedule_to_close=10, retry=Retry(attempts=2, backoff=60, jitter=0))
    def patient(ctx: Context) -> str:
        calls.append(clock[0])
        if len(calls) == 1:
            raise RetryLater(after=3600)  # an hour: far past schedule_to_close
        if len(calls) == 2:
            raise KeyError("flaky")  # a retry after a 60 s backoff: past it too
        return "done"

    p = app.submit("patient")
    drain(app)
    clock[0] += 3600 + 5  # the wait is over, 5 s into the new window
    drain(app)
    clock[0] += 60 + 5  # the backoff is over, 5 s into the new window
    drain(app)
    done = app.get(p.id)
    assert timeout_events(app, p.id) == []
    assert done.status is Status.COMPLETED and done.result == "done"
    assert len(calls) == 3 and calls[1] - calls[0] >= 3600 and calls[2] - calls[1] >= 60


def test_start_to_close_revokes_the_lease_of_a_stuck_iteration(app: App) -> None:
    app.lease_seconds = 0.3
    release = threading.Event()

    @app.job(start_to_close=0.5, retry=Retry(attempts=1))
    def stuck() -> str:
        release.wait(10)
        return "too late"

    p = app.submit("stuck")
    run_until_ended(app, p.id)
    release.set()
    done = app.get(p.id)
    assert done.status is Status.FAILED and done.result is None
    assert done.error is not None and done.error.reason == "timeout"
    assert timeout_events(app, p.id) == ["start_to_close"]


def test_heartbeat_timeout_catches_a_handler_that_stopped_beating(app: App) -> None:
    app.lease_seconds = 0.3
    beats: list[int] = []
    release = threading.Event()

    @app.job(heartbeat_timeout=0.4, retry=Retry(attempts=1))
    def goes_quiet(ctx: Context) -> None:
        for i in range(5):
            ctx.heartbeat()
            beats.append(i)
            time.sleep(0.1)
        release.wait(10)  # hangs without heartbeats

    p = app.submit("goes_quiet")
    run_until_ended(app, p.id)
    release.set()
    assert beats == [0, 1, 2, 3, 4]  # heartbeats kept it alive past 0.4 s
    assert timeout_events(app, p.id) == ["heartbeat_timeout"]
    assert app.get(p.id).status is Status.FAILED


def test_only_one_worker_sweeps_at_a_time(app: App, clock: list[float]) -> None:
    a, b = Recovery.of(app, "a", interval=1), Recovery.of(app, "b", interval=1)
    assert a.maybe_sweep(force=True) == 0  # a leads (nothing to do)
    assert not app.storage.leader_acquire("recovery", "b", clock[0], 3)
    clock[0] += 4  # a stopped sweeping: its leadership ran out
    assert b.maybe_sweep(force=True) == 0
    assert not app.storage.leader_acquire("recovery", "a", clock[0], 3)


def test_bad_timeouts_are_refused(app: App) -> None:
    with pytest.raises(ConfigurationError, match="start_to_close must be"):
        app.job(start_to_close=0)(lambda: None)

    @app.job()
    def job() -> None: ...

    for bad in (0, -1, "10", True):
        with pytest.raises(UsageError, match="process_timeout must be"):
            app.submit("job", process_timeout=bad)  # type: ignore[arg-type]
    assert app.list() == []
