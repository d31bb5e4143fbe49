"""The worker loop when the database goes away (docs/leases-and-fencing.md: at-least-once
iterations and exactly-once store writes), played deterministically: a storage wrapper
that fails every call for a while, or lets a commit land and then loses its answer. The
real thing (a PostgreSQL restart under `corral worker` processes) is in test_postgres_restart.py."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corral import App, Context, Status, Worker, WorkerOptions
from corral.errors import StorageUnavailable
from corral.storage.base import Storage
from corral.worker import WorkerStats
from tests.backends import backend_url
from tests.e2e.conftest import wait_until

#: Calls that do not reach the database (`now` never raises: it is the clock).
LOCAL = {"wait_for_change", "change_epoch", "notify_local", "close", "url", "now"}


class Flaky:
    """Passes every call to a real storage, except that while `down` each one raises
    StorageUnavailable, and the next `answers_to_lose` commits land but raise anyway (as
    when the connection breaks after the server committed)."""

    def __init__(self, real: Storage) -> None:
        self.real = real
        self.down = False
        self.slow_renewals = 0.0  # seconds each lease renewal takes before it runs
        self.answers_to_lose = 0
        self.refused: Counter[str] = Counter()
        self.answers_lost: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name in LOCAL or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.refused[name] += 1
                raise StorageUnavailable(f"test outage ({name})")
            if name == "lease_renew_many":
                time.sleep(self.slow_renewals)
            result = attr(*args, **kwargs)
            commits = args[0] if name.startswith("process_commit") and args else None
            if commits and self.answers_to_lose > 0:
                self.answers_to_lose -= 1
                self.answers_lost.append([c.process_id for c in commits])
                raise StorageUnavailable("test: the commit landed, its answer was lost")
            return result

        return call


class StepsParams(BaseModel):
    steps: int


def make_app(lease_seconds: float, url: str = "memory://") -> tuple[App, Flaky]:
    app = App(url, lease_seconds=lease_seconds)

    def audit(ctx: Context, entry: str) -> None:
        entries = ctx.store.setdefault("audit", [])
        assert isinstance(entries, list)
        entries.append(entry)

    @app.job()
    def square(ctx: Context, x: int) -> int:
        time.sleep(0.01)
        audit(ctx, "run")
        return x * x

    @app.process("steps", params=StepsParams)
    class Steps:
        def start(self, ctx: Context[StepsParams]) -> None:
            ctx.store["n"] = 0
            audit(ctx, "start")

        def step(self, ctx: Context[StepsParams]) -> bool:
            time.sleep(0.01)
            n = ctx.store["n"]
            assert isinstance(n, int)
            ctx.store["n"] = n + 1
            audit(ctx, f"step {n + 1}")
            return n + 1 >= ctx.params.steps

        def finish(self, ctx: Context[StepsParams]) -> int:
            audit(ctx, "finish")
            n = ctx.store["n"]
            assert isinstance(n, int)
            return n

    flaky = Flaky(app.storage)
    app._storage = flaky  # type: ignore[assignment]
    return app, flaky


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="corral.worker")
    return caplog


@pytest.fixture
def running() -> Iterator[Callable[[App], tuple[Worker, list[WorkerStats]]]]:
    """Start a worker in a thread; it is stopped, and must have returned, at the end."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(app: App) -> tuple[Worker, list[WorkerStats]]:
        worker = Worker(app, WorkerOptions(concurrency=4, poll_interval=0.05, sweep_interval=0.1))
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


def submit(app: App, simple_jobs: int = 20, multi_step: int = 6) -> tuple[list[str], list[str]]:
    simple = [s.id for s in app.submit_many("square", [{"x": x} for x in range(simple_jobs)])]
    params = [{"steps": 3 + i % 3} for i in range(multi_step)]
    multi = [s.id for s in app.submit_many("steps", params)]
    return simple, multi


def check_exactly_once(app: App, simple: list[str], multi: list[str]) -> None:
    for x, pid in enumerate(simple):
        p = app.get(pid)
        assert (p.status, p.result, p.store["audit"]) == (Status.COMPLETED, x * x, ["run"])
    for i, pid in enumerate(multi):
        n = 3 + i % 3
        p = app.get(pid)
        steps = [f"step {k}" for k in range(1, n + 1)]
        assert (p.status, p.result, p.store["n"]) == (Status.COMPLETED, n, n)
        assert p.store["audit"] == ["start", *steps, "finish"]


def unfinished(app: App, ids: list[str]) -> int:
    return sum(1 for pid in ids if not app.get(pid).status.terminal)


