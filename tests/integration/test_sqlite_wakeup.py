"""Idle SQLite waiters are woken by another connection's commit through the file
watcher (inotify), not by their slow safety-net poll."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import corral.storage.sqlite as sqlite_backend
import corral.storage.sqlite.wakeups as sqlite_wakeups
from corral.storage import open_storage
from corral.storage.base import NewProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


def test_another_connections_commit_wakes_an_idle_waiter_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the poll this slow, only the watcher can wake the waiter before its timeout.
    monkeypatch.setattr(sqlite_wakeups, "_POLL_WATCHED", 60.0)
    monkeypatch.setattr(sqlite_wakeups, "_POLL", 60.0)
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    waiter, writer = open_storage(url), open_storage(url)
    try:
        waiter.wait_for_change(
            waiter.change_epoch(), 0.01
        )  # arm: starts the watcher, reads data_version
        woke: list[float] = []
        epoch = waiter.change_epoch()  # read before the write it must see

        def wait() -> None:
            started = time.monotonic()
            if waiter.wait_for_change(epoch, 10.0):
                woke.append(time.monotonic() - started)

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.2)  # the waiter is asleep now
        writer.process_insert_many(
            [NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=1.0, run_at=1.0)]
        )
        t.join()
        # Woken by the commit (milliseconds after it), not by the 10 s timeout.
        assert woke and woke[0] < 5.0, woke
    finally:
        waiter.close()
        writer.close()


def test_no_watcher_for_a_private_in_memory_database() -> None:
    storage = open_storage("memory://")
    try:
        assert storage.wait_for_change(storage.change_epoch(), 0.01) is False
        assert isinstance(storage, sqlite_backend.SQLiteStorage)
        assert storage._watcher is False
    finally:
        storage.close()
