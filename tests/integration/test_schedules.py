"""Cron schedules fired by the recovery sweep, on every backend, with the App's clock
injected: one process per occurrence under its deterministic custom id, the missed-run
and overlap policies, two sweepers racing, the leader waking for the next occurrence, and
`app.schedules()`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from corral import App, Context, Status, Worker, WorkerOptions
from corral.recovery import Recovery
from corral.scheduler import Scheduler
from corral.schedules import occurrence_id
from tests.backends import backend_url
from tests.e2e.conftest import wait_until

#: A Monday, 12:00:00 UTC; sweeps happen 0.5 s past a whole second.
T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, lease_seconds=5)
        yield a
        a.close()


@pytest.fixture
def clock(app: App) -> list[float]:
    now = [T0 + 0.5]
    app.clock = lambda: now[0]
    return now


def sweep(app: App, at: float, clock: list[float]) -> int:
    clock[0] = at
    return Recovery.of(app, "sweeper").sweep()


def fired(app: App, job: str) -> list[str]:
    """The custom ids of the job's processes, oldest occurrence first."""
    return sorted(str(p.custom_id) for p in app.list(job=job, limit=1000))


def ids(job: str, *times: float) -> list[str]:
    return [f"schedule:{job}:{datetime.fromtimestamp(t, UTC):%Y-%m-%dT%H:%M:%SZ}" for t in times]


def minutely(app: App, **options: Any) -> None:
    @app.job(cron="* * * * *", **options)
    def tick(ctx: Context, size: int = 3) -> int:
        return size


def test_each_occurrence_fires_once_with_the_default_parameters(
    app: App, clock: list[float]
) -> None:
    minutely(app)
    # First seen at 12:00:00.5: nothing before it ever fires.
    assert sweep(app, T0 + 0.5, clock) == 0
    assert sweep(app, T0 + 30, clock) == 0
    assert fired(app, "tick") == []
    # 12:01:00 is due.
    assert sweep(app, T0 + 60.5, clock) == 1
    assert sweep(app, T0 + 61, clock) == 0  # the same occurrence: handled already
    [p] = app.list(job="tick")
    assert p.custom_id == ids("tick", T0 + 60)[0] == "schedule:tick:2026-03-02T12:01:00Z"
    assert (p.params, p.status, p.run_at, p.client_id) == ({"size": 3}, Status.STARTING,
                                                           T0 + 60.5, app.client_id)  # fmt: skip
    app.cancel(p.id)  # ended: the next one may run
    assert sweep(app, T0 + 120.5, clock) == 1
    assert fired(app, "tick") == ids("tick", T0 + 60, T0 + 120)


def test_a_process_job_fires_too(app: App, clock: list[float]) -> None:
    @app.process(cron="*/2 * * * *", timezone="Europe/Paris")
    class Report:
        def start(self, ctx: Context[Any]) -> None: ...

    sweep(app, T0 + 0.5, clock)
    assert sweep(app, T0 + 120.5, clock) == 1
    assert fired(app, "Report") == ids("Report", T0 + 120)


def test_missed_skip_drops_what_is_later_than_the_grace(app: App, clock: list[float]) -> None:
    minutely(app)
    sweep(app, T0 + 0.5, clock)
    # An hour without a sweep: only 13:00:00, 30 s late, is within the 60 s grace.
    assert sweep(app, T0 + 3630, clock) == 1
    assert fired(app, "tick") == ids("tick", T0 + 3600)
    [state] = app.storage.schedule_list()
    assert state.handled_until == T0 + 3600


def test_missed_catch_up_fires_the_latest_up_to_the_limit_oldest_first(
    app: App, clock: list[float]
) -> None:
    minutely(app, missed="catch_up", catch_up_limit=3, overlap="allow")
    sweep(app, T0 + 0.5, clock)
    assert sweep(app, T0 + 3630, clock) == 4  # 13:00 on time, and the 3 latest late ones
    assert fired(app, "tick") == ids("tick", *(T0 + 3600 - 60 * k for k in (3, 2, 1, 0)))
    # The next sweep goes on from there: nothing is fired twice.
    assert sweep(app, T0 + 3690, clock) == 1
    assert len(fired(app, "tick")) == 5


def test_catch_up_under_overlap_skip_fires_only_the_oldest_due(
    app: App, clock: list[float]
) -> None:
    minutely(app, missed="catch_up", catch_up_limit=3)
    sweep(app, T0 + 0.5, clock)
    assert sweep(app, T0 + 3630, clock) == 1
    assert fired(app, "tick") == ids("tick", T0 + 3600 - 180)


def test_overlap_skip_drops_an_occurrence_while_the_previous_run_has_not_ended(
    app: App, clock: list[float]
) -> None:
    minutely(app)
    sweep(app, T0 + 0.5, clock)
    sweep(app, T0 + 60.5, clock)
    [first] = app.list(job="tick")
    # 12:02 comes while the 12:01 process is still queued: dropped, for good.
    assert sweep(app, T0 + 120.5, clock) == 0
    assert fired(app, "tick") == ids("tick", T0 + 60)
    app.cancel(first.id)
    assert sweep(app, T0 + 150, clock) == 0  # 12:02 is not fired late
    assert sweep(app, T0 + 180.5, clock) == 1
    assert fired(app, "tick") == ids("tick", T0 + 60, T0 + 180)


def test_overlap_skip_counts_a_pruned_previous_run_as_ended(app: App, clock: list[float]) -> None:
    minutely(app)
    sweep(app, T0 + 0.5, clock)
    sweep(app, T0 + 60.5, clock)
    [first] = app.list(job="tick")
    app.cancel(first.id)
    assert app.storage.process_prune(T0 + 100) == 1
    [info] = app.schedules()
    assert (info.last_process_id, info.last_status) == (first.id, None)  # pruned
    assert sweep(app, T0 + 120.5, clock) == 1


