"""Rate limits with a worker: iterations start no faster than the job's rate, each held
back process deferred to its token's time without using an attempt, per key when the job
says so, and `explain` names the limit."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from corral import App, Context, Worker, WorkerOptions
from corral.errors import ConfigurationError
from corral.model import Status
from corral.storage.base import ProcessFilter
from tests.integration.common import drain


def run_until_done(app: App, concurrency: int = 8, limit: float = 60.0) -> None:
    """A worker that runs until every process has ended (deferred ones come back when
    their token is due), or fails after `limit` seconds."""
    deadline = time.monotonic() + limit

    def done() -> bool:
        assert time.monotonic() < deadline, "processes still unfinished"
        left = app.storage.process_list(ProcessFilter(limit=1000))
        return all(p.status.terminal for p in left)

    Worker(app, WorkerOptions(concurrency=concurrency, poll_interval=0.05), until=done).run()


def starts_per_window(starts: list[float], window: float) -> int:
    """The most starts in any window of `window` seconds (one starting at each start)."""
    starts = sorted(starts)
    return max(sum(1 for t in starts if s <= t < s + window) for s in starts)


def test_iterations_start_no_faster_than_the_rate(app: App) -> None:
    app.clock = time.time  # real time: the bucket refills as the worker runs
    starts: list[float] = []
    lock = threading.Lock()

    @app.job(rate="4/s")
    def call(ctx: Context[Any], i: int) -> int:
        with lock:
            starts.append(time.monotonic())
        return i

    submitted = app.submit_many("call", [{"i": i} for i in range(12)])
    run_until_done(app)
    assert all(app.get(s.id).status is Status.COMPLETED for s in submitted)
    assert len(starts) == 12
    # A bucket of 4 refilled at 4 a second: 4 at once, then one every quarter second,
    # so the 12 take 2 s at least, and no second sees more than 4 + 4.
    assert max(starts) - min(starts) >= 2.0 - 0.05
    assert starts_per_window(starts, 1.0) <= 8
    # Held back, not failed: a deferral uses no attempt.
    history = [e for s in submitted for e in app.history(s.id)]
    deferred = [e for e in history if e.kind == "retry_later"]
    assert deferred and all(e.detail["reason"] == "rate_limited" for e in deferred)
    assert not [e for e in history if e.kind == "error"]


def test_each_key_has_its_own_rate(app: App) -> None:
    app.clock = time.time
    starts: dict[str, list[float]] = {"a": [], "b": []}

    @app.job(rate="2/s", rate_key="customer")
    def call(ctx: Context[Any], customer: str, i: int) -> None:
        starts[customer].append(time.monotonic())

    app.submit_many("call", [{"customer": c, "i": i} for c in "ab" for i in range(4)])
    run_until_done(app)
    # Each customer: 2 at once, then one every half second: 4 take a second at least.
    for customer in "ab":
        assert len(starts[customer]) == 4
        assert max(starts[customer]) - min(starts[customer]) >= 1.0 - 0.05


def test_explain_names_the_rate_limit(app: App) -> None:
    app.clock = time.time

    @app.job(rate="1/h")
    def rare(ctx: Context[Any]) -> None: ...

    first, second = app.submit("rare"), app.submit("rare")
    drain(app)  # the first takes the hour's token; the second is deferred by an hour
    assert app.get(first.id).status is Status.COMPLETED
    held = app.get(second.id)
    assert held.status is Status.STARTING and held.run_at > time.time() + 3000
    codes = [r.code for r in app.explain(second.id)]
    assert "rate_limited" in codes and "retrying" not in codes


def test_a_bad_rate_is_a_clear_error(app: App) -> None:
    with pytest.raises(ConfigurationError, match="rate must be N/s, N/m or N/h"):

        @app.job(rate="fast")
        def nope(ctx: Context[Any]) -> None: ...
