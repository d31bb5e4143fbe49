"""Closing a SQLite storage checkpoints the WAL into the database file and empties it,
even while another connection stays open; it gives up quietly when another is reading."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from corral.storage import open_storage
from corral.storage.base import NewProcess, ProcessFilter

T0 = 1_000.0


def some(count: int) -> list[NewProcess]:
    return [
        NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0, run_at=T0)
        for _ in range(count)
    ]


def test_close_empties_the_wal_while_another_storage_stays_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    wal = tmp_path / "corral.db-wal"
    with open_storage(url) as other:
        writer = open_storage(url)
        writer.process_insert_many(some(20))
        assert wal.stat().st_size > 0
        writer.close()
        assert wal.stat().st_size == 0
        assert other.process_count(ProcessFilter()) == 20
        other.process_insert_many(some(1))  # the emptied WAL starts over
    plain = sqlite3.connect(tmp_path / "corral.db")
    assert plain.execute("SELECT count(*) FROM corral_process").fetchone()[0] == 21
    plain.close()


def test_close_leaves_the_wal_to_a_reader_in_the_way(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    storage = open_storage(url)
    storage.process_insert_many(some(5))
    reader = sqlite3.connect(tmp_path / "corral.db", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM corral_process").fetchone()[0] == 5
    storage.close()  # no error, no wait
    reader.execute("COMMIT")
    reader.close()
    with open_storage(url) as again:
        assert again.process_count(ProcessFilter()) == 5
