"""Who may claim what: a worker claims only the jobs it registers, and at most as many
processes whose lease expired as it asks for (one at a time, so that a process that kills
its worker is not claimed again beside the ones it took down with it)."""

from __future__ import annotations

from corral.storage.base import Claim, Storage
from tests.conformance.common import T0, claim, new


def test_a_claim_takes_only_the_jobs_it_names(storage: Storage) -> None:
    known, unknown = new("known"), new("unknown", at=T0 - 10)  # the unknown one is older
    storage.process_insert_many([known, unknown])
    got = claim(storage, limit=10, jobs=["known"])
    assert [c.process.id for c in got] == [known.id]
    # The other stays queued, untouched, for a worker that knows its job.
    left = storage.process_get(unknown.id)
    assert left is not None and not left.leased and left.attempt == 0
    assert [c.process.id for c in claim(storage, limit=10, jobs=["unknown"])] == [unknown.id]


def test_a_claim_without_jobs_takes_any_job(storage: Storage) -> None:
    storage.process_insert_many([new("a"), new("b")])
    assert len(claim(storage, limit=10)) == 2


def test_expired_leases_of_unknown_jobs_are_left_alone(storage: Storage) -> None:
    p = new("other")
    storage.process_insert_many([p])
    claim(storage, lease=5, jobs=["other"])
    assert claim(storage, now=T0 + 10, limit=10, jobs=["mine"]) == []
    [again] = claim(storage, now=T0 + 10, limit=10, jobs=["other"])
    assert again.recovered and again.process.id == p.id


def test_max_recovered_bounds_the_expired_leases_one_claim_takes(storage: Storage) -> None:
    crashed = [new() for _ in range(3)]
    fresh = [new(at=T0 + 1) for _ in range(2)]
    storage.process_insert_many(crashed)
    assert len(claim(storage, limit=3, lease=5, owner="dead")) == 3
    storage.process_insert_many(fresh)
    # The dead worker's three leases expired: a claim asking for at most one of them gets
    # one, then fresh work up to its limit.
    got = storage.process_claim(
        Claim(owner="w2", now=T0 + 10, lease_seconds=30, limit=10, max_recovered=1)
    )
    recovered = [c for c in got if c.recovered]
    assert len(recovered) == 1 and recovered[0].previous_owner == "dead"
    assert {c.process.id for c in got if not c.recovered} == {p.id for p in fresh}
    # None: a claim that may take no expired lease at all leaves the other two.
    none = storage.process_claim(
        Claim(owner="w3", now=T0 + 10, lease_seconds=30, limit=10, max_recovered=0)
    )
    assert none == []
    rest = storage.process_claim(Claim(owner="w3", now=T0 + 10, lease_seconds=30, limit=10))
    assert len(rest) == 2 and all(c.recovered for c in rest)
