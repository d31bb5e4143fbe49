"""The storage conformance suite: the contract of `corral.storage.base.Storage`.

It runs unchanged against every backend (see tests/backends.py). Times are given
explicitly, so no test depends on the wall clock.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from corral import model
from corral.errors import CustomIdConflict
from corral.model import ErrorInfo, Status
from corral.storage.base import (
    Claim,
    IterationCommit,
    NewProcess,
    ProcessFilter,
    Storage,
)
from tests.backends import make_storage

T0 = 1_000_000.0


def new(job: str = "add", *, at: float = T0, **kw: object) -> NewProcess:
    fields: dict[str, object] = {"params": {"a": 1}, "created_at": at, "run_at": at}
    fields.update(kw)
    return NewProcess(id=str(uuid.uuid4()), job=job, **fields)  # type: ignore[arg-type]


def claim(
    storage: Storage,
    now: float = T0,
    limit: int = 1,
    owner: str = "w1",
    lease: float = 30.0,
    **kw: object,
) -> list:  # type: ignore[type-arg]
    return storage.process_claim(
        Claim(owner=owner, now=now, lease_seconds=lease, limit=limit, **kw)  # type: ignore[arg-type]
    )


def complete(
    storage: Storage,
    claimed,
    now: float = T0 + 1,
    to: Status | None = None,  # type: ignore[no-untyped-def]
    store: dict | None = None,
) -> list[str]:  # type: ignore[type-arg]
    change = model.committed(claimed.process, now, store=store or {"n": 1}, progress=(1, 2), to=to)
    return storage.process_commit_many(
        [IterationCommit(claimed.process.id, claimed.token, change, now)]
    )


# --- insert and read -----------------------------------------------------------------------


def test_inserted_process_reads_back_with_its_first_history_event(storage: Storage) -> None:
    p = new(params={"a": 1, "b": [1, 2]}, tags={"team": "x"}, priority=3, queue="q")
    [ins] = storage.process_insert_many([p])
    assert ins.outcome == "created"
    got = storage.process_get(p.id)
    assert got is not None
    assert (got.job, got.params, got.status, got.priority, got.queue, got.tags) == (
        "add",
        {"a": 1, "b": [1, 2]},
        Status.STARTING,
        3,
        "q",
        {"team": "x"},
    )
    assert got.store == {} and got.attempt == 0 and not got.leased
    [event] = storage.history_list(p.id)
    assert (event.kind, event.to_status) == ("submitted", Status.STARTING)


def test_get_of_an_unknown_id_is_none(storage: Storage) -> None:
    assert storage.process_get(str(uuid.uuid4())) is None


def test_same_custom_id_same_job_and_params_returns_the_existing_process(storage: Storage) -> None:
    [first] = storage.process_insert_many([new(custom_id="k", params={"a": 1, "b": 2})])
    [again] = storage.process_insert_many([new(custom_id="k", params={"b": 2, "a": 1})])
    assert again.outcome == "existing"
    assert again.process.id == first.process.id
    assert len(storage.process_list(ProcessFilter())) == 1


def test_custom_id_conflict_raises_and_writes_nothing_of_the_batch(storage: Storage) -> None:
    storage.process_insert_many([new(custom_id="k")])
    batch = [new(custom_id="other"), new(custom_id="k", params={"a": 2})]
    with pytest.raises(CustomIdConflict):
        storage.process_insert_many(batch)
    with pytest.raises(CustomIdConflict):
        storage.process_insert_many([new("sub", custom_id="k")])
    assert storage.process_get(batch[0].id) is None
    assert len(storage.process_list(ProcessFilter())) == 1


def test_one_custom_id_twice_in_a_batch_creates_one_process(storage: Storage) -> None:
    first, again = storage.process_insert_many([new(custom_id="k"), new(custom_id="k")])
    assert (first.outcome, again.outcome) == ("created", "existing")
    assert again.process.id == first.process.id
    with pytest.raises(CustomIdConflict):
        storage.process_insert_many([new(custom_id="j"), new(custom_id="j", params={"a": 2})])
    assert len(storage.process_list(ProcessFilter())) == 1


def test_commit_and_claim_commits_then_claims_in_one_exchange(storage: Storage) -> None:
    a, b = new(), new(at=T0 + 1)
    storage.process_insert_many([a, b])
    [ca] = claim(storage, now=T0 + 1)
    done = model.committed(
        ca.process, T0 + 2, store={"x": 1}, progress=(None, None), to=Status.COMPLETED, result=1
    )
    lost, claimed = storage.process_commit_and_claim(
        [IterationCommit(a.id, ca.token, done, T0 + 2)],
        Claim(owner="w1", now=T0 + 2, lease_seconds=30, limit=5),
    )
    assert lost == [] and [c.process.id for c in claimed] == [b.id]
    got = storage.process_get(a.id)
    assert got is not None and got.status is Status.COMPLETED and got.store == {"x": 1}
    lost, claimed = storage.process_commit_and_claim(
        [IterationCommit(a.id, ca.token, done, T0 + 3)],
        Claim(owner="w1", now=T0 + 3, lease_seconds=30, limit=5),
    )
    assert lost == [a.id] and claimed == []


def test_custom_ids_are_unique_per_client(storage: Storage) -> None:
    a = storage.process_insert_many([new(custom_id="k", client_id="alice")])[0]
    b = storage.process_insert_many([new(custom_id="k", client_id="bob", params={"a": 9})])[0]
    assert (a.outcome, b.outcome) == ("created", "created")
    assert a.process.id != b.process.id


def test_list_filters_by_status_job_and_tags_newest_first(storage: Storage) -> None:
    ids = []
    for i, (job, tags) in enumerate([("a", {"t": "x"}), ("b", {"t": "y"}), ("a", {"t": "y"})]):
        p = new(job, at=T0 + i, tags=tags)
        ids.append(p.id)
        storage.process_insert_many([p])
    assert [p.id for p in storage.process_list(ProcessFilter())] == ids[::-1]
    assert [p.id for p in storage.process_list(ProcessFilter(job="a"))] == [ids[2], ids[0]]
    assert [p.id for p in storage.process_list(ProcessFilter(tags={"t": "y"}))] == [ids[2], ids[1]]
    assert storage.process_list(ProcessFilter(status=Status.COMPLETED)) == []
    assert len(storage.process_list(ProcessFilter(limit=2))) == 2


# --- claims --------------------------------------------------------------------------------


def test_claim_leases_with_a_new_token_and_counts_the_attempt(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    [c] = claim(storage, owner="w1", lease=30)
    assert c.process.id == p.id and not c.recovered
    assert c.process.attempt == 1
    assert c.process.lease_owner == "w1" and c.process.lease_expires_at == T0 + 30
    assert c.token == c.process.lease_token and c.token > 0
    assert claim(storage) == []  # leased: nobody else gets it


def test_claim_skips_future_terminal_and_paused_work(storage: Storage) -> None:
    later = new(run_at=T0 + 10)
    other_queue = new(queue="slow")
    storage.process_insert_many([later, other_queue])
    storage.queue_pause("slow", True)
    assert storage.queue_paused() == ["slow"]
    assert claim(storage, limit=10) == []
    storage.queue_pause("slow", False)
    [o] = claim(storage, limit=10)
    assert o.process.id == other_queue.id
    complete(storage, o, to=Status.COMPLETED)
    [c] = claim(storage, now=T0 + 10, limit=10)
    assert c.process.id == later.id
    complete(storage, c, to=Status.COMPLETED)
    assert claim(storage, now=T0 + 1000, limit=10) == []


def test_pausing_every_queue_stops_all_claims(storage: Storage) -> None:
    storage.process_insert_many([new()])
    storage.queue_pause("*", True)
    assert claim(storage) == []
    storage.queue_pause("*", False)
    assert len(claim(storage)) == 1


def _put_in(
    storage: Storage, status: Status, *, at: float, priority: int = 0, cancel: bool = False
) -> str:
    """A process in the given status with no lease, through the storage's own verbs."""
    p = new(at=at, priority=priority)
    storage.process_insert_many([p])
    current = storage.process_get(p.id)
    assert current is not None
    change = model.Change.of(current).with_(status=status, cancel_requested=cancel)
    assert storage.process_update(p.id, current.version, change, at)
    return p.id


