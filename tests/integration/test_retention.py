"""Retention (docs/timeouts.md, "Retention") through the recovery sweep, with the App's
clock injected, on every backend: a job's `keep_for` deletes its completed processes once
they are that old, in bounded chunks; failed ones and jobs without `keep_for` stay;
`corral prune` (app.prune) still deletes whatever is old enough."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import App, Status, Worker, WorkerOptions
from corral import recovery as recovery_module
from corral.errors import ConfigurationError
from corral.recovery import Recovery
from tests.backends import backend_url

T0 = 1_000_000.0


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, lease_seconds=5)
        yield a
        a.close()


@pytest.fixture
def clock(app: App) -> list[float]:
    now = [T0]
    app.clock = lambda: now[0]
    return now


def drain(app: App) -> None:
    Worker(app, WorkerOptions(once=True, concurrency=1, poll_interval=0.02)).run()


def sweep(app: App, at: float, clock: list[float]) -> None:
    clock[0] = at
    Recovery.of(app, "sweeper").sweep()


def exists(app: App, pid: str) -> bool:
    return app.storage.process_get(pid) is not None


def test_the_sweep_deletes_completed_processes_once_their_keep_for_has_passed(
    app: App, clock: list[float]
) -> None:
    @app.job(keep_for=60)
    def brief(ctx: object, fail: bool = False) -> int:
        if fail:
            raise ValueError("no")
        return 1

    @app.job(keep_for=0)
    def fleeting() -> None:
        return None

    @app.job
    def kept() -> None:
        return None

    done = app.submit("brief")
    failed = app.submit("brief", {"fail": True})
    gone = app.submit("fleeting")
    stays = app.submit("kept")
    drain(app)  # everything ends at T0 by the injected clock
    assert app.get(done.id).status is Status.COMPLETED
    assert app.get(failed.id).status is Status.FAILED

    sweep(app, T0 + 1, clock)
    # keep_for=0: the next sweep deletes it, with its history.
    assert not exists(app, gone.id) and app.storage.history_list(gone.id) == []
    assert exists(app, done.id)
    sweep(app, T0 + 59, clock)
    assert exists(app, done.id)
    sweep(app, T0 + 61, clock)
    assert not exists(app, done.id) and app.storage.history_list(done.id) == []
    # A failed process and a job without keep_for: kept until `corral prune`.
    sweep(app, T0 + 10**6, clock)
    assert exists(app, failed.id) and exists(app, stays.id)
    assert app.prunable(60) == {"brief": 1, "kept": 1}
    assert app.prune(60) == 2
    assert not exists(app, failed.id) and not exists(app, stays.id)


def test_a_sweep_deletes_one_chunk_oldest_first_and_asks_for_the_next_at_once(
    app: App, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery_module, "PRUNE_CHUNK", 3)

    @app.job(keep_for=50)  # the drains' own sweeps find none old enough
    def tick(n: int) -> int:
        return n

    ids = []
    for n in range(7):
        clock[0] = T0 + n  # each ends a second after the one before
        ids.append(app.submit("tick", {"n": n}).id)
        drain(app)
    recovery = Recovery.of(app, "sweeper")
    clock[0] = T0 + 100
    assert recovery.prune_expired(clock[0]) == 3
    assert [exists(app, pid) for pid in ids] == [False] * 3 + [True] * 4
    # A full chunk: the next sweep is due now, not an interval later.
    assert recovery._next <= time.monotonic()
    assert recovery.prune_expired(clock[0]) == 3
    assert recovery.prune_expired(clock[0]) == 1
    assert not any(exists(app, pid) for pid in ids)
    assert recovery.prune_expired(clock[0]) == 0


def test_a_dependency_of_an_unfinished_process_is_kept_through_sweeps(
    app: App, clock: list[float]
) -> None:
    @app.job(keep_for=0)
    def first() -> int:
        return 1

    @app.job(keep_for=0)
    def second() -> int:
        return 2

    a = app.submit("first")
    drain(app)
    d = app.submit("second", depends_on=[a.id])
    app.pause("default")
    sweep(app, T0 + 10, clock)
    # d has not run: a is kept, d will read its result.
    assert exists(app, a.id)
    app.resume("default")
    drain(app)
    assert app.get(d.id).status is Status.COMPLETED
    sweep(app, T0 + 20, clock)
    assert not exists(app, a.id) and not exists(app, d.id)


def test_a_custom_id_is_free_again_once_its_process_is_deleted(
    app: App, clock: list[float]
) -> None:
    @app.job(keep_for=60)
    def charge(order: int) -> int:
        return order

    first = app.submit("charge", {"order": 1}, custom_id="order-1")
    drain(app)
    assert app.submit("charge", {"order": 1}, custom_id="order-1").outcome == "existing"
    sweep(app, T0 + 61, clock)
    assert not exists(app, first.id)
    again = app.submit("charge", {"order": 1}, custom_id="order-1")
    assert again.outcome == "created" and again.id != first.id


def test_a_real_worker_prunes_on_its_own(app: App) -> None:
    @app.job(keep_for=0)
    def once() -> int:
        return 1

    p = app.submit("once")
    worker = Worker(
        app,
        WorkerOptions(poll_interval=0.05, sweep_interval=0.1),
        until=lambda: not exists(app, p.id),
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "the worker's sweeps never deleted the completed process"
    assert app.storage.history_list(p.id) == []


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "60", True])
def test_a_bad_keep_for_is_one_clear_configuration_error(app: App, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="keep_for must be a number of seconds") as e:

        @app.job(keep_for=bad)  # type: ignore[arg-type]
        def job() -> None:
            return None

    assert "\n" not in str(e.value)
    assert "job" not in app.registry.jobs
    with pytest.raises(ConfigurationError, match="keep_for"):

        @app.process(keep_for=bad)  # type: ignore[arg-type]
        class Proc:
            def start(self, ctx: object) -> None:
                return None

    assert "Proc" not in app.registry.jobs


def test_postgres_a_row_a_submit_holds_is_skipped_not_waited_for(tmp_path: Path) -> None:
    """A submit that adds a dependent to a completed process locks that row
    (graph_lock_existing): the sweep's chunk skips it rather than wait, and deletes it on a
    later sweep once the lock is gone."""
    import psycopg

    with backend_url("postgres", tmp_path) as url:
        app = App(url)
        try:

            @app.job(keep_for=3600)  # the drain's own sweep leaves them
            def once() -> int:
                return 1

            a, b = app.submit("once"), app.submit("once")
            drain(app)
            cutoffs = {"once": app.clock() + 1}  # as a sweep an hour on sees them
            with psycopg.connect(url) as holder:
                holder.execute("SELECT id FROM corral_process WHERE id = %s FOR UPDATE", (a.id,))
                # b goes; a, locked, is skipped at once (a sweep that waited for the lock
                # would wait here until the rollback below, after the deadline).
                pruned: list[int] = []
                sweeper = threading.Thread(
                    target=lambda: pruned.append(app.storage.process_prune_expired(cutoffs, 10))
                )
                sweeper.start()
                sweeper.join(10)
                waited = sweeper.is_alive()
                holder.rollback()
                sweeper.join()
                assert not waited, "the chunk waited for a row a submit holds"
                assert pruned == [1]
                assert exists(app, a.id) and not exists(app, b.id)
            assert app.storage.process_prune_expired(cutoffs, 10) == 1
            assert not exists(app, a.id)
        finally:
            app.close()
