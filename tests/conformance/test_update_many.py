"""process_update_many: the recovery sweep's batch of admin changes, each fenced by its
row's version, some revoking a lease."""

from __future__ import annotations

from corral import model
from corral.model import Status
from corral.storage.base import Storage, Update
from tests.conformance.common import T0, claim, complete, new


def test_nothing_to_update_updates_nothing(storage: Storage) -> None:
    assert storage.process_update_many([]) == []


def test_each_update_lands_if_its_row_is_still_at_its_version(storage: Storage) -> None:
    ps = [new() for _ in range(3)]
    storage.process_insert_many(ps)
    current = [storage.process_get(p.id) for p in ps]
    assert all(c is not None for c in current)
    a, b, c = (x for x in current if x is not None)
    # b was changed since it was read: its update is stale and must not land.
    assert storage.process_update(b.id, b.version, model.cancel(b, T0 + 1), T0 + 1)
    changes = {x.id: model.cancel(x, T0 + 2) for x in (a, b, c)}
    updates = [Update(x.id, x.version, changes[x.id], T0 + 2) for x in (a, b, c)]
    assert sorted(storage.process_update_many(updates)) == sorted([a.id, c.id])
    for x in (a, c):
        got = storage.process_get(x.id)
        assert got is not None and got.status is Status.CANCELED
        assert got.version == x.version + 1 and got.updated_at == T0 + 2
        events = [e.kind for e in changes[x.id].events]
        assert [e.kind for e in storage.history_list(x.id)][-len(events) :] == events
    got_b = storage.process_get(b.id)
    assert got_b is not None and got_b.version == b.version + 1 and got_b.updated_at == T0 + 1


def test_an_update_that_revokes_a_lease_fences_out_its_worker(storage: Storage) -> None:
    ps = [new(start_to_close=1.0), new()]
    storage.process_insert_many(ps)
    held = {c.process.id: c for c in claim(storage, limit=2, lease=100)}
    updates = []
    for p in ps:
        current = storage.process_get(p.id)
        assert current is not None
        change = model.timed_out(
            current, T0 + 2, "start_to_close", retry_delay=0, max_attempts=3, has_rollback=False
        )
        assert change is not None
        updates.append(Update(p.id, current.version, change, T0 + 2, revoke_lease=p is ps[0]))
    assert sorted(storage.process_update_many(updates)) == sorted(p.id for p in ps)
    revoked, kept = (storage.process_get(p.id) for p in ps)
    assert revoked is not None and not revoked.leased
    assert revoked.lease_token > held[ps[0].id].token
    assert kept is not None and kept.leased and kept.lease_token == held[ps[1].id].token
    # The revoked lease's worker writes nothing; the other's commit still lands.
    assert complete(storage, held[ps[0].id], now=T0 + 3, to=Status.COMPLETED) == [ps[0].id]
    assert complete(storage, held[ps[1].id], now=T0 + 3, to=Status.COMPLETED) == []
