"""Concurrency keys (docs/flow-control.md): a claim takes a process with a key only while
fewer live leases of its key than its limit exist, counting those it takes itself; an
expired lease frees its slot by expiring; claimers on separate connections never take one
slot twice; renewals do not revive an expired keyed lease."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import NewProcess, Storage, SubmitShared
from tests.backends import make_storage
from tests.conformance.common import T0, claim, complete, new


def keyed(key: str, limit: int, *, at: float = T0, **kw: object) -> NewProcess:
    return new(at=at, concurrency_key=key, concurrency_limit=limit, **kw)


def test_one_claim_takes_no_more_of_a_key_than_its_limit(storage: Storage) -> None:
    a = [keyed("a", 2, at=T0 + i) for i in range(5)]
    b = [keyed("b", 1, at=T0 + 10 + i) for i in range(3)]
    free = [new(at=T0 + 20 + i) for i in range(2)]
    storage.process_insert_many([*a, *b, *free])
    got = [c.process.id for c in claim(storage, now=T0 + 100, limit=20)]
    # The first of each key in claim order (oldest run_at), and every process without one.
    assert got == [a[0].id, a[1].id, b[0].id, free[0].id, free[1].id]
    assert claim(storage, now=T0 + 100, limit=20) == []


def test_a_claim_looks_past_the_keys_it_fills_up_to_its_limit(storage: Storage) -> None:
    """The first keys' processes come first in claim order, more of them than the keys
    allow: the claim leaves those out and fills its limit with what comes after."""
    a = [keyed("a", 2, at=T0 + i) for i in range(10)]
    b = [keyed("b", 2, at=T0 + 10 + i) for i in range(10)]
    free = [new(at=T0 + 20 + i) for i in range(5)]
    storage.process_insert_many([*a, *b, *free])
    got = [c.process.id for c in claim(storage, now=T0 + 100, limit=7)]
    assert got == [a[0].id, a[1].id, b[0].id, b[1].id, free[0].id, free[1].id, free[2].id]


def test_a_full_key_stays_queued_and_a_commit_frees_its_slot(storage: Storage) -> None:
    ps = [keyed("k", 2, at=T0 + i) for i in range(4)]
    storage.process_insert_many(ps)
    first = claim(storage, now=T0 + 10, limit=1)
    second = claim(storage, now=T0 + 10, limit=5)
    assert [c.process.id for c in [*first, *second]] == [ps[0].id, ps[1].id]
    assert claim(storage, now=T0 + 10, limit=5) == []
    held = storage.process_get(ps[2].id)
    assert held is not None and held.status is Status.STARTING and held.lease_owner is None
    assert held.attempt == 0 and held.lease_token == 0  # not touched: neither failed nor moved
    complete(storage, first[0], now=T0 + 11, to=Status.COMPLETED)
    [third] = claim(storage, now=T0 + 11, limit=5)
    assert third.process.id == ps[2].id
    assert claim(storage, now=T0 + 11, limit=5) == []


def test_an_expired_lease_frees_its_slot_by_expiring(storage: Storage) -> None:
    stuck, waiting = keyed("k", 1, at=T0), keyed("k", 1, at=T0 + 1)
    storage.process_insert_many([stuck, waiting])
    [held] = claim(storage, now=T0 + 1, owner="frozen", lease=10)
    assert held.process.id == stuck.id
    # Live until T0 + 11 (inclusive): the slot is taken, for the expired process too.
    assert claim(storage, now=T0 + 11, limit=5, max_recovered=0) == []
    # Expired: the next claim takes the waiting process, and the expired one no longer
    # counts; then the key is full again, for the expired process as for any other.
    [taken] = claim(storage, now=T0 + 12, owner="w2", limit=1, max_recovered=0)
    assert taken.process.id == waiting.id
    assert claim(storage, now=T0 + 12, owner="w2", limit=5) == []
    complete(storage, taken, now=T0 + 13, to=Status.COMPLETED)
    [recovered] = claim(storage, now=T0 + 13, owner="w2", limit=5)
    assert recovered.process.id == stuck.id and recovered.recovered
    assert recovered.previous_owner == "frozen"


def test_expired_leases_taken_over_count_against_the_key(storage: Storage) -> None:
    ps = [keyed("k", 2, at=T0 + i) for i in range(3)]
    storage.process_insert_many(ps)
    claim(storage, now=T0 + 5, owner="dead", limit=2, lease=1)
    got = claim(storage, now=T0 + 10, owner="w2", limit=5)
    # Two slots: both expired ones (recovery comes first), not the third as well.
    assert [(c.process.id, c.recovered) for c in got] == [(ps[0].id, True), (ps[1].id, True)]


def test_keys_are_independent_and_processes_without_a_key_are_not_limited(
    storage: Storage,
) -> None:
    storage.process_insert_many([keyed(f"k{i % 3}", 1, at=T0 + i) for i in range(9)])
    storage.process_insert_many([new(at=T0 + 20 + i) for i in range(6)])
    got = claim(storage, now=T0 + 100, limit=50)
    assert len(got) == 3 + 6


def test_a_released_lease_frees_its_slot(storage: Storage) -> None:
    ps = [keyed("k", 1, at=T0 + i) for i in range(2)]
    storage.process_insert_many(ps)
    [c] = claim(storage, now=T0 + 5)
    assert claim(storage, now=T0 + 5) == []
    assert storage.lease_release_many({c.process.id: c.token}, T0 + 6) == [c.process.id]
    [again] = claim(storage, now=T0 + 6)
    assert again.process.id == ps[0].id


def test_a_renewal_does_not_revive_an_expired_keyed_lease(storage: Storage) -> None:
    k, plain = keyed("k", 1, at=T0), new(at=T0 + 1)
    storage.process_insert_many([k, plain])
    got = claim(storage, now=T0 + 1, owner="w1", lease=5, limit=2)
    tokens = {c.process.id: c.token for c in got}
    # In time, both are renewed; past their expiry, only the process without a key is:
    # the keyed one's slot has been free since, and may be another's now.
    assert storage.lease_renew_many("w1", tokens, T0 + 4, 5).lost == frozenset()
    renewal = storage.lease_renew_many("w1", tokens, T0 + 20, 5)
    assert renewal.lost == frozenset({k.id})


def test_process_concurrency_names_the_key_limit_and_live_holders(storage: Storage) -> None:
    ps = [keyed("k", 2, at=T0 + i) for i in range(3)]
    plain = new(at=T0 + 50)  # not runnable yet
    storage.process_insert_many([*ps, plain])
    claim(storage, now=T0 + 5, owner="w1", lease=10)
    claim(storage, now=T0 + 6, owner="w2", lease=10)
    slots = storage.process_concurrency(ps[2].id, T0 + 7)
    assert slots is not None and (slots.key, slots.limit) == ("k", 2) and slots.full
    assert [(h.process_id, h.lease_owner, h.lease_expires_at) for h in slots.holders] == [
        (ps[0].id, "w1", T0 + 15),
        (ps[1].id, "w2", T0 + 16),
    ]
    # Past the first lease's expiry it holds no slot: the count the claim makes.
    later = storage.process_concurrency(ps[2].id, T0 + 15.5)
    assert later is not None and [h.process_id for h in later.holders] == [ps[1].id]
    assert not later.full
    assert storage.process_concurrency(plain.id, T0) is None
    assert storage.process_concurrency("00000000-0000-0000-0000-000000000000", T0) is None


def test_keys_survive_every_insert_path(storage: Storage) -> None:
    """One submit call's batch (with what it shares), a custom id, a single process."""
    shared = SubmitShared(
        job="add", created_at=T0, run_at=T0, priority=0, queue="default", client_id="",
        tags={}, deadline_at=None, schedule_to_close=None, start_to_close=None,
        heartbeat_timeout=None, concurrency_limit=1,
    )  # fmt: skip
    batch = [shared.new_process(f"{i:08d}-0000-7000-8000-000000000000", {"i": i}, f'{{"i":{i}}}',
                                None, f"k{i % 2}") for i in range(4)]  # fmt: skip
    storage.process_insert_many(batch, shared=shared)
    storage.process_insert_many([keyed("k0", 1, custom_id="mine")])
    storage.process_insert_many([keyed("k2", 1)])
    storage.process_insert_many([keyed("k0", 1)], shared=None)
    got = claim(storage, now=T0 + 1, limit=20)
    assert len(got) == 3  # k0, k1 and k2: one each
    for pid in (batch[0].id, batch[1].id):
        slots = storage.process_concurrency(pid, T0 + 1)
        assert slots is not None and slots.limit == 1 and slots.key in ("k0", "k1")


