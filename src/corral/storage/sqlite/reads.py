"""Reads: processes by id, by custom id or by filter, and their history (which is also
appended here, in the caller's write transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from corral.model import Event, Process
from corral.storage import codec, columns
from corral.storage.base import ProcessFilter
from corral.storage.sqlite.sql import Q

#: A Process from a row of columns.SELECT_LIST.
decode_process = columns.row_decoder()


def get(conn: sqlite3.Connection, process_id: str) -> Process | None:
    row = conn.execute(Q["process_get"], (process_id,)).fetchone()
    return None if row is None else decode_process(row)


def get_by_custom_id(conn: sqlite3.Connection, client_id: str, custom_id: str) -> Process | None:
    row = conn.execute(Q["process_get_by_custom_id"], (client_id, custom_id)).fetchone()
    return None if row is None else decode_process(row)


def list_processes(conn: sqlite3.Connection, where: ProcessFilter) -> list[Process]:
    clauses: list[str] = []
    args: list[Any] = []
    if where.status is not None:
        clauses.append("status = ?")
        args.append(where.status.value)
    if where.job is not None:
        clauses.append("job = ?")
        args.append(where.job)
    for key, value in (where.tags or {}).items():
        # As `tags @> {key: value}` on PostgreSQL, for any key: a JSON path would need
        # the key quoted, and SQLite's paths cannot quote a key holding `"`.
        clauses.append(
            "EXISTS (SELECT 1 FROM json_each(corral_process.tags) "
            "WHERE key = ? AND type = 'text' AND value = ?)"
        )
        args.extend((key, value))
    sql = Q["process_list"]
    sql = sql.replace("/* where */", "WHERE " + " AND ".join(clauses) if clauses else "")
    sql = sql.replace("/* order */", "DESC" if where.newest_first else "ASC")
    args.append(where.limit)
    return [decode_process(r) for r in conn.execute(sql, args)]


def history(conn: sqlite3.Connection, process_id: str) -> list[Event]:
    return [codec.event_from_row(r) for r in conn.execute(Q["history_list"], (process_id,))]


def append_history(
    conn: sqlite3.Connection, events: Sequence[Event], process_id: str | None = None
) -> None:
    """Append events (of `process_id`, or each of its own process)."""
    if events:
        conn.executemany(Q["history_insert"], [codec.event_to_row(e, process_id) for e in events])
