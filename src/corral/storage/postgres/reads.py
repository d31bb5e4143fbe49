"""Reads of processes (by id, by filter) and their history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from corral.model import Event, Process
from corral.storage import codec
from corral.storage.base import (
    BACKLOG_CAP,
    ConcurrencySlots,
    ConnectionBudget,
    KeyHolder,
    ProcessFilter,
)
from corral.storage.postgres.connection import POOL_SIZE, Connected, verb
from corral.storage.postgres.queries import SELECT_LIST, Q
from corral.storage.postgres.values import as_time, decode_process, event_args


class Reads(Connected):
    """process_get, process_list, process_count, process_id_neighbors, process_concurrency,
    runnable_backlog, connection_budget, history_list and history_append."""

    @verb
    def process_get(self, process_id: str) -> Process | None:
        rows = self._rows(Q["process_get"], {"id": process_id})
        return decode_process(rows[0]) if rows else None

    @verb
    def process_list(self, where: ProcessFilter) -> list[Process]:
        return [decode_process(r) for r in self._rows(*list_statement(where))]

    @verb
    def process_count(self, where: ProcessFilter) -> int:
        return int(self._rows(*count_statement(where))[0][0])

    @verb
    def process_id_neighbors(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        if not ids:
            return {}
        rows = self._rows(Q["process_id_neighbors"], {"ids": list(ids)})
        return {r[0]: (r[1], r[2]) for r in rows}

    @verb
    def process_concurrency(self, process_id: str, now: float) -> ConcurrencySlots | None:
        rows = self._rows(Q["process_concurrency"], {"id": process_id, "now": as_time(now)})
        if not rows or rows[0][0] is None:
            return None
        holders = [KeyHolder(r[2], r[3], float(r[4])) for r in rows if r[2] is not None]
        return ConcurrencySlots(rows[0][0], rows[0][1], holders)

    @verb
    def runnable_backlog(
        self, jobs: Sequence[str] | None, queues: Sequence[str] | None, now: float
    ) -> tuple[int, float]:
        count, oldest = self._rows(*backlog_statement(jobs, queues, now))[0]
        return min(int(count), BACKLOG_CAP), 0.0 if oldest is None else max(now - oldest, 0.0)

    @verb
    def connection_budget(self) -> ConnectionBudget:
        limit, in_use = self._rows(Q["connection_budget"], {})[0]
        return ConnectionBudget(int(limit), int(in_use), POOL_SIZE + 1)

    @verb
    def history_list(
        self, process_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Event]:
        args = {"id": process_id, "offset": offset, "limit": limit}  # LIMIT NULL: all
        return [codec.event_from_row(r) for r in self._rows(Q["history_list"], args)]

    @verb
    def history_append(self, events: Sequence[Event]) -> None:
        if events:
            self._rows(Q["history_append"], event_args([codec.event_to_row(e) for e in events]))


def backlog_statement(
    jobs: Sequence[str] | None, queues: Sequence[str] | None, now: float
) -> tuple[str, dict[str, Any]]:
    """runnable_backlog's statement (only the filters asked for spliced in) and its
    arguments."""
    filters = []
    if queues is not None:
        filters.append("AND queue = ANY(%(queues)b::text[])")
    if jobs is not None:
        filters.append("AND job = ANY(%(jobs)b::text[])")
    query = Q["runnable_backlog"].replace("/* filters */", " ".join(filters))
    args = {
        "now": as_time(now),
        "cap": BACKLOG_CAP,
        "queues": list(queues or ()),
        "jobs": list(jobs or ()),
    }
    return query, args


def list_statement(where: ProcessFilter) -> tuple[sql.Composed, dict[str, Any]]:
    """process_list's statement and its arguments."""
    source, clauses, args = _filters(where)
    order = sql.SQL("DESC" if where.newest_first else "ASC")
    query = sql.SQL(
        "SELECT {cols} FROM {source} {where} "
        "ORDER BY created_at {order}, id {order} LIMIT %(limit)s"
    ).format(cols=sql.SQL(SELECT_LIST), source=source, where=clauses, order=order)
    return query, {**args, "limit": where.limit}


def count_statement(where: ProcessFilter) -> tuple[sql.Composed, dict[str, Any]]:
    """process_count's statement and its arguments."""
    source, clauses, args = _filters(where)
    query = sql.SQL("SELECT count(*) FROM {source} {where}")
    return query.format(source=source, where=clauses), args


#: The processes holding every tag asked for, found by the partial GIN index
#: corral_process_tags alone; the other filters apply to these rows. `OFFSET 0` keeps the
#: subquery apart: flattened, the planner, without statistics on a young table, takes
#: another filter's index (`status`) and reads every row it passes, and a rare tag would
#: cost a walk of the table. `tags <> '{}'` is the index's WHERE, word for word, so that
#: the planner may use it. The work is that of the tagged rows that match.
_TAGGED = sql.SQL(
    "(SELECT * FROM corral_process WHERE tags @> %(tags)s::jsonb AND tags <> '{}' "
    "OFFSET 0) AS corral_process"
)


def _filters(where: ProcessFilter) -> tuple[sql.Composable, sql.Composable, dict[str, Any]]:
    """The source of a filter's rows (corral_process, or its rows with the tags asked
    for), the WHERE clause of its other filters (empty if none) and their arguments."""
    source: sql.Composable = sql.SQL("corral_process")
    clauses: list[sql.Composable] = []
    args: dict[str, Any] = {}
    if where.tags:
        source = _TAGGED
        args["tags"] = codec.dumps(dict(where.tags))
    for column in ("job", "queue", "custom_id", "client_id"):
        value = getattr(where, column)
        if value is not None:
            clauses.append(sql.SQL("{} = %({})s").format(sql.Identifier(column), sql.SQL(column)))
            args[column] = value
    if where.status is not None:
        clauses.append(sql.SQL("status = %(status)s"))
        args["status"] = where.status.value
    _other_clauses(where, clauses, args)
    if where.id_prefix:
        # A range of the primary key (ids compare in byte order, "C" collation): what a
        # person typed is matched literally, and the index serves it.
        clauses.append(sql.SQL("id >= %(id_from)s"))
        args["id_from"] = where.id_prefix
        past = _past_prefix(where.id_prefix)
        if past is not None:
            clauses.append(sql.SQL("id < %(id_past)s"))
            args["id_past"] = past
    if not clauses:
        return source, sql.SQL(""), args
    return source, sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses), args


def _other_clauses(
    where: ProcessFilter, clauses: list[sql.Composable], args: dict[str, Any]
) -> None:
    """The clauses of a filter's error reason, created range and page's cursor."""
    if where.reason is not None:
        clauses.append(sql.SQL("error->>'reason' = %(reason)s"))
        args["reason"] = where.reason
    if where.created_from is not None:
        clauses.append(sql.SQL("created_at >= to_timestamp(%(created_from)s)"))
        args["created_from"] = where.created_from
    if where.created_until is not None:
        clauses.append(sql.SQL("created_at < to_timestamp(%(created_until)s)"))
        args["created_until"] = where.created_until
    if where.page_after is not None:
        # Past the last row of the page before, in the list's order (created_at, then id).
        direction = sql.SQL("<" if where.newest_first else ">")
        clauses.append(
            sql.SQL("(created_at, id) {} (to_timestamp(%(after_at)s), %(after_id)s)").format(
                direction
            )
        )
        args["after_at"], args["after_id"] = where.page_after


def _past_prefix(prefix: str) -> str | None:
    """The least text after every text that starts with `prefix`, in code point order (the
    byte order of UTF-8); None if there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are no text: skip them
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None
