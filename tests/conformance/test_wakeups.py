"""Wake-ups: `wait_for_change(epoch, timeout)` returns when anything changed since the epoch
was read, on this connection or another, and never misses a write made between reading the
epoch and waiting."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from corral.storage import open_storage
from corral.storage.base import Storage
from tests.backends import make_storage
from tests.conformance.common import new


def test_a_second_connection_sees_writes_and_wakes_up(backend: str, tmp_path: Path) -> None:
    if backend == "memory":
        pytest.skip("a memory database has no second connection")
    with make_storage(backend, tmp_path) as first:
        second = open_storage(first.url)
        try:
            epoch = second.change_epoch()
            p = new()
            first.process_insert_many([p])
            assert second.wait_for_change(epoch, 5.0)
            assert second.process_get(p.id) is not None
        finally:
            second.close()


def test_a_write_on_another_connection_before_the_wait_is_not_missed(
    backend: str, tmp_path: Path
) -> None:
    if backend == "memory":
        pytest.skip("a memory database has no second connection")
    with make_storage(backend, tmp_path) as first:
        second = open_storage(first.url)
        try:
            second.wait_for_change(second.change_epoch(), 0.01)  # a worker that was idle
            epoch = second.change_epoch()  # it looks for work: nothing yet
            first.process_insert_many([new()])  # then work comes, before it waits
            assert second.wait_for_change(epoch, 5.0)
        finally:
            second.close()


def test_local_writes_wake_local_waiters(storage: Storage) -> None:
    woke = threading.Event()
    epoch = storage.change_epoch()

    def waiter() -> None:
        if storage.wait_for_change(epoch, 5.0):
            woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    storage.process_insert_many([new()])
    t.join()
    assert woke.is_set()


def test_a_local_write_before_the_wait_is_not_missed(storage: Storage) -> None:
    epoch = storage.change_epoch()
    storage.process_insert_many([new()])
    assert storage.wait_for_change(epoch, 0.0)


def test_nothing_changed_is_a_timeout(backend: str, storage: Storage) -> None:
    if backend == "postgres":
        pytest.skip("the listener's own reconnections may wake a PostgreSQL waiter")
    epoch = storage.change_epoch()
    assert storage.wait_for_change(epoch, 0.05) is False