def test_the_loop_rides_out_an_outage_logging_it_once(
    running: Callable[[App], tuple[Worker, list[WorkerStats]]],
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    app, flaky = make_app(lease_seconds=30)
    worker, stats = running(app)
    simple, multi = submit(app)
    ids = simple + multi
    wait_until(lambda: unfinished(app, ids) < len(ids) - 5, timeout=10, interval=0.01)
    # Given the database goes away for a second and a half mid-run...
    flaky.down = True
    time.sleep(1.5)
    flaky.down = False
    # ...the worker, which kept trying (claims, commits, renewals, the sweep)...
    assert sum(flaky.refused.values()) >= 4, flaky.refused
    # ...carries on by itself and finishes everything, each store write once.
    wait_until(lambda: unfinished(app, ids) == 0, timeout=20, interval=0.05)
    check_exactly_once(app, simple, multi)
    worker.stop()
    wait_until(lambda: stats, timeout=10)
    assert stats[0].stopped_by == "signal"
    assert stats[0].lost == 0
    # The outage is one line when it starts and one when it ends, not one per try.
    messages = [r.getMessage() for r in caplog_info.records if r.levelno >= logging.INFO]
    assert len([m for m in messages if m.startswith("database unavailable")]) == 1, messages
    assert len([m for m in messages if m.startswith("database available again")]) == 1
    assert not [r for r in caplog_info.records if r.levelno >= logging.ERROR]


def test_a_commit_whose_answer_was_lost_is_retried_and_counted_once(
    running: Callable[[App], tuple[Worker, list[WorkerStats]]],
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    # A short lease: a claim made in a round trip whose answer was lost is taken over soon.
    app, flaky = make_app(lease_seconds=1)
    worker, stats = running(app)
    simple, multi = submit(app)
    ids = simple + multi
    for _ in range(3):  # one lost answer at a time: each retry then gets its answer
        flaky.answers_to_lose = 1
        wait_until(lambda: flaky.answers_to_lose == 0, timeout=10, interval=0.005)
    wait_until(lambda: unfinished(app, ids) == 0, timeout=30, interval=0.05)
    assert len(flaky.answers_lost) == 3
    # The commits had landed: the retries found their leases released, which is not a
    # lease loss. Nothing ran its store write twice, and no history says "lease_lost".
    check_exactly_once(app, simple, multi)
    for pid in ids:
        assert "lease_lost" not in [e.kind for e in app.history(pid)], pid
    worker.stop()
    wait_until(lambda: stats, timeout=10)
    assert stats[0].lost == 0
    warnings = [r.getMessage() for r in caplog_info.records if r.levelno >= logging.WARNING]
    assert not [m for m in warnings if "lease lost" in m], warnings


def test_a_commit_landing_while_a_renewal_is_on_its_way_is_not_a_lease_loss(
    running: Callable[[App], tuple[Worker, list[WorkerStats]]],
) -> None:
    # A slow database: each renewal takes 0.15 s to arrive, and renewals come every 0.2 s
    # (lease 0.6 s), so iterations of 10 ms keep committing, releasing their leases, between
    # the renewer's look at what runs and its renewal arriving.
    app, flaky = make_app(lease_seconds=0.6)
    flaky.slow_renewals = 0.15
    worker, stats = running(app)
    simple, multi = submit(app, simple_jobs=200, multi_step=30)
    ids = simple + multi
    wait_until(lambda: unfinished(app, ids) == 0, timeout=30, interval=0.05)
    check_exactly_once(app, simple, multi)
    # The renewal refused for an iteration that had just committed is no lease loss: no
    # history says so.
    noted = {pid: [e.detail for e in app.history(pid) if e.kind == "lease_lost"] for pid in ids}
    assert {pid: n for pid, n in noted.items() if n} == {}
    worker.stop()
    wait_until(lambda: stats, timeout=10)
    assert stats[0].lost == 0


def test_a_stop_during_an_outage_honours_the_grace(backend: str, tmp_path: Path) -> None:
    with backend_url(backend, tmp_path) as url:
        stop_during_an_outage(url)


def stop_during_an_outage(url: str) -> None:
    # Given a worker whose database went away while it ran iterations...
    app, flaky = make_app(lease_seconds=30, url=url)
    worker = Worker(app, WorkerOptions(concurrency=4, poll_interval=0.05, grace=1.0))
    out: list[WorkerStats] = []
    thread = threading.Thread(target=lambda: out.append(worker.run()), daemon=True)
    thread.start()
    simple, multi = submit(app)
    wait_until(lambda: worker.stats.iterations > 0 or worker._in_flight, timeout=10)
    flaky.down = True
    # Finished iterations now wait to be committed.
    wait_until(
        lambda: flaky.refused["process_commit_many"] + flaky.refused["process_commit_and_claim"],
        timeout=10,
        interval=0.01,
    )
    # ...when it is told to stop (one SIGTERM), it exits once the grace has passed, its
    # leases left to expire, rather than retry its last commit until a second signal.
    began = time.monotonic()
    worker.stop()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the worker did not stop within its grace"
    assert time.monotonic() - began < 1.0 + 2.0
    assert out[0].stopped_by == "signal"
    assert out[0].exit_code == 3  # iterations left uncommitted for want of a database
    flaky.down = False
    # Nothing was lost: the processes are whole, to be taken over once the leases expire.
    try:
        for pid in simple + multi:
            assert app.get(pid).status in (
                Status.STARTING,
                Status.RUNNING,
                Status.ENDING,
                Status.COMPLETED,
            )
    finally:
        flaky.real.close()
