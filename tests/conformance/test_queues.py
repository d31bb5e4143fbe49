"""Queues: paused ones are not claimed from."""

from __future__ import annotations

from corral.storage.base import Storage
from tests.conformance.common import claim, new


def test_pausing_every_queue_stops_all_claims(storage: Storage) -> None:
    storage.process_insert_many([new()])
    storage.queue_pause("*", True)
    assert claim(storage) == []
    storage.queue_pause("*", False)
    assert len(claim(storage)) == 1
