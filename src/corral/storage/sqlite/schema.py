"""The schema: the numbered migrations of sql/sqlite/ applied in order, each recorded in
corral_schema_version, all in one write transaction (a second opener waits for it, then
finds nothing left to do)."""

from __future__ import annotations

import sqlite3

from corral.errors import StorageError
from corral.storage.sqlite.sql import MIGRATIONS, SCHEMA_VERSION, Q, statements


def migrate(conn: sqlite3.Connection, url: str) -> int:
    """Apply the migrations the database lacks; the schema version it has then."""
    conn.execute(Q["schema_version_table"])
    current = conn.execute(Q["schema_version"]).fetchone()[0] or 0
    if current > SCHEMA_VERSION:
        raise StorageError(
            f"the database {url} has schema version {current}, newer than "
            f"this corral ({SCHEMA_VERSION}); upgrade corral"
        )
    for version, script in MIGRATIONS:
        if version > current:
            apply(conn, version, script)
    return SCHEMA_VERSION


def apply(conn: sqlite3.Connection, version: int, script: str) -> None:
    """Run one migration's statements and record it."""
    for statement in statements(script):
        conn.execute(statement)
    conn.execute(Q["schema_version_insert"], (version,))
