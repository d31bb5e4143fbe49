"""Leases: renewals, releases, revocations, and the sweep's leadership."""

from __future__ import annotations

from corral import model
from corral.model import Status
from corral.storage.base import Storage
from tests.conformance.common import T0, claim, complete, new


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


def test_renew_saves_the_progress_a_handler_reported_while_it_holds_the_lease(
    storage: Storage,
) -> None:
    storage.process_insert_many([new(), new()])
    a, b = claim(storage, limit=2, lease=5, owner="w1")
    claim(storage, now=T0 + 6, owner="w2", process_ids=[b.process.id])  # b's lease lost
    tokens = {a.process.id: a.token, b.process.id: b.token}
    progress = {a.process.id: (3.0, 10.0), b.process.id: (9.0, 10.0)}
    storage.lease_renew_many("w1", {a.process.id: a.token}, T0 + 4, 30, progress=progress)
    renewal = storage.lease_renew_many("w1", tokens, T0 + 7, 30, progress=progress)
    assert renewal.lost == {b.process.id}
    pa, pb = storage.process_get(a.process.id), storage.process_get(b.process.id)
    assert pa is not None and pb is not None
    assert (pa.progress_done, pa.progress_total) == (3.0, 10.0)
    assert pb.progress_done is None  # not the holder's any more: nothing written
    # A report without a total keeps the stored one; no report leaves both alone.
    storage.lease_renew_many(
        "w1", {a.process.id: a.token}, T0 + 8, 30, progress={a.process.id: (4.0, None)}
    )
    storage.lease_renew_many("w1", {a.process.id: a.token}, T0 + 9, 30)
    pa = storage.process_get(a.process.id)
    assert pa is not None and (pa.progress_done, pa.progress_total) == (4.0, 10.0)
    # The commit's own progress wins at the end.
    complete(storage, a, now=T0 + 10)
    pa = storage.process_get(a.process.id)
    assert pa is not None and (pa.progress_done, pa.progress_total) == (1.0, 2.0)


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
