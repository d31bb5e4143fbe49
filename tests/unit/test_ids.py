"""Process ids: UUIDv7, time-ordered, unique, and still plain UUIDs. No database."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest

from corral import App
from corral.app import parse_id
from corral.ids import MIN_PREFIX, new_id, new_ids, prefix_of_id, short_id


def test_ids_are_version_7_rfc_uuids_in_canonical_form() -> None:
    for pid in [*new_ids(1000), new_id()]:
        u = uuid.UUID(pid)
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert str(u) == pid  # lowercase, 8-4-4-4-12: what parse_id gives back
        assert parse_id(pid) == pid


def test_the_first_48_bits_are_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    [pid] = new_ids(1)
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(pid).int >> 80 <= after
    fixed = 1_795_000_000_123_456_789
    assert {uuid.UUID(p).int >> 80 for p in new_ids(50, now_ns=fixed)} == {1_795_000_000_123}


def test_a_batch_is_ascending_and_later_ids_sort_after_earlier_ones() -> None:
    batch = new_ids(5000)
    assert batch == sorted(batch)
    later = new_ids(10, now_ns=time.time_ns() + 2_000_000)
    assert max(batch) < min(later)


def test_74_bits_of_every_id_are_random() -> None:
    # Same millisecond: only the 74 random bits tell ids apart, and every one of them varies.
    ids = [uuid.UUID(p).int for p in new_ids(20_000, now_ns=1_795_000_000_000_000_000)]
    assert len(set(ids)) == len(ids)
    fixed = (0xFFFF_FFFF_FFFF << 80) | (0xF << 76) | (0b11 << 62)  # time, version, variant
    varying = 0
    for i in ids:
        varying |= i ^ ids[0]
    assert varying & fixed == 0
    assert bin(varying & ~fixed & ((1 << 128) - 1)).count("1") == 74


def _batch(_: int) -> list[str]:
    return new_ids(2000)


def test_ids_made_by_separate_processes_at_once_do_not_collide() -> None:
    with ProcessPoolExecutor(2) as pool:
        batches = list(pool.map(_batch, range(8)))
    every = [p for b in batches for p in b]
    assert len(set(every)) == len(every) == 16_000


def test_nothing_for_nothing() -> None:
    assert new_ids(0) == []


@pytest.mark.parametrize(
    "stored",
    [
        "3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a",  # uuid4, as every id before version 7
        "3F2B1C9E-8D4A-4C1E-9B7A-2E6F5D4C3B2A",
        "{3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a}",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  # uuid1
    ],
)
def test_any_uuid_is_still_accepted_as_a_process_id(stored: str) -> None:
    assert parse_id(stored) == str(uuid.UUID(stored))


def test_submit_gives_time_ordered_ids_in_the_order_of_a_batch() -> None:
    app = App("memory://")

    @app.job()
    def add(a: int, b: int) -> int:
        return a + b

    try:
        one = app.submit("add", {"a": 1, "b": 2})
        many = app.submit_many("add", [{"a": i, "b": 0} for i in range(300)])
        assert uuid.UUID(one.id).version == 7
        ids = [s.id for s in many]
        assert ids == sorted(ids)
        assert [s.process.params["a"] for s in many] == list(range(300))
    finally:
        app.close()


def test_a_short_id_is_the_shortest_prefix_no_neighbour_shares() -> None:
    a = "0193a2b4-5c6d-7abc-8def-0123456789ab"
    assert short_id(a, None, None) == "0193a2b4"  # alone: the first group
    assert short_id(a, "0193a2b3-ffff-7fff-bfff-ffffffffffff", None) == "0193a2b4"
    # A neighbour sharing the first group and more: one character past what they share,
    # never ending on a dash.
    assert short_id(a, "0193a2b4-5c6c-7000-8000-000000000000", None) == "0193a2b4-5c6d"
    assert short_id(a, None, "0193a2b4-5c7f-7000-8000-000000000000") == "0193a2b4-5c6"
    assert short_id(a, None, "0193a2b4-0000-7000-8000-000000000000") == "0193a2b4-5"
    # Ids of one batch share their millisecond: the random part tells them apart.
    assert short_id(a, "0193a2b4-5c6d-7abc-8dee-ffffffffffff", None) == "0193a2b4-5c6d-7abc-8def"


def test_short_ids_of_a_batch_name_one_id_each() -> None:
    batch = sorted(new_ids(2000))
    shorts = [
        short_id(pid, batch[i - 1] if i else None, batch[i + 1] if i + 1 < len(batch) else None)
        for i, pid in enumerate(batch)
    ]
    for pid, s in zip(batch, shorts, strict=True):
        assert pid.startswith(s) and len(s) >= MIN_PREFIX
        assert [b for b in batch if b.startswith(s)] == [pid]


def test_a_prefix_is_eight_or_more_hex_digits_and_dashes() -> None:
    assert prefix_of_id("0193A2B4") == "0193a2b4"
    assert prefix_of_id(" 0193a2b4-5c ") == "0193a2b4-5c"
    assert prefix_of_id("0193a2b") is None  # too short
    assert prefix_of_id("0193a2b4%") is None
    assert prefix_of_id("order-1234") is None
