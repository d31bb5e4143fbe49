"""Task graphs: edges written with their processes, dependents settled in the transaction
that ends a dependency (promotion, the cancel cascade with its root cause, the `run`
policy), what a dependent reads of its dependencies, batches, and pruning around them."""

from __future__ import annotations

import threading
import uuid

import pytest

from corral import model
from corral.errors import UsageError
from corral.model import Status
from corral.storage.base import Claim, IterationCommit, NewBatch, NewProcess, Storage
from tests.conformance.common import T0, claim, new


def _end(storage: Storage, pid: str, status: Status, now: float, **kw: object) -> None:
    """Claim `pid` and commit an iteration that ends it with `status`."""
    [c] = claim(storage, now=now, process_ids=[pid])
    if status is Status.FAILED:
        change = model.Change.of(c.process).to(Status.FAILED, now, reason="error")
        change = change.with_(error=model.ErrorInfo("ValueError", "no", "", "error"))
    else:
        change = model.committed(
            c.process, now, store={}, progress=(None, None), to=status, result=kw.get("result")
        )
    assert storage.process_commit_many([IterationCommit(pid, c.token, change, now)]) == []


def _status(storage: Storage, pid: str) -> Status:
    p = storage.process_get(pid)
    assert p is not None
    return p.status


def _last_event(storage: Storage, pid: str) -> model.Event:
    return storage.history_list(pid)[-1]


def test_a_dependent_waits_and_is_promoted_by_the_commit_that_ends_its_last_dependency(
    storage: Storage,
) -> None:
    a, b = new(), new()
    d = new(depends_on=[a.id, b.id], run_at=T0 - 100)
    inserted = storage.process_insert_many([a, b, d])
    assert [i.process.status for i in inserted] == [Status.STARTING] * 2 + [Status.WAITING]
    assert _status(storage, d.id) is Status.WAITING
    # Waiting: never claimed, whatever the claim asks for.
    assert claim(storage, now=T0 + 1, process_ids=[d.id]) == []
    _end(storage, a.id, Status.COMPLETED, T0 + 2, result=1)
    assert _status(storage, d.id) is Status.WAITING
    [cb] = claim(storage, now=T0 + 3, process_ids=[b.id])
    done = model.committed(
        cb.process, T0 + 4, store={}, progress=(None, None), to=Status.COMPLETED, result=2
    )
    # The exchange that ends the last dependency claims the dependent at once.
    lost, claimed = storage.process_commit_and_claim(
        [IterationCommit(b.id, cb.token, done, T0 + 4)],
        Claim(owner="w1", now=T0 + 4, lease_seconds=30, limit=5),
    )
    assert lost == [] and [c.process.id for c in claimed] == [d.id]
    got = claimed[0].process
    # Queued from its promotion, not from its earlier run_at: it took its turn then.
    assert got.run_at == pytest.approx(T0 + 4) and got.iteration_since == pytest.approx(T0 + 4)
    promoted = [e for e in storage.history_list(d.id) if e.to_status is Status.STARTING][-1]
    assert (promoted.from_status, dict(promoted.detail)) == (
        Status.WAITING,
        {"reason": "dependencies_done"},
    )
    deps = storage.dependencies_of([d.id])[d.id]
    assert [(r.id, r.status, r.result) for r in deps] == sorted(
        [(a.id, Status.COMPLETED, 1), (b.id, Status.COMPLETED, 2)]
    )
    assert storage.process_edges(d.id) == (sorted([a.id, b.id]), [])
    assert storage.process_edges(a.id) == ([], [d.id])


def test_a_failure_cancels_dependents_down_the_graph_naming_cause_and_root(
    storage: Storage,
) -> None:
    root, ok = new(), new()
    child = new(depends_on=[root.id, ok.id])
    grandchild = new(depends_on=[child.id])
    fan_in = new(depends_on=[root.id, ok.id], on_dependency_failure="run")
    storage.process_insert_many([root, ok, child, grandchild, fan_in])
    _end(storage, root.id, Status.FAILED, T0 + 1)
    assert _status(storage, child.id) is Status.CANCELED
    assert _status(storage, grandchild.id) is Status.CANCELED
    ev = _last_event(storage, child.id)
    assert (ev.from_status, ev.to_status) == (Status.WAITING, Status.CANCELED)
    assert dict(ev.detail) == {
        "reason": "dependency_failed",
        "caused_by": root.id,
        "root_cause": root.id,
    }
    assert dict(_last_event(storage, grandchild.id).detail) == {
        "reason": "dependency_canceled",
        "caused_by": child.id,
        "root_cause": root.id,
    }
    got = storage.process_get(grandchild.id)
    assert got is not None and got.finished_at == pytest.approx(T0 + 1)
    # Under "run", the fan-in still waits for the other, then runs and sees both.
    assert _status(storage, fan_in.id) is Status.WAITING
    _end(storage, ok.id, Status.COMPLETED, T0 + 2, result="fine")
    assert _status(storage, fan_in.id) is Status.STARTING
    seen = {r.id: r for r in storage.dependencies_of([fan_in.id])[fan_in.id]}
    assert seen[root.id].status is Status.FAILED and seen[root.id].error is not None
    assert seen[root.id].error.type == "ValueError"
    assert (seen[ok.id].status, seen[ok.id].result) == (Status.COMPLETED, "fine")


