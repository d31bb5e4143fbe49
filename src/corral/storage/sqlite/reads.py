"""Reads: processes by id, by custom id or by filter, and their history (which is also
appended here, in the caller's write transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from corral.model import Event, Process
from corral.storage import codec, columns
from corral.storage.base import ConcurrencySlots, KeyHolder, ProcessFilter
from corral.storage.sqlite.sql import Q

#: A Process from a row of columns.SELECT_LIST.
decode_process = columns.row_decoder()


def get(conn: sqlite3.Connection, process_id: str) -> Process | None:
    row = conn.execute(Q["process_get"], (process_id,)).fetchone()
    return None if row is None else decode_process(row)


def concurrency(conn: sqlite3.Connection, process_id: str, now: float) -> ConcurrencySlots | None:
    """The process's concurrency key and limit, and the key's live leases."""
    row = conn.execute(Q["process_concurrency"], (process_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    holders = conn.execute(Q["key_holders"], (row[0], now)).fetchall()
    return ConcurrencySlots(row[0], row[1], [KeyHolder(*h) for h in holders])


def get_by_custom_id(conn: sqlite3.Connection, client_id: str, custom_id: str) -> Process | None:
    row = conn.execute(Q["process_get_by_custom_id"], (client_id, custom_id)).fetchone()
    return None if row is None else decode_process(row)


def list_processes(conn: sqlite3.Connection, where: ProcessFilter) -> list[Process]:
    clause, args = _where(where)
    sql = Q["process_list"].replace("/* where */", clause)
    sql = sql.replace("/* order */", "DESC" if where.newest_first else "ASC")
    return [decode_process(r) for r in conn.execute(sql, [*args, where.limit])]


def count(conn: sqlite3.Connection, where: ProcessFilter) -> int:
    clause, args = _where(where)
    return int(conn.execute(Q["process_count"].replace("/* where */", clause), args).fetchone()[0])


def id_neighbors(
    conn: sqlite3.Connection, ids: Sequence[str]
) -> dict[str, tuple[str | None, str | None]]:
    """For each id, the stored ids either side of it: two steps of the primary key."""
    before, after = Q["process_id_before"], Q["process_id_after"]
    return {
        i: (conn.execute(before, (i,)).fetchone()[0], conn.execute(after, (i,)).fetchone()[0])
        for i in ids
    }


def _where(where: ProcessFilter) -> tuple[str, list[Any]]:
    """The WHERE clause of a filter (empty: every process), and its parameters."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("status", None if where.status is None else where.status.value),
        ("job", where.job),
        ("queue", where.queue),
        ("custom_id", where.custom_id),
        ("client_id", where.client_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    for key, value in (where.tags or {}).items():
        # As `tags @> {key: value}` on PostgreSQL, for any key: a JSON path would need
        # the key quoted, and SQLite's paths cannot quote a key holding `"`.
        clauses.append(
            "EXISTS (SELECT 1 FROM json_each(corral_process.tags) "
            "WHERE key = ? AND type = 'text' AND value = ?)"
        )
        args.extend((key, value))
    if where.id_prefix:
        # A range of the primary key, not LIKE: it is served by the index, and the text
        # typed has no wildcard to escape (`%` and `_` match themselves).
        clauses.append("id >= ?")
        args.append(where.id_prefix)
        end = prefix_end(where.id_prefix)
        if end is not None:
            clauses.append("id < ?")
            args.append(end)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def prefix_end(prefix: str) -> str | None:
    """The least text above every text that starts with `prefix`, in the byte order of
    UTF-8 (that of code points), or None if there is none: the prefix with its last
    character moved one up (trailing U+10FFFF dropped first, surrogates skipped, since
    they cannot be stored)."""
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    code = ord(stripped[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:
        code = 0xE000
    return stripped[:-1] + chr(code)


def history(conn: sqlite3.Connection, process_id: str) -> list[Event]:
    return [codec.event_from_row(r) for r in conn.execute(Q["history_list"], (process_id,))]


def append_history(
    conn: sqlite3.Connection, events: Sequence[Event], process_id: str | None = None
) -> None:
    """Append events (of `process_id`, or each of its own process)."""
    if events:
        conn.executemany(Q["history_insert"], [codec.event_to_row(e, process_id) for e in events])
