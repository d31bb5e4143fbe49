"""Commits: fenced by the lease token, all of an iteration or nothing, each one once."""

from __future__ import annotations

from corral import model
from corral.model import ErrorInfo, Status
from corral.storage.base import Claim, IterationCommit, Storage
from tests.conformance.common import T0, claim, complete, new


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


def test_update_is_refused_when_the_row_moved_on(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    before = storage.process_get(p.id)
    assert before is not None
    claim(storage)
    assert not storage.process_update(p.id, before.version, model.cancel(before, T0), T0)
    now = storage.process_get(p.id)
    assert now is not None and now.status is Status.STARTING and not now.cancel_requested
