"""The runnable backlog (what a supervisor scales on): the processes a claim for some jobs
and queues could take now, and the age of the oldest, by the claim's own predicates."""

from __future__ import annotations

from corral.model import Status
from corral.storage.base import BACKLOG_CAP, Storage
from tests.conformance.common import T0, claim, complete, new


def test_an_empty_database_has_no_backlog(storage: Storage) -> None:
    assert storage.runnable_backlog(None, None, T0) == (0, 0.0)


def test_only_what_a_claim_could_take_now_is_counted(storage: Storage) -> None:
    ready = [new(at=T0 + i) for i in range(3)]
    later = new(at=T0, run_at=T0 + 500)  # its run_at (or a rate limit's) has not come
    other_job = new("mail", at=T0)
    other_queue = new(at=T0, queue="reports")
    storage.process_insert_many([*ready, later, other_job, other_queue])
    # A process waiting on a dependency that has not ended.
    waiting = new(at=T0, depends_on=[ready[0].id])
    storage.process_insert_many([waiting])
    now = T0 + 10
    assert storage.runnable_backlog(["add"], ["default"], now) == (3, 10.0)
    assert storage.runnable_backlog(None, None, now) == (5, 10.0)
    assert storage.runnable_backlog(["mail"], None, now) == (1, 10.0)
    assert storage.runnable_backlog(["add"], ["reports"], now)[0] == 1
    assert storage.runnable_backlog(["nobody"], None, now) == (0, 0.0)
    assert storage.runnable_backlog(None, None, T0 + 600)[0] == 6


def test_leased_processes_leave_it_and_an_expired_lease_comes_back(storage: Storage) -> None:
    ps = [new(at=T0 + i) for i in range(3)]
    storage.process_insert_many(ps)
    [first, _dies] = claim(storage, now=T0 + 5, limit=2, lease=30.0)
    assert storage.runnable_backlog(None, None, T0 + 6) == (1, 4.0)
    complete(storage, first, now=T0 + 7, to=Status.COMPLETED)
    assert storage.runnable_backlog(None, None, T0 + 8)[0] == 1
    # The second one's worker died: its lease expired at T0 + 35, and it is runnable again,
    # claimable since then.
    assert storage.runnable_backlog(None, None, T0 + 45) == (2, 43.0)


def test_a_paused_queue_and_a_full_key_hold_their_processes_back(storage: Storage) -> None:
    keyed = [new(at=T0 + i, concurrency_key="k", concurrency_limit=1) for i in range(3)]
    mail = new(at=T0, queue="mail")
    storage.process_insert_many([*keyed, mail])
    assert storage.runnable_backlog(None, None, T0 + 10)[0] == 4
    storage.queue_pause("mail", True)
    assert storage.runnable_backlog(None, None, T0 + 10)[0] == 3
    # One of key k (limit 1) leased: the key is full, its other two wait for it.
    claim(storage, now=T0 + 10, limit=1, queues=["default"])
    assert storage.runnable_backlog(None, None, T0 + 11) == (0, 0.0)
    storage.queue_pause("mail", False)
    storage.queue_pause("*", True)
    assert storage.runnable_backlog(None, None, T0 + 11) == (0, 0.0)


def test_the_count_stops_at_the_cap(storage: Storage) -> None:
    many = [new(at=T0) for _ in range(BACKLOG_CAP + 5)]
    storage.process_insert_many(many)
    assert storage.runnable_backlog(None, None, T0 + 1) == (BACKLOG_CAP, 1.0)


def test_the_connection_budget_is_postgresql_s_alone(storage: Storage, backend: str) -> None:
    budget = storage.connection_budget()
    if backend != "postgres":
        assert budget is None  # one file, no server: no connection limit to respect
        return
    assert budget is not None
    # The pool and the listener of one worker; this storage's own connection is open.
    assert budget.per_worker == 11
    assert budget.limit > 0 and budget.in_use >= 1
