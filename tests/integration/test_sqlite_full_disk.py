"""A full disk is an outage, not a failure: writes raise StorageUnavailable (a worker waits
and retries) with one line, nothing of the refused write lands, and writes work again
once there is room. The WAL does not keep the disk full: it is cut to nothing once
writes work again, and whenever the database is quiet."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral.storage.sqlite.connection as sqlite_connection
import corral.storage.sqlite.wakeups as sqlite_wakeups
from corral.errors import StorageUnavailable
from corral.storage import open_storage
from corral.storage.base import NewProcess, ProcessFilter
from corral.storage.sqlite import SQLiteStorage
from tests.integration.test_sqlite_errors import small_tmpfs

T0 = 1_000.0


def batch(n: int, size: int = 200) -> list[NewProcess]:
    return [
        NewProcess(id=str(uuid.uuid4()), job="j", params={"pad": "x" * size}, created_at=T0,
                   run_at=T0)
        for _ in range(n)
    ]  # fmt: skip


def count(storage: SQLiteStorage) -> int:
    return int(storage._conn.execute("SELECT count(*) FROM corral_process").fetchone()[0])


def fill_until_full(storage: SQLiteStorage, n: int = 50) -> StorageUnavailable:
    """Insert batches until the disk is full; the error, after checking nothing landed."""
    for _ in range(100_000):
        before = count(storage)
        try:
            storage.process_insert_many(batch(n))
        except StorageUnavailable as exc:
            assert count(storage) == before  # the refused batch left nothing behind
            return exc
    raise AssertionError("the disk never filled up")


def assert_full(exc: StorageUnavailable, db: Path) -> None:
    message = str(exc)
    assert "full" in message and str(db) in message and "\n" not in message, message


def test_sqlite_full_is_an_outage_that_ends_when_there_is_room(tmp_path: Path) -> None:
    """SQLite's page limit gives SQLITE_FULL without a small file system."""
    db = tmp_path / "corral.db"
    storage = open_storage(f"sqlite:///{db}")
    assert isinstance(storage, SQLiteStorage)
    try:
        pages = storage._conn.execute("PRAGMA page_count").fetchone()[0]
        storage._conn.execute(f"PRAGMA max_page_count = {pages + 50}")
        assert_full(fill_until_full(storage), db)
        storage._conn.execute(f"PRAGMA max_page_count = {pages + 10_000}")  # room again
        p = batch(1)
        storage.process_insert_many(p)
        assert storage.process_get(p[0].id) is not None
    finally:
        storage.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small") as where:
        yield where


def test_a_full_file_system_is_an_outage_and_the_wal_is_cut_back_after(small_disk: Path) -> None:
    db = small_disk / "corral.db"
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (1024 * 1024))  # what the user deletes to make room
    storage = open_storage(f"sqlite:///{db}")
    assert isinstance(storage, SQLiteStorage)
    try:
        assert_full(fill_until_full(storage), db)
        wal = Path(f"{db}-wal")
        assert wal.stat().st_size > 0
        # Still full: still an outage, not a permanent error.
        with pytest.raises(StorageUnavailable):
            storage.process_insert_many(batch(50))
        ballast.unlink()
        p = batch(1)
        storage.process_insert_many(p)
        assert storage.process_get(p[0].id) is not None
        # The WAL was copied into the database and cut to nothing: the disk has its room.
        assert wal.stat().st_size == 0
        storage.process_insert_many(batch(10))
    finally:
        storage.close()


def test_a_wal_that_outgrew_its_cycle_shrinks_back_after_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction larger than `journal_size_limit` grows the WAL past it; once that has
    been checkpointed, the next write starts the WAL over, cut back to the limit. (Scaled
    down: a checkpoint every 100 pages and a 1 MB limit instead of ~41 MB and 64 MB.)"""
    monkeypatch.setattr(sqlite_connection, "_WAL_AUTOCHECKPOINT", 100)
    monkeypatch.setattr(sqlite_connection, "_WAL_SIZE_LIMIT", 1024 * 1024)
    db = tmp_path / "corral.db"
    storage = open_storage(f"sqlite:///{db}")
    assert isinstance(storage, SQLiteStorage)
    wal = Path(f"{db}-wal")
    try:
        assert storage._conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 1024 * 1024
        storage.process_insert_many(batch(4_000, size=500))  # one transaction, a few MB
        grown = wal.stat().st_size
        assert grown > 1024 * 1024
        for _ in range(3):  # the commit's checkpoint, then a write that starts the WAL over
            storage.process_insert_many(batch(1))
        assert wal.stat().st_size <= 1024 * 1024 < grown
    finally:
        storage.close()


def test_a_quiet_database_has_its_wal_cut_to_nothing_by_an_idle_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between checkpoints the WAL holds up to ~41 MB; an idle worker cuts it to nothing
    once nothing has been committed for a while (`_QUIET`, here a tenth of a second)."""
    monkeypatch.setattr(sqlite_wakeups, "_QUIET", 0.1)
    db = tmp_path / "corral.db"
    url = f"sqlite:///{db}"
    writer, idle = open_storage(url), open_storage(url)
    wal = Path(f"{db}-wal")
    try:
        idle.wait_for_change(idle.change_epoch(), 0.01)  # armed
        writer.process_insert_many(batch(2_000))
        assert wal.stat().st_size > 1024 * 1024
        deadline = time.monotonic() + 30
        while wal.stat().st_size > 0 and time.monotonic() < deadline:
            idle.wait_for_change(
                idle.change_epoch(), 0.05
            )  # what an idle worker does, over and over
        assert wal.stat().st_size == 0
        # The database is whole, and writes go on.
        p = batch(1)
        writer.process_insert_many(p)
        assert idle.process_get(p[0].id) is not None
        assert len(idle.process_list(ProcessFilter(limit=10_000))) == 2_001
    finally:
        writer.close()
        idle.close()