def test_overlap_allow_fires_whatever_runs(app: App, clock: list[float]) -> None:
    minutely(app, overlap="allow")
    sweep(app, T0 + 0.5, clock)
    sweep(app, T0 + 60.5, clock)
    assert sweep(app, T0 + 120.5, clock) == 1
    assert [p.status for p in app.list(job="tick")] == [Status.STARTING, Status.STARTING]


def test_two_sweepers_that_read_the_same_row_fire_an_occurrence_once(
    app: App, clock: list[float]
) -> None:
    minutely(app, overlap="allow")
    sweep(app, T0 + 0.5, clock)
    job = app.get_job("tick")
    assert job.schedule is not None
    # Both read the row before either writes (a leader that lost its leadership while a
    # new one took over).
    [state] = app.storage.schedule_list()
    a, b = Scheduler.of(app), Scheduler.of(app)
    clock[0] = T0 + 60.5
    assert a._fire(job, job.schedule, state, clock[0]) == 1
    assert b._fire(job, job.schedule, state, clock[0]) == 0
    assert fired(app, "tick") == ids("tick", T0 + 60)
    [after] = app.storage.schedule_list()
    assert after.version == state.version + 1


def test_an_occurrence_already_submitted_is_not_submitted_again(
    app: App, clock: list[float]
) -> None:
    minutely(app)
    sweep(app, T0 + 0.5, clock)
    job = app.get_job("tick")
    assert job.schedule is not None
    # Someone submitted the occurrence's id by hand, with the same parameters.
    by_hand = app.submit("tick", {}, custom_id=occurrence_id(job.schedule, T0 + 60))
    assert sweep(app, T0 + 60.5, clock) == 0  # existing, not created
    assert [p.id for p in app.list(job="tick")] == [by_hand.id]
    [state] = app.storage.schedule_list()
    assert (state.last_occurrence, state.last_process_id) == (T0 + 60, by_hand.id)


def test_a_schedule_that_cannot_fire_leaves_the_others_firing(app: App, clock: list[float]) -> None:
    minutely(app)

    @app.job(cron="* * * * *")
    def other() -> None: ...

    sweep(app, T0 + 0.5, clock)
    job = app.get_job("tick")
    assert job.schedule is not None
    # The occurrence's id taken with other parameters: a conflict, logged; nothing of
    # tick's is written, and `other` fires.
    app.submit("tick", {"size": 9}, custom_id=occurrence_id(job.schedule, T0 + 60))
    assert sweep(app, T0 + 60.5, clock) == 1
    assert fired(app, "other") == ids("other", T0 + 60)
    tick_row = next(s for s in app.storage.schedule_list() if s.name == "tick")
    assert tick_row.handled_until == T0 + 0.5


def test_the_leader_wakes_for_the_next_occurrence_but_not_later_than_its_interval(
    app: App, clock: list[float]
) -> None:
    @app.job(cron="* * * * * *")  # every second
    def each_second() -> None: ...

    recovery = Recovery.of(app, "me", interval=30)
    clock[0] = T0 + 0.5
    assert recovery.maybe_sweep() == 0  # leads; first sight of the schedule
    # The next occurrence is 0.5 s away by the injected clock: the next sweep is then.
    assert recovery._next - time.monotonic() <= 0.51
    clock[0] = T0 + 1.0 + 0.005
    assert recovery.maybe_sweep(force=True) == 1


def test_without_a_schedule_the_interval_stands(app: App, clock: list[float]) -> None:
    @app.job()
    def plain() -> None: ...

    recovery = Recovery.of(app, "me", interval=30)
    before = time.monotonic()
    recovery.maybe_sweep()
    assert recovery._next >= before + 30


def test_app_schedules_tells_the_last_and_next_runs(app: App, clock: list[float]) -> None:
    minutely(app)

    @app.job(cron="0 3 * * *", timezone="Europe/Paris")
    def nightly() -> None: ...

    @app.job()
    def plain() -> None: ...

    [n, t] = app.schedules()
    assert (n.job, n.last_occurrence, n.last_process_id, n.last_status) == (
        "nightly", None, None, None)  # fmt: skip
    # 03:00 in Paris (UTC+1 in March before the change) is 02:00 UTC, the next day.
    assert n.next_run == datetime(2026, 3, 3, 2, 0, tzinfo=UTC).timestamp()
    sweep(app, T0 + 0.5, clock)
    sweep(app, T0 + 60.5, clock)
    [_, t] = app.schedules()
    [p] = app.list(job="tick")
    assert (t.job, t.schedule.cron, t.last_occurrence, t.last_process_id, t.last_status) == (
        "tick", "* * * * *", T0 + 60, p.id, Status.STARTING)  # fmt: skip
    assert t.next_run == T0 + 120


def test_a_worker_sweeping_every_30_s_still_fires_a_schedule_each_second(app: App) -> None:
    """The real clock and a real worker: without the leader waking for the next occurrence,
    its sweeps 30 s apart would fire nothing for half a minute."""

    @app.job(cron="* * * * * *", overlap="allow")
    def each_second() -> None: ...

    worker = Worker(app, WorkerOptions(sweep_interval=30, poll_interval=0.05))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: app.count(job="each_second") >= 3, timeout=20, what="3 occurrences")
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()
    seconds = sorted(str(p.custom_id) for p in app.list(job="each_second", limit=100))
    assert len(set(seconds)) == len(seconds) >= 3
