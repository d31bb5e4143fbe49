"""Wake-ups: a write wakes waiters on this connection and on others."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from corral.storage.base import Storage
from tests.backends import make_storage
from tests.conformance.common import new


def test_a_second_connection_sees_writes_and_wakes_up(backend: str, tmp_path: Path) -> None:
    if backend == "memory":
        pytest.skip("a memory database has no second connection")
    with make_storage(backend, tmp_path) as first:
        from corral.storage import open_storage

        second = open_storage(first.url)
        try:
            second.wait_for_change(0.01)  # arm
            p = new()
            first.process_insert_many([p])
            assert second.wait_for_change(5.0)
            assert second.process_get(p.id) is not None
        finally:
            second.close()


def test_local_writes_wake_local_waiters(storage: Storage) -> None:
    woke = threading.Event()

    def waiter() -> None:
        if storage.wait_for_change(5.0):
            woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)  # let the waiter start waiting first
    storage.process_insert_many([new()])
    t.join()
    assert woke.is_set()