def test_claim_order_follows_design_section_3(storage: Storage) -> None:
    starting = _put_in(storage, Status.STARTING, at=T0)
    running = _put_in(storage, Status.RUNNING, at=T0 + 1)
    ending = _put_in(storage, Status.ENDING, at=T0 + 2)
    failing = _put_in(storage, Status.FAILING, at=T0 + 3)
    cancel = _put_in(storage, Status.RUNNING, at=T0 + 4, cancel=True)
    expired = _put_in(storage, Status.RUNNING, at=T0 + 5)
    claim(storage, now=T0 + 5, owner="dead", lease=1, process_ids=[expired])
    order = [c.process.id for c in claim(storage, now=T0 + 100, limit=10)]
    assert order == [expired, cancel, failing, ending, running, starting]


def test_within_a_class_higher_priority_then_oldest_run_at(storage: Storage) -> None:
    old_low = _put_in(storage, Status.RUNNING, at=T0)
    new_high = _put_in(storage, Status.RUNNING, at=T0 + 2, priority=5)
    new_low = _put_in(storage, Status.RUNNING, at=T0 + 1)
    order = [c.process.id for c in claim(storage, now=T0 + 10, limit=3)]
    assert order == [new_high, old_low, new_low]


def test_claim_batches_up_to_the_limit(storage: Storage) -> None:
    storage.process_insert_many([new() for _ in range(5)])
    assert len(claim(storage, limit=3)) == 3
    assert len(claim(storage, limit=3)) == 2


