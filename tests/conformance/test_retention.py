"""Retention (docs/timeouts.md, "Retention"): process_prune_expired deletes completed
processes past their job's cut-off, oldest first, a bounded chunk at a time, with their
history and edges; never a failed or canceled one, never another job's, never one on
which an unfinished process depends."""

from __future__ import annotations

from corral import model
from corral.model import Status
from corral.storage.base import IterationCommit, Storage
from tests.conformance.common import T0, claim, new


def _end(storage: Storage, pid: str, status: Status, now: float) -> None:
    """Claim `pid` and commit an iteration that ends it with `status` at `now`."""
    [c] = claim(storage, now=now, process_ids=[pid])
    if status is Status.FAILED:
        change = model.Change.of(c.process).to(Status.FAILED, now, reason="error")
        change = change.with_(error=model.ErrorInfo("ValueError", "no", "", "error"))
    else:
        change = model.committed(c.process, now, store={}, progress=(None, None), to=status)
    assert storage.process_commit_many([IterationCommit(pid, c.token, change, now)]) == []


def _ended(storage: Storage, job: str, status: Status, at: float) -> str:
    p = new(job)
    storage.process_insert_many([p])
    _end(storage, p.id, status, at)
    return p.id


def _exists(storage: Storage, pid: str) -> bool:
    return storage.process_get(pid) is not None


def test_completed_processes_past_their_jobs_cut_off_are_deleted_and_no_others(
    storage: Storage,
) -> None:
    old_a = _ended(storage, "a", Status.COMPLETED, T0 + 1)
    new_a = _ended(storage, "a", Status.COMPLETED, T0 + 50)
    old_b = _ended(storage, "b", Status.COMPLETED, T0 + 1)
    other = _ended(storage, "kept", Status.COMPLETED, T0 + 1)
    failed = _ended(storage, "a", Status.FAILED, T0 + 1)
    canceled = new("a")
    storage.process_insert_many([canceled])
    current = storage.process_get(canceled.id)
    assert current is not None
    assert storage.process_update(
        canceled.id, current.version, model.cancel(current, T0 + 1), T0 + 1
    )
    running = new("a")
    storage.process_insert_many([running])

    # a: finished before T0 + 10; b: before T0 + 1 (its old one finished at T0 + 1, kept).
    assert storage.process_prune_expired({"a": T0 + 10, "b": T0 + 1}, 100) == 1
    assert not _exists(storage, old_a)
    for kept in (new_a, old_b, other, failed, canceled.id, running.id):
        assert _exists(storage, kept), kept
    assert storage.process_prune_expired({"a": T0 + 10, "b": T0 + 1}, 100) == 0
    assert storage.process_prune_expired({"b": T0 + 2}, 100) == 1
    assert not _exists(storage, old_b)
    # No jobs, no limit: nothing to do.
    assert storage.process_prune_expired({}, 100) == 0
    assert storage.process_prune_expired({"a": T0 + 100}, 0) == 0
    assert _exists(storage, new_a)


def test_a_chunk_is_bounded_and_takes_the_oldest_first_across_jobs(storage: Storage) -> None:
    ids = {}
    for i, job in enumerate(["a", "b", "a", "b", "a"]):
        ids[i] = _ended(storage, job, Status.COMPLETED, T0 + 10 - i)  # the last is oldest
    cutoffs = {"a": T0 + 100, "b": T0 + 100}
    assert storage.process_prune_expired(cutoffs, 2) == 2
    assert {i for i, pid in ids.items() if not _exists(storage, pid)} == {3, 4}
    assert storage.process_prune_expired(cutoffs, 2) == 2
    assert {i for i, pid in ids.items() if not _exists(storage, pid)} == {1, 2, 3, 4}
    assert storage.process_prune_expired(cutoffs, 2) == 1
    assert storage.process_prune_expired(cutoffs, 2) == 0
    assert not any(_exists(storage, pid) for pid in ids.values())


def test_history_and_edges_go_with_their_process(storage: Storage) -> None:
    a = new("a")
    d = new("a", depends_on=[a.id])
    storage.process_insert_many([a, d])
    _end(storage, a.id, Status.COMPLETED, T0 + 1)
    _end(storage, d.id, Status.COMPLETED, T0 + 2)
    assert storage.history_list(a.id) and storage.history_list(d.id)
    assert storage.process_prune_expired({"a": T0 + 10}, 10) == 2
    assert storage.history_list(a.id) == [] and storage.history_list(d.id) == []
    assert storage.process_edges(d.id) == ([], [])
    assert storage.process_edges(a.id) == ([], [])


def test_a_process_an_unfinished_one_depends_on_is_kept_until_that_one_ends(
    storage: Storage,
) -> None:
    a, b = new("a"), new("b")
    d = new("c", depends_on=[a.id, b.id], on_dependency_failure="run")
    storage.process_insert_many([a, b, d])
    _end(storage, a.id, Status.COMPLETED, T0 + 1)
    cutoffs = {"a": T0 + 10, "b": T0 + 10, "c": T0 + 10}
    # d waits on b: a is kept, d will read its result.
    assert storage.process_prune_expired(cutoffs, 10) == 0
    assert _exists(storage, a.id)
    _end(storage, b.id, Status.COMPLETED, T0 + 2)
    # d is runnable now, not finished: still kept.
    assert storage.process_prune_expired(cutoffs, 10) == 0
    _end(storage, d.id, Status.COMPLETED, T0 + 3)
    assert storage.process_prune_expired(cutoffs, 10) == 3
    assert not any(_exists(storage, p.id) for p in (a, b, d))


def test_a_guarded_process_does_not_fill_the_chunk(storage: Storage) -> None:
    """The guard is applied while the chunk is chosen: the oldest process, kept for its
    dependent, does not stop a chunk of one from deleting the next."""
    a = new("a")
    d = new("c", depends_on=[a.id])
    storage.process_insert_many([a, d])
    _end(storage, a.id, Status.COMPLETED, T0 + 1)
    later = _ended(storage, "a", Status.COMPLETED, T0 + 2)
    assert storage.process_prune_expired({"a": T0 + 10}, 1) == 1
    assert _exists(storage, a.id) and not _exists(storage, later)
