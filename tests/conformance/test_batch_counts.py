"""A graph's counts by status come from counter rows that every path moving a process of
the batch keeps true in its own transaction: the submit, claims, commits and the
settling of dependents (promotion, the cancel cascade), an administrative cancel or
retry, resuming dependents, the sweep's timeouts, prune. After each step the counters
must equal a count of the batch's processes, on every backend, before and after the
backend folds what its triggers recorded (`batch_counts_fold`)."""

from __future__ import annotations

import uuid
from collections import Counter

from corral import model
from corral.model import Status
from corral.storage.base import IterationCommit, NewBatch, Storage, Update
from tests.conformance.common import T0, claim, new


def _check(storage: Storage, batch_id: str) -> dict[Status, int]:
    """The counters equal the batch's processes, before and after a fold; the counts."""
    processes, _edges = storage.batch_graph(batch_id)
    expected = dict(Counter(p.status for p in processes))
    assert storage.batch_counts(batch_id) == expected
    while storage.batch_counts_fold(3):  # in small chunks: folds compose
        pass
    assert storage.batch_counts(batch_id) == expected
    return expected


def _current(storage: Storage, pid: str) -> model.Process:
    p = storage.process_get(pid)
    assert p is not None
    return p


def test_the_counters_follow_every_path_that_moves_a_process_of_the_batch(
    storage: Storage,
) -> None:
    batch = NewBatch(str(uuid.uuid4()), "", None, T0)
    root, side = new(batch_id=batch.id), new(batch_id=batch.id)
    child = new(batch_id=batch.id, depends_on=[root.id])
    grandchild = new(batch_id=batch.id, depends_on=[child.id])
    fan_in = new(batch_id=batch.id, depends_on=[root.id, side.id], on_dependency_failure="run")
    storage.process_insert_many([root, side, child, grandchild, fan_in], batch=batch)
    outside = new()  # a process outside the batch moves nothing of it
    storage.process_insert_many([outside])
    assert _check(storage, batch.id) == {Status.STARTING: 2, Status.WAITING: 3}

    # A claim leaves the status alone; a commit moves it (running, then failed).
    [c] = claim(storage, now=T0 + 1, process_ids=[root.id])
    step = model.committed(c.process, T0 + 2, store={}, progress=(None, None), to=Status.RUNNING)
    assert storage.process_commit_many([IterationCommit(root.id, c.token, step, T0 + 2)]) == []
    assert _check(storage, batch.id)[Status.RUNNING] == 1
    [c] = claim(storage, now=T0 + 3, process_ids=[root.id])
    failed = model.fail(model.Change.of(c.process), T0 + 4, has_rollback=False, reason="error")
    failed = failed.with_(error=model.ErrorInfo("ValueError", "no", "", "error"))
    assert storage.process_commit_many([IterationCommit(root.id, c.token, failed, T0 + 4)]) == []
    # The cascade canceled child and grandchild in the same transaction; fan_in (policy
    # run) counted down and still waits for `side`.
    assert _check(storage, batch.id) == {
        Status.FAILED: 1,
        Status.CANCELED: 2,
        Status.STARTING: 1,
        Status.WAITING: 1,
    }

    # An administrative retry of the root, and its dependents resumed.
    current = _current(storage, root.id)
    assert storage.process_update(root.id, current.version, model.retry(current, T0 + 5), T0 + 5)
    assert storage.process_resume_dependents(root.id, T0 + 6) == [child.id, grandchild.id]
    assert _check(storage, batch.id) == {Status.RUNNING: 1, Status.STARTING: 1, Status.WAITING: 3}

    # The sweep's path (process_update_many): `side` canceled; fan_in runs anyway.
    current = _current(storage, side.id)
    cancel = Update(side.id, current.version, model.cancel(current, T0 + 7), T0 + 7)
    assert storage.process_update_many([cancel]) == [side.id]
    assert _check(storage, batch.id) == {
        Status.RUNNING: 1,
        Status.CANCELED: 1,
        Status.WAITING: 3,
    }

    # Everything ends; prune deletes the finished processes and their counts with them.
    at = T0 + 8
    for pid in (root.id, child.id, grandchild.id, fan_in.id):  # each promotes the next
        [c] = claim(storage, now=at, process_ids=[pid])
        done = model.committed(c.process, at, store={}, progress=(None, None), to=Status.COMPLETED)
        assert storage.process_commit_many([IterationCommit(pid, c.token, done, at)]) == []
        at += 1
    assert _check(storage, batch.id) == {Status.COMPLETED: 4, Status.CANCELED: 1}
    assert storage.process_prune(T0 + 100) == 5  # `outside` has not run: it stays
    assert _check(storage, batch.id) == {}