def test_expired_lease_is_reclaimed_as_recovered_with_a_larger_token(storage: Storage) -> None:
    storage.process_insert_many([new()])
    [first] = claim(storage, owner="dead", lease=5)
    assert claim(storage, now=T0 + 4, owner="w2") == []
    [again] = claim(storage, now=T0 + 6, owner="w2")
    assert again.recovered and again.previous_owner == "dead"
    assert again.token > first.token
    assert again.process.attempt == 2


# --- commits and fencing -------------------------------------------------------------------


def test_commit_saves_store_status_progress_and_releases_the_lease(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    [c] = claim(storage)
    assert complete(storage, c, to=Status.RUNNING, store={"written": 10}) == []
    got = storage.process_get(p.id)
    assert got is not None
    assert (got.status, got.store, got.attempt, got.leased) == (
        Status.RUNNING,
        {"written": 10},
        0,
        False,
    )
    assert (got.progress_done, got.progress_total) == (1, 2)
    kinds = [(e.kind, e.from_status, e.to_status) for e in storage.history_list(p.id)]
    assert kinds[-1] == ("transition", Status.STARTING, Status.RUNNING)


def test_commit_with_a_stale_token_is_refused_and_writes_nothing(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    [stale] = claim(storage, owner="slow", lease=5)
    [fresh] = claim(storage, now=T0 + 6, owner="w2")
    assert complete(storage, stale, to=Status.COMPLETED, store={"who": "slow"}) == [p.id]
    got = storage.process_get(p.id)
    assert got is not None and got.status is Status.STARTING and got.store == {}
    assert complete(storage, fresh, to=Status.COMPLETED, store={"who": "w2"}) == []
    got = storage.process_get(p.id)
    assert got is not None and got.status is Status.COMPLETED and got.store == {"who": "w2"}


def test_a_commit_lands_once(storage: Storage) -> None:
    storage.process_insert_many([new()])
    [c] = claim(storage)
    assert complete(storage, c, to=Status.RUNNING) == []
    assert complete(storage, c, to=Status.RUNNING) == [c.process.id]


def test_batched_commits_report_only_the_lost_ones(storage: Storage) -> None:
    storage.process_insert_many([new() for _ in range(3)])
    a, b, c = claim(storage, limit=3, lease=5)
    claim(storage, now=T0 + 6, owner="thief", process_ids=[b.process.id])
    commits = [
        IterationCommit(
            x.process.id,
            x.token,
            model.committed(
                x.process, T0 + 7, store={}, progress=(None, None), to=Status.COMPLETED, result=1
            ),
            T0 + 7,
        )
        for x in (a, b, c)
    ]
    assert storage.process_commit_many(commits) == [b.process.id]
    statuses = [storage.process_get(x.process.id).status for x in (a, b, c)]  # type: ignore[union-attr]
    assert statuses == [Status.COMPLETED, Status.STARTING, Status.COMPLETED]


def test_failure_is_recorded_with_error_and_history(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    [c] = claim(storage)
    error = ErrorInfo("ValueError", "boom", "Traceback…")
    change = model.errored(
        c.process, T0 + 1, error, retry_delay=None, max_attempts=1, has_rollback=False
    )
    assert storage.process_commit_many([IterationCommit(p.id, c.token, change, T0 + 1)]) == []
    got = storage.process_get(p.id)
    assert got is not None and got.status is Status.FAILED and got.error == error
    assert got.finished_at == T0 + 1
    kinds = [e.kind for e in storage.history_list(p.id)]
    assert kinds == ["submitted", "error", "transition", "transition"]


# --- leases --------------------------------------------------------------------------------


def test_renew_extends_held_leases_and_reports_lost_and_cancel(storage: Storage) -> None:
    storage.process_insert_many([new() for _ in range(3)])
    a, b, c = claim(storage, limit=3, lease=5, owner="w1")
    claim(storage, now=T0 + 6, owner="w2", process_ids=[b.process.id])
    pa = storage.process_get(a.process.id)
    assert pa is not None
    cancel = model.cancel(pa, T0 + 6)
    assert storage.process_update(pa.id, pa.version, cancel, T0 + 6)
    tokens = {x.process.id: x.token for x in (a, b, c)}
    renewal = storage.lease_renew_many("w1", tokens, T0 + 7, 30)
    assert renewal.lost == {b.process.id}
    assert renewal.cancel_requested == {a.process.id}
    assert claim(storage, now=T0 + 30, owner="w3") == []  # renewed until T0 + 37


def test_release_gives_the_lease_back_without_counting_the_attempt(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    [c] = claim(storage)
    assert storage.lease_release_many({p.id: c.token}, T0 + 1) == [p.id]
    got = storage.process_get(p.id)
    assert got is not None and not got.leased and got.attempt == 0
    [again] = claim(storage, now=T0 + 1, owner="w2")
    assert not again.recovered and again.process.attempt == 1
    assert storage.lease_release_many({p.id: c.token}, T0 + 2) == []


# --- administrative updates ----------------------------------------------------------------


def test_update_is_refused_when_the_row_moved_on(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    before = storage.process_get(p.id)
    assert before is not None
    claim(storage)
    assert not storage.process_update(p.id, before.version, model.cancel(before, T0), T0)
    now = storage.process_get(p.id)
    assert now is not None and now.status is Status.STARTING and not now.cancel_requested


def test_prune_deletes_old_terminal_processes_and_their_history(storage: Storage) -> None:
    old, recent, active = new(), new(), new()
    storage.process_insert_many([old, recent, active])
    for pid, at in ((old.id, T0 + 1), (recent.id, T0 + 100)):
        [c] = claim(storage, now=at, process_ids=[pid])
        complete(storage, c, now=at, to=Status.COMPLETED)
    assert storage.process_prune(T0 + 50) == 1
    assert storage.process_get(old.id) is None and storage.history_list(old.id) == []
    assert storage.process_get(recent.id) is not None
    assert storage.process_get(active.id) is not None


def test_history_append_adds_events_without_touching_the_process(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    before = storage.process_get(p.id)
    storage.history_append(
        [model.Event("lease_lost", T0 + 1, process_id=p.id, detail={"owner": "w1"})]
    )
    assert storage.process_get(p.id) == before
    assert storage.history_list(p.id)[-1].detail == {"owner": "w1"}


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_claimers_never_share_a_process(storage: Storage) -> None:
    storage.process_insert_many([new(at=T0 + i) for i in range(200)])
    seen: list[str] = []
    lock = threading.Lock()

    def work(owner: str) -> None:
        while True:
            got = claim(storage, owner=owner, limit=3, now=T0 + 500)
            if not got:
                return
            with lock:
                seen.extend(c.process.id for c in got)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 200 and len(set(seen)) == 200


def test_a_second_connection_sees_writes_and_wakes_up(backend: str, tmp_path: Path) -> None:
    if backend == "memory":
        pytest.skip("a memory database has no second connection")
    with make_storage(backend, tmp_path) as first:
        from corral.storage import open_storage

        second = open_storage(first.url)
        try:
            second.wait_for_change(0.01)  # arm
            p = new()
            first.process_insert_many([p])
            assert second.wait_for_change(5.0)
            assert second.process_get(p.id) is not None
        finally:
            second.close()


def test_local_writes_wake_local_waiters(storage: Storage) -> None:
    woke = threading.Event()

    def waiter() -> None:
        if storage.wait_for_change(5.0):
            woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)  # let the waiter start waiting first
    storage.process_insert_many([new()])
    t.join()
    assert woke.is_set()


# --- timeouts and the sweep's leader -------------------------------------------------------------


def test_timed_out_finds_each_expired_timeout_by_its_cause(storage: Storage) -> None:
    deadline = new(deadline_at=T0 + 10)
    scheduled = new(schedule_to_close=5.0)
    started = new(start_to_close=3.0)
    quiet = new(heartbeat_timeout=2.0)
    fine = new(deadline_at=T0 + 1000, schedule_to_close=1000.0)
    storage.process_insert_many([deadline, scheduled, started, quiet, fine])
    for p in (started, quiet):
        claim(storage, process_ids=[p.id], lease=100)
    assert storage.process_timed_out(T0 + 1, 10) == []
    found = {(t.process.id, t.cause) for t in storage.process_timed_out(T0 + 11, 10)}
    assert found == {
        (deadline.id, "process_timeout"),
        (scheduled.id, "schedule_to_close"),
        (started.id, "start_to_close"),
        (quiet.id, "heartbeat_timeout"),
    }


def test_renewed_heartbeats_push_the_heartbeat_timeout_back(storage: Storage) -> None:
    p = new(heartbeat_timeout=2.0)
    storage.process_insert_many([p])
    [c] = claim(storage, lease=100)
    storage.lease_renew_many("w1", {p.id: c.token}, T0 + 5, 100, {p.id: T0 + 4.5})
    assert storage.process_timed_out(T0 + 6, 10) == []
    [t] = storage.process_timed_out(T0 + 7, 10)
    assert t.cause == "heartbeat_timeout" and t.process.heartbeat_at == T0 + 4.5


def test_a_finished_or_committed_iteration_stops_its_timeouts(storage: Storage) -> None:
    p = new(deadline_at=T0 + 10, start_to_close=1.0, schedule_to_close=5.0)
    storage.process_insert_many([p])
    [c] = claim(storage)
    complete(storage, c, now=T0 + 0.5, to=Status.COMPLETED)
    assert storage.process_timed_out(T0 + 100, 10) == []


def test_a_revoked_lease_fences_out_its_worker(storage: Storage) -> None:
    p = new(start_to_close=1.0)
    storage.process_insert_many([p])
    [c] = claim(storage, lease=100)
    current = storage.process_get(p.id)
    assert current is not None
    change = model.timed_out(
        current, T0 + 2, "start_to_close", retry_delay=0, max_attempts=3, has_rollback=False
    )
    assert change is not None
    assert storage.process_update(p.id, current.version, change, T0 + 2, revoke_lease=True)
    after = storage.process_get(p.id)
    assert after is not None and not after.leased and after.lease_token > c.token
    assert complete(storage, c, now=T0 + 3, to=Status.COMPLETED) == [p.id]
    [again] = claim(storage, now=T0 + 3, owner="w2")
    assert not again.recovered and again.process.attempt == 2
    assert [e.kind for e in storage.history_list(p.id)][-3:] == [
        "timeout",
        "error",
        "retry_scheduled",
    ]


def test_one_leader_at_a_time_until_its_lease_runs_out(storage: Storage) -> None:
    assert storage.leader_acquire("recovery", "a", T0, 10)
    assert not storage.leader_acquire("recovery", "b", T0 + 5, 10)
    assert storage.leader_acquire("recovery", "a", T0 + 5, 10)  # kept by its holder
    assert storage.leader_acquire("other", "b", T0 + 5, 10)  # another name, another leader
    assert not storage.leader_acquire("recovery", "b", T0 + 14, 10)
    assert storage.leader_acquire("recovery", "b", T0 + 16, 10)
    assert not storage.leader_acquire("recovery", "a", T0 + 17, 10)
