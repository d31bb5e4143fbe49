"""Reads: processes by id, by custom id or by filter, and their history (which is also
appended here, in the caller's write transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from corral.model import Event, Process
from corral.storage import codec, columns
from corral.storage.base import BACKLOG_CAP, ConcurrencySlots, KeyHolder, ProcessFilter
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


def runnable_backlog(
    conn: sqlite3.Connection,
    jobs: Sequence[str] | None,
    queues: Sequence[str] | None,
    now: float,
) -> tuple[int, float]:
    """What a claim for `jobs` and `queues` could take at `now`: how many (up to
    BACKLOG_CAP) and the age of the oldest counted (Storage.runnable_backlog)."""
    paused = {r[0] for r in conn.execute(Q["paused_queues"])}
    if "*" in paused:
        return 0, 0.0
    filters, args = claim_filters(None, queues, jobs, paused)
    sql = Q["runnable_backlog"].replace("/* filters */", filters)
    sql = sql.replace("/* cap */", str(BACKLOG_CAP))
    count, oldest = conn.execute(sql, (now, *args, *args)).fetchone()
    return min(int(count), BACKLOG_CAP), 0.0 if oldest is None else max(now - oldest, 0.0)


def claim_filters(
    process_ids: Sequence[str] | None,
    queues: Sequence[str] | None,
    jobs: Sequence[str] | None,
    paused: set[str],
) -> tuple[str, list[Any]]:
    """A claim's AND clauses (the ids, queues and jobs it asks for, no paused queue) and
    their parameters."""
    sql = ""
    args: list[Any] = []
    for column, values in (("id", process_ids), ("queue", queues), ("job", jobs)):
        if values is not None:
            sql += f" AND {column} IN ({', '.join('?' * len(values))})"
            args.extend(values)
    if paused:
        sql += f" AND queue NOT IN ({', '.join('?' * len(paused))})"
        args.extend(sorted(paused))
    return sql, args


def get_by_custom_id(conn: sqlite3.Connection, client_id: str, custom_id: str) -> Process | None:
    row = conn.execute(Q["process_get_by_custom_id"], (client_id, custom_id)).fetchone()
    return None if row is None else decode_process(row)


def list_processes(conn: sqlite3.Connection, where: ProcessFilter) -> list[Process]:
    sql, args = _filtered(conn, Q["process_list"], where)
    sql = sql.replace("/* order */", "DESC" if where.newest_first else "ASC")
    return [decode_process(r) for r in conn.execute(sql, [*args, where.limit])]


def count(conn: sqlite3.Connection, where: ProcessFilter) -> int:
    sql, args = _filtered(conn, Q["process_count"], where)
    return int(conn.execute(sql, args).fetchone()[0])


def id_neighbors(
    conn: sqlite3.Connection, ids: Sequence[str]
) -> dict[str, tuple[str | None, str | None]]:
    """For each id, the stored ids either side of it: two steps of the primary key."""
    before, after = Q["process_id_before"], Q["process_id_after"]
    return {
        i: (conn.execute(before, (i,)).fetchone()[0], conn.execute(after, (i,)).fetchone()[0])
        for i in ids
    }


def _filtered(conn: sqlite3.Connection, query: str, where: ProcessFilter) -> tuple[str, list[Any]]:
    """`query` (process_list or process_count) with the filter's `/* tags */` and
    `/* where */` filled in, and its parameters."""
    tags = list((where.tags or {}).items())
    if len(tags) > 1:
        tags.sort(key=lambda tag: _rows_up_to(conn, tag))
    source, clauses, args = _tags(tags)
    _where(where, clauses, args)
    clause = "WHERE " + " AND ".join(clauses) if clauses else ""
    return query.replace("/* tags */", source).replace("/* where */", clause), args


#: How far `_rows_up_to` counts a tag's rows: the work of choosing which tag leads is at
#: most this many index entries per tag.
_TAG_PROBE = 1_000


def _rows_up_to(conn: sqlite3.Connection, tag: tuple[str, str]) -> int:
    """How many processes hold the tag, counted up to _TAG_PROBE (a walk of its index range
    that stops there)."""
    return int(conn.execute(Q["tag_rows_up_to"], (*tag, _TAG_PROBE)).fetchone()[0])


def _tags(tags: Sequence[tuple[str, str]]) -> tuple[str, list[str], list[Any]]:
    """The tags asked for, through the corral_tag index: the tables before corral_process
    in the FROM clause, the join's conditions and their parameters.

    The first tag's rows lead (an index range of (key, value)); each other tag is one
    lookup of its (process, key) row per candidate, then the process by its key. CROSS
    JOIN fixes that order: SQLite's planner would otherwise rather walk corral_process by
    another filter's index (`status`) or in list order, reading every row it passes, and
    a rare tag would cost a walk of the table. The work is that of the first tag's rows:
    `_filtered` puts the rarest first (as far as `_rows_up_to` can tell).
    """
    if not tags:
        return "", [], []
    tables: list[str] = []
    clauses: list[str] = []
    args: list[Any] = []
    for n, (key, value) in enumerate(tags):
        tables.append(f"corral_tag t{n} CROSS JOIN ")
        if n:
            clauses.append(f"t{n}.process_id = t0.process_id")
        clauses.append(f"t{n}.key = ? AND t{n}.value = ?")
        args.extend((key, value))
    clauses.append("corral_process.id = t0.process_id")
    return "".join(tables), clauses, args


def _where(where: ProcessFilter, clauses: list[str], args: list[Any]) -> None:
    """Add the clauses of a filter's columns (all but its tags), and their parameters."""
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
    _other_clauses(where, clauses, args)
    if where.id_prefix:
        # A range of the primary key, not LIKE: it is served by the index, and the text
        # typed has no wildcard to escape (`%` and `_` match themselves).
        clauses.append("id >= ?")
        args.append(where.id_prefix)
        end = prefix_end(where.id_prefix)
        if end is not None:
            clauses.append("id < ?")
            args.append(end)


def _other_clauses(where: ProcessFilter, clauses: list[str], args: list[Any]) -> None:
    """The clauses of a filter's error reason, created range and page's cursor."""
    if where.reason is not None:
        clauses.append("json_extract(error, '$.reason') = ?")
        args.append(where.reason)
    if where.created_from is not None:
        clauses.append("created_at >= ?")
        args.append(where.created_from)
    if where.created_until is not None:
        clauses.append("created_at < ?")
        args.append(where.created_until)
    if where.page_after is not None:
        # Past the last row of the page before, in the list's order (created_at, then id).
        clauses.append(f"(created_at, id) {'<' if where.newest_first else '>'} (?, ?)")
        args.extend(where.page_after)


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


def history(
    conn: sqlite3.Connection, process_id: str, offset: int = 0, limit: int | None = None
) -> list[Event]:
    # LIMIT -1: no limit, in SQLite's words.
    args = (process_id, -1 if limit is None else limit, offset)
    return [codec.event_from_row(r) for r in conn.execute(Q["history_list"], args)]


def append_history(
    conn: sqlite3.Connection, events: Sequence[Event], process_id: str | None = None
) -> None:
    """Append events (of `process_id`, or each of its own process)."""
    if events:
        conn.executemany(Q["history_insert"], [codec.event_to_row(e, process_id) for e in events])
