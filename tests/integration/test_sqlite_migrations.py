"""The SQLite schema and its migrations.

A database left at any earlier schema version (migration 1 alone, or more), holding
processes, is upgraded by migrate() to the schema a first open builds from scratch:
the same tables, columns (name, type, not null, default, primary key, hidden), indexes
(name, columns, unique, partial WHERE), compared through sqlite_master and PRAGMAs; and
its processes still read back. The PostgreSQL twin is test_postgres_migrations.py.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from corral.errors import StorageError
from corral.model import Status
from corral.storage.base import ProcessFilter
from corral.storage.sqlite import MIGRATIONS, SCHEMA_VERSION, Q, SQLiteStorage
from corral.storage.sqlite.schema import apply


def dump_schema(path: Path) -> dict[str, Any]:
    """Everything that defines the schema, table by table."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        dump: dict[str, Any] = {"tables": tables}
        for table in tables:
            # (cid, name, type, notnull, default, pk, hidden): hidden tells a generated column.
            dump[f"{table} columns"] = conn.execute(f"PRAGMA table_xinfo({table})").fetchall()
            indexes = {}
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                # (seqno, cid, name, desc, collation, key column) of every column it holds.
                cols = conn.execute(f"PRAGMA index_xinfo({name})").fetchall()
                indexes[name] = (unique, origin, partial, cols, _definition(conn, name))
            dump[f"{table} indexes"] = indexes
        return dump
    finally:
        conn.close()


def _definition(conn: sqlite3.Connection, index: str) -> tuple[str, str | None] | None:
    """An index's CREATE statement (its expressions: index_xinfo names no column for
    them) and its partial WHERE, whitespace and comments aside; None for the index of a
    key, which has no SQL."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()
    if row is None or row[0] is None:
        return None
    sql = " ".join(re.sub(r"--[^\n]*", "", row[0]).split())
    _, found, where = sql.partition(" WHERE ")
    return sql, where if found else None


def versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM corral_schema_version ORDER BY 1")]
    finally:
        conn.close()


def apply_by_hand(path: Path, migrations: list[tuple[int, str]]) -> None:
    """What an older corral left: these migrations applied, and recorded."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(Q["schema_version_table"])
        for version, script in migrations:
            apply(conn, version, script)
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture
def fresh_schema(tmp_path: Path) -> dict[str, Any]:
    """The schema a first open builds, as the reference."""
    path = tmp_path / "fresh.db"
    SQLiteStorage(f"sqlite:///{path}", str(path)).close()
    return dump_schema(path)


def open_storage(path: Path) -> SQLiteStorage:
    return SQLiteStorage(f"sqlite:///{path}", str(path))


def test_the_first_open_builds_the_schema_and_records_every_version(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    with open_storage(path) as storage:
        assert storage.migrate() == SCHEMA_VERSION
    dump = dump_schema(path)
    assert {"corral_process", "corral_history", "corral_leader"} <= set(dump["tables"])
    assert "corral_process_runnable" in dump["corral_process indexes"]
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))


def test_migrate_again_changes_nothing(tmp_path: Path, fresh_schema: dict[str, Any]) -> None:
    path = tmp_path / "corral.db"
    with open_storage(path) as storage:
        assert storage.migrate() == SCHEMA_VERSION
    with open_storage(path):
        pass
    assert dump_schema(path) == fresh_schema
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))


def test_every_migration_in_order_builds_the_from_scratch_schema(
    tmp_path: Path, fresh_schema: dict[str, Any]
) -> None:
    path = tmp_path / "corral.db"
    apply_by_hand(path, MIGRATIONS)
    assert dump_schema(path) == fresh_schema


@pytest.mark.parametrize("applied", range(1, len(MIGRATIONS)))
def test_upgrading_from_any_earlier_version_gives_the_from_scratch_schema(
    tmp_path: Path, fresh_schema: dict[str, Any], applied: int
) -> None:
    # Given a database left at an earlier version, holding processes and their history...
    path = tmp_path / "corral.db"
    apply_by_hand(path, MIGRATIONS[:applied])
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO corral_process (id, job, params, status, run_at, created_at, "
            "updated_at, queue, tags) VALUES (?, 'add', ?, ?, ?, 1, 2, 'q', '{\"k\": \"v\"}')",
            [("old-1", '{"a": 1}', "running", 5.0), ("old-2", '{"a": 2}', "completed", 7.0)],
        )
        conn.execute(
            "INSERT INTO corral_history (process_id, at, kind, to_status) "
            "VALUES ('old-1', 1, 'submitted', 'starting')"
        )
        if applied >= 5:  # version 5 added batches; the graph counters come later
            conn.execute("UPDATE corral_process SET batch_id = 'b-1'")
    conn.close()
    # ...opening it with this corral applies the rest, and the processes read back.
    with open_storage(path) as storage:
        old = storage.process_get("old-1")
        other = storage.process_get("old-2")
        history = storage.history_list("old-1")
        # Their tags find them: version 10 filled the tag table from the rows there were
        # (rows written by hand at version 10 or later have no tag rows: no test there).
        tagged = storage.process_list(ProcessFilter(tags={"k": "v"}))
        # Version 11 counted the batch's processes into its counter rows.
        counts = storage.batch_counts("b-1")
    assert old is not None and old.params == {"a": 1} and old.run_at == 5
    assert old.status.value == "running" and old.queue == "q" and old.tags == {"k": "v"}
    assert other is not None and other.params == {"a": 2} and old.deadline_at is None
    if applied == 1:  # version 2 starts the clock of schedule_to_close at each row's run_at
        assert (old.iteration_since, other.iteration_since) == (5, 7)
    assert [e.kind for e in history] == ["submitted"]
    if applied < 10:  # rows inserted by hand after version 10 have no tag rows of theirs
        assert sorted(p.id for p in tagged) == ["old-1", "old-2"]
    if 5 <= applied < 11:  # rows written by hand at version 11 or later have no counts
        assert counts == {Status.RUNNING: 1, Status.COMPLETED: 1}
    assert dump_schema(path) == fresh_schema
    assert versions(path) == list(range(1, SCHEMA_VERSION + 1))


def test_a_schema_newer_than_this_corral_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    open_storage(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO corral_schema_version (version) VALUES (999)")
    conn.close()
    with pytest.raises(StorageError, match=r"schema version 999.*upgrade corral"):
        open_storage(path)


def test_a_migration_splits_into_its_statements_whatever_its_comments_say() -> None:
    from corral.storage.sqlite.sql import statements

    script = "-- a; comment\nCREATE TABLE a (x TEXT DEFAULT ';');\n-- trailing; comment\n"
    assert statements(script) == ["-- a; comment\nCREATE TABLE a (x TEXT DEFAULT ';');"]