def test_a_cascade_counts_each_canceled_dependency_once(storage: Storage) -> None:
    """a is canceled; b (cancel policy) depends on a, so it is canceled too; c (run policy)
    depends on b and on d, still running: c counts b down once, and waits for d."""
    a, d = new(), new()
    b = new(depends_on=[a.id])
    c = new(depends_on=[b.id, d.id], on_dependency_failure="run")
    storage.process_insert_many([a, d, b, c])
    current = storage.process_get(a.id)
    assert current is not None
    assert storage.process_update(a.id, current.version, model.cancel(current, T0 + 1), T0 + 1)
    assert _status(storage, b.id) is Status.CANCELED
    assert _status(storage, c.id) is Status.WAITING
    _end(storage, d.id, Status.COMPLETED, T0 + 2)
    assert _status(storage, c.id) is Status.STARTING


def test_canceling_a_waiting_process_cascades_like_a_failure(storage: Storage) -> None:
    a = new()
    b = new(depends_on=[a.id])
    c = new(depends_on=[b.id])
    storage.process_insert_many([a, b, c])
    current = storage.process_get(b.id)
    assert current is not None
    assert storage.process_update(b.id, current.version, model.cancel(current, T0 + 1), T0 + 1)
    assert _status(storage, b.id) is Status.CANCELED
    assert _status(storage, c.id) is Status.CANCELED
    assert dict(_last_event(storage, c.id).detail) == {
        "reason": "dependency_canceled",
        "caused_by": b.id,
        "root_cause": b.id,
    }
    # The dependency that is left ends later: nothing waits for it any more.
    _end(storage, a.id, Status.COMPLETED, T0 + 2)
    assert _status(storage, c.id) is Status.CANCELED


def test_a_dependency_that_already_failed_cancels_a_new_dependent_at_once(
    storage: Storage,
) -> None:
    a = new()
    storage.process_insert_many([a])
    _end(storage, a.id, Status.FAILED, T0 + 1)
    b = new(at=T0 + 2, depends_on=[a.id])
    c = new(at=T0 + 2, depends_on=[b.id])
    d = new(at=T0 + 2, depends_on=[a.id], on_dependency_failure="run")
    out = storage.process_insert_many([b, c, d])
    assert [i.process.status for i in out] == [Status.CANCELED, Status.CANCELED, Status.STARTING]
    for pid in (b.id, c.id, d.id):
        assert _status(storage, pid) is {b.id: Status.CANCELED, c.id: Status.CANCELED}.get(
            pid, Status.STARTING
        )
    history = storage.history_list(c.id)
    assert [(e.kind, e.to_status) for e in history] == [
        ("submitted", Status.WAITING),
        ("transition", Status.CANCELED),
    ]
    assert dict(history[-1].detail)["root_cause"] == a.id


def test_a_dependency_must_exist_or_come_earlier_and_nothing_is_written_otherwise(
    storage: Storage,
) -> None:
    a = new()
    missing = str(uuid.uuid4())
    b = new(depends_on=[a.id, missing])
    with pytest.raises(UsageError, match="neither a process that exists nor an earlier"):
        storage.process_insert_many([a, b])
    assert storage.process_get(a.id) is None and storage.process_get(b.id) is None
    later = new()
    early = new(depends_on=[later.id])
    with pytest.raises(UsageError, match="comes later in the batch"):
        storage.process_insert_many([early, later])
    assert storage.process_get(later.id) is None