def test_concurrent_claimers_never_take_more_than_a_key_allows(
    backend: str, tmp_path: Path
) -> None:
    """Claimers on separate connections race for the slots of three keys (limit 2) over
    five rounds; each round starts when the last round's leases have expired. In no round
    does a key get more than its two, and a last claim alone finds the rest: exactly two."""
    rounds, per_key = 5, 20
    with make_storage(backend, tmp_path) as storage:
        processes = [keyed(f"k{i % 3}", 2, at=T0 + i) for i in range(3 * per_key)]
        key_of = {p.id: p.concurrency_key for p in processes}
        storage.process_insert_many(processes)
        claimers = (
            [storage] if backend == "memory" else [open_storage(storage.url) for _ in range(4)]
        )
        taken: Counter[tuple[int, str | None]] = Counter()
        lock = threading.Lock()
        try:
            for r in range(rounds):
                now = T0 + 1000 * (r + 1)
                start = threading.Barrier(4)

                def work(
                    owner: str,
                    own: Storage,
                    now: float = now,
                    r: int = r,
                    go: threading.Barrier = start,
                ) -> None:
                    go.wait()
                    empty = 0
                    while empty < 3:
                        got = claim(own, owner=owner, now=now, limit=3, lease=500)
                        empty = 0 if got else empty + 1
                        with lock:
                            taken.update((r, key_of[c.process.id]) for c in got)

                threads = [
                    threading.Thread(target=work, args=(f"w{i}", claimers[i % len(claimers)]))
                    for i in range(4)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                for c in claim(storage, owner="last", now=now, limit=100, lease=500):
                    taken[(r, key_of[c.process.id])] += 1
        finally:
            for other in claimers:
                if other is not storage:
                    other.close()
    assert taken == Counter({(r, f"k{k}"): 2 for r in range(rounds) for k in range(3)})


def test_keys_survive_the_graph_insert_path(storage: Storage) -> None:
    """Processes with dependencies, or in a batch, go through the graph insert: their keys
    too are stored, and a promoted dependent still takes a slot of its key."""
    from corral.storage.base import NewBatch

    first = keyed("g", 1)
    second = keyed("g", 1, depends_on=(first.id,))
    batch = NewBatch("01a23000-0000-7000-8000-000000000000", created_at=T0)
    storage.process_insert_many([first, second], batch=batch)
    for pid in (first.id, second.id):
        slots = storage.process_concurrency(pid, T0)
        assert slots is not None and (slots.key, slots.limit) == ("g", 1)
    [c] = claim(storage, now=T0 + 1, limit=5)
    assert c.process.id == first.id
