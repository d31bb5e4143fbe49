"""Helpers for the chaos tests: read the database behind the workers' backs, read the
workers' audit files, and restart the local PostgreSQL server (always leaving it running).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.pg import (
    postgres_left_running,
    postgres_ready,
    require_restartable_postgres,
    restart_postgres,
)

HERE = Path(__file__).resolve().parent
CHAOS_APP = HERE / "apps" / "chaos_app.py"


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read-only statement on the database of `url` (its own connection)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
            return conn.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def read_audit(directory: Path) -> list[tuple[str, str, int, int, int]]:
    """Every iteration that ran: (process id, phase, n, index, token), from all workers."""
    runs = []
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text().splitlines():
            pid, phase, n, index, token = line.split()
            runs.append((pid, phase, int(n), int(index), int(token)))
    return runs


# The server helpers live with the other PostgreSQL test helpers.
__all__ = [
    "CHAOS_APP",
    "postgres_left_running",
    "postgres_ready",
    "query",
    "read_audit",
    "require_restartable_postgres",
    "restart_postgres",
]
