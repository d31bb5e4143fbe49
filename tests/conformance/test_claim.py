"""Claims: a new lease and token, claim order (docs/state-machine.md), batches, expired leases taken
over, and no process shared between claimers on separate connections."""

from __future__ import annotations

import threading
from pathlib import Path

from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import Storage
from tests.backends import make_storage
from tests.conformance.common import T0, claim, complete, new, put_in


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


def test_claim_order_fixes_first_then_finishes_then_starts(storage: Storage) -> None:
    starting = put_in(storage, Status.STARTING, at=T0)
    running = put_in(storage, Status.RUNNING, at=T0 + 1)
    ending = put_in(storage, Status.ENDING, at=T0 + 2)
    failing = put_in(storage, Status.FAILING, at=T0 + 3)
    cancel = put_in(storage, Status.RUNNING, at=T0 + 4, cancel=True)
    expired = put_in(storage, Status.RUNNING, at=T0 + 5)
    claim(storage, now=T0 + 5, owner="dead", lease=1, process_ids=[expired])
    order = [c.process.id for c in claim(storage, now=T0 + 100, limit=10)]
    assert order == [expired, cancel, failing, ending, running, starting]


def test_within_a_class_higher_priority_then_oldest_run_at(storage: Storage) -> None:
    old_low = put_in(storage, Status.RUNNING, at=T0)
    new_high = put_in(storage, Status.RUNNING, at=T0 + 2, priority=5)
    new_low = put_in(storage, Status.RUNNING, at=T0 + 1)
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


def test_concurrent_claimers_never_share_a_process(backend: str, tmp_path: Path) -> None:
    """Claimers on separate connections (so that the database, not a lock of ours, keeps
    them apart) take 200 processes between them, each exactly once. A memory database has
    one connection: there the claimers share it, and this checks the claim's bookkeeping."""
    with make_storage(backend, tmp_path) as storage:
        storage.process_insert_many([new(at=T0 + i) for i in range(200)])
        if backend == "memory":
            claimers = [storage]
        else:
            claimers = [open_storage(storage.url) for _ in range(4)]
        seen: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def work(owner: str, own: Storage) -> None:
            start.wait()
            while True:
                got = claim(own, owner=owner, limit=3, now=T0 + 500)
                if not got:
                    return
                with lock:
                    seen.extend(c.process.id for c in got)

        threads = [
            threading.Thread(target=work, args=(f"w{i}", claimers[i % len(claimers)]))
            for i in range(4)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            for other in claimers:
                if other is not storage:
                    other.close()
        assert len(seen) == 200 and len(set(seen)) == 200
