"""The embedded backend: one SQLite file in WAL mode (`sqlite:///path.db`), or a private
in-memory database (`memory://`). See docs/storage-sqlite.md.

One module per concern: connection.py (the connection, its transactions, busy handling),
errors.py (driver errors become corral's), turns.py (the writers' lock file), wakeups.py
(data_version and file watching), inserts.py, claims.py, admin.py (update, prune, timed
out), leases.py, reads.py, queues.py, workers.py (the registry), schema.py (migrations),
sql.py (the SQL files of sql/sqlite/), and storage.py, which puts them together as
`SQLiteStorage`.
"""

from __future__ import annotations

from corral.storage.sqlite.connection import DEFAULT_BUSY_TIMEOUT
from corral.storage.sqlite.sql import MIGRATIONS, SCHEMA_VERSION, Q
from corral.storage.sqlite.storage import SQLiteStorage

__all__ = ["DEFAULT_BUSY_TIMEOUT", "MIGRATIONS", "SCHEMA_VERSION", "Q", "SQLiteStorage"]
