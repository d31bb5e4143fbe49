"""Rate limits at the storage boundary: one token bucket per key, shared by every worker,
taken in one transaction with the time the caller passes."""

from __future__ import annotations

import threading

import pytest

from corral.rates import Rate
from corral.storage.base import Storage

T0 = 1_000.0


def test_a_bucket_gives_its_burst_then_one_token_per_interval(storage: Storage) -> None:
    rate = Rate(3, 1.0)
    assert [storage.rate_take("rate:j", rate, T0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert storage.rate_take("rate:j", rate, T0) == pytest.approx(1 / 3)
    assert storage.rate_take("rate:j", rate, T0 + 0.2) == pytest.approx(1 / 3 - 0.2)
    # A token is due at a third of a second (PostgreSQL keeps times to the microsecond).
    assert storage.rate_take("rate:j", rate, T0 + 0.34) == 0.0
    # Another key: a bucket of its own, full.
    assert storage.rate_take("rate:j:other", rate, T0 + 0.34) == 0.0


def test_concurrent_takers_never_get_more_than_the_bucket_holds(storage: Storage) -> None:
    rate = Rate(5, 3600.0)  # 5 an hour: nothing refills during the test
    got: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        wait = storage.rate_take("rate:race", rate, T0)
        with lock:
            got.append(wait)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got).count(0.0) == 5 and len(got) == 20