def test_two_dependencies_ending_at_once_both_count(storage: Storage) -> None:
    deps = [new() for _ in range(8)]
    d = new(depends_on=[p.id for p in deps])
    storage.process_insert_many([*deps, d])
    claimed = {c.process.id: c for c in claim(storage, now=T0 + 1, limit=8)}
    assert len(claimed) == 8
    errors: list[BaseException] = []

    def end(pid: str) -> None:
        c = claimed[pid]
        change = model.committed(
            c.process, T0 + 2, store={}, progress=(None, None), to=Status.COMPLETED
        )
        try:
            storage.process_commit_many([IterationCommit(pid, c.token, change, T0 + 2)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=end, args=(p.id,)) for p in deps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _status(storage, d.id) is Status.STARTING
    promotions = [e for e in storage.history_list(d.id) if e.to_status is Status.STARTING]
    assert len(promotions) == 1


def test_a_retried_dependency_is_waited_for_again(storage: Storage) -> None:
    a, b = new(), new()
    d = new(depends_on=[a.id, b.id], on_dependency_failure="run")
    storage.process_insert_many([a, b, d])
    _end(storage, a.id, Status.FAILED, T0 + 1)
    current = storage.process_get(a.id)
    assert current is not None
    assert storage.process_update(a.id, current.version, model.retry(current, T0 + 2), T0 + 2)
    _end(storage, b.id, Status.COMPLETED, T0 + 3)
    # b ended, but a runs again: d waits for it.
    assert _status(storage, d.id) is Status.WAITING
    _end(storage, a.id, Status.COMPLETED, T0 + 4)
    assert _status(storage, d.id) is Status.STARTING


def test_pruning_keeps_a_process_an_unfinished_one_depends_on(storage: Storage) -> None:
    a, b = new(), new()
    d = new(depends_on=[a.id, b.id], on_dependency_failure="run")
    storage.process_insert_many([a, b, d])
    _end(storage, a.id, Status.COMPLETED, T0 + 1)
    assert storage.process_prunable(T0 + 10) == {}
    assert storage.process_prune(T0 + 10) == 0
    _end(storage, b.id, Status.COMPLETED, T0 + 2)
    _end(storage, d.id, Status.COMPLETED, T0 + 3)
    assert storage.process_prunable(T0 + 10) == {"add": 3}
    assert storage.process_prune(T0 + 10) == 3


def test_a_batch_is_written_whole_counted_by_status_and_found_by_its_custom_id(
    storage: Storage,
) -> None:
    batch = NewBatch(str(uuid.uuid4()), "", "nightly", T0)
    a = new(batch_id=batch.id)
    b = new(batch_id=batch.id, depends_on=[a.id])
    out = storage.process_insert_many([a, b], batch=batch)
    assert [i.outcome for i in out] == ["created", "created"]
    info = storage.batch_get(batch.id)
    assert info is not None and (info.custom_id, info.size) == ("nightly", 2)
    assert storage.batch_by_custom_id("", "nightly") == info
    assert storage.batch_counts(batch.id) == {Status.STARTING: 1, Status.WAITING: 1}
    processes, edges = storage.batch_graph(batch.id)
    assert sorted(p.id for p in processes) == sorted([a.id, b.id])
    assert edges == [(b.id, a.id)]
    # The same batch again: nothing new is written.
    again = NewBatch(str(uuid.uuid4()), "", "nightly", T0 + 5)
    a2 = new(batch_id=again.id)
    out = storage.process_insert_many([a2], batch=again)
    assert {i.outcome for i in out} == {"existing"}
    assert sorted(i.process.id for i in out) == sorted([a.id, b.id])
    assert storage.process_get(a2.id) is None and storage.batch_get(again.id) is None
    _end(storage, a.id, Status.COMPLETED, T0 + 1)
    assert storage.batch_counts(batch.id) == {Status.COMPLETED: 1, Status.STARTING: 1}


def test_retry_with_dependents_resumes_what_the_failure_canceled(storage: Storage) -> None:
    root, other, ok = new(), new(), new()
    child = new(depends_on=[root.id, ok.id])
    grandchild = new(depends_on=[child.id, root.id])
    stuck = new(depends_on=[root.id, other.id])
    storage.process_insert_many([root, other, ok, child, grandchild, stuck])
    _end(storage, ok.id, Status.COMPLETED, T0 + 1)
    _end(storage, other.id, Status.FAILED, T0 + 2)  # cancels `stuck`, root cause `other`
    _end(storage, root.id, Status.FAILED, T0 + 3)
    assert {_status(storage, p.id) for p in (child, grandchild, stuck)} == {Status.CANCELED}
    current = storage.process_get(root.id)
    assert current is not None
    assert storage.process_update(root.id, current.version, model.retry(current, T0 + 4), T0 + 4)
    # Dependencies first: the child, then the grandchild that depends on it.
    assert storage.process_resume_dependents(root.id, T0 + 5) == [child.id, grandchild.id]
    # child waits for root (ok completed); grandchild for child and root.
    assert _status(storage, child.id) is Status.WAITING
    assert _status(storage, grandchild.id) is Status.WAITING
    assert _status(storage, stuck.id) is Status.CANCELED  # its root cause was `other`
    ev = _last_event(storage, child.id)
    assert (ev.from_status, ev.to_status, dict(ev.detail)) == (
        Status.CANCELED,
        Status.WAITING,
        {"reason": "retry_with_dependencies", "root_cause": root.id},
    )
    # Nothing left to resume a second time.
    assert storage.process_resume_dependents(root.id, T0 + 6) == []
    _end(storage, root.id, Status.COMPLETED, T0 + 7)
    assert _status(storage, child.id) is Status.STARTING
    assert _status(storage, grandchild.id) is Status.WAITING
    _end(storage, child.id, Status.COMPLETED, T0 + 8)
    assert _status(storage, grandchild.id) is Status.STARTING


def _spawning_commit(
    storage: Storage, pid: str, children: list[NewProcess], now: float
) -> list[str]:
    """Claim `pid` (a `start`) and commit an iteration that spawned `children`."""
    from corral.settle import Policy, Returned, settle

    [c] = claim(storage, now=now, process_ids=[pid])
    policy = Policy(next_phase={Status.STARTING: Status.RUNNING, Status.RUNNING: Status.ENDING})
    change = settle(c.process, policy, Returned({"spawned": True}, spawned=len(children)), now)
    commit = IterationCommit(pid, c.token, change, now, tuple(children))
    return storage.process_commit_many([commit])


def test_children_are_spawned_with_the_commit_and_their_parent_resumes_after_them(
    storage: Storage,
) -> None:
    parent = new()
    storage.process_insert_many([parent])
    kids = [new(at=T0 + 1) for _ in range(2)]
    assert _spawning_commit(storage, parent.id, kids, T0 + 1) == []
    got = storage.process_get(parent.id)
    assert got is not None and (got.status, got.stopped_status) == (Status.WAITING, Status.RUNNING)
    assert [_status(storage, k.id) for k in kids] == [Status.STARTING, Status.STARTING]
    assert storage.process_edges(parent.id) == (sorted(k.id for k in kids), [])
    _end(storage, kids[0].id, Status.FAILED, T0 + 2)
    assert _status(storage, parent.id) is Status.WAITING  # a parent runs whatever they did
    _end(storage, kids[1].id, Status.COMPLETED, T0 + 3, result=7)
    got = storage.process_get(parent.id)
    assert got is not None and (got.status, got.stopped_status) == (Status.RUNNING, None)
    assert got.store == {"spawned": True} and got.run_at == pytest.approx(T0 + 3)
    moves = [(e.from_status, e.to_status) for e in storage.history_list(parent.id)]
    assert moves[-2:] == [(Status.STARTING, Status.WAITING), (Status.WAITING, Status.RUNNING)]


def test_a_lost_lease_spawns_nothing(storage: Storage) -> None:
    parent = new()
    storage.process_insert_many([parent])
    [c] = claim(storage, now=T0 + 1, lease=1.0)
    # Another worker takes the expired lease over before the first one commits.
    claim(storage, now=T0 + 5, owner="w2")
    from corral.settle import Policy, Returned, settle

    kid = new(at=T0 + 6)
    change = settle(c.process, Policy(), Returned({}, spawned=1), T0 + 6)
    commit = IterationCommit(parent.id, c.token, change, T0 + 6, (kid,))
    assert storage.process_commit_many([commit]) == [parent.id]
    assert storage.process_get(kid.id) is None


def test_a_child_that_exists_and_has_ended_does_not_hold_its_parent(storage: Storage) -> None:
    done = new(custom_id="report-1")
    parent = new()
    storage.process_insert_many([done, parent])
    _end(storage, done.id, Status.COMPLETED, T0 + 1)
    again = new(at=T0 + 2, custom_id="report-1")  # the same submit: that process
    assert _spawning_commit(storage, parent.id, [again], T0 + 2) == []
    assert storage.process_get(again.id) is None
    assert _status(storage, parent.id) is Status.RUNNING  # nothing to wait for
    assert storage.process_edges(parent.id) == ([done.id], [])
