"""Reads of processes (by id, by filter) and their history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from corral.model import Event, Process
from corral.storage import codec
from corral.storage.base import ProcessFilter
from corral.storage.postgres.connection import Connected, verb
from corral.storage.postgres.queries import SELECT_LIST, Q
from corral.storage.postgres.values import decode_process, event_args


class Reads(Connected):
    """process_get, process_list, history_list and history_append."""

    @verb
    def process_get(self, process_id: str) -> Process | None:
        rows = self._rows(Q["process_get"], {"id": process_id})
        return decode_process(rows[0]) if rows else None

    @verb
    def process_list(self, where: ProcessFilter) -> list[Process]:
        clauses: list[sql.Composable] = []
        args: dict[str, Any] = {"limit": where.limit}
        if where.status is not None:
            clauses.append(sql.SQL("status = %(status)s"))
            args["status"] = where.status.value
        if where.job is not None:
            clauses.append(sql.SQL("job = %(job)s"))
            args["job"] = where.job
        if where.tags:
            clauses.append(sql.SQL("tags @> %(tags)s::jsonb"))
            args["tags"] = codec.dumps(dict(where.tags))
        order = sql.SQL("DESC" if where.newest_first else "ASC")
        query = sql.SQL(
            "SELECT {cols} FROM corral_process {where} "
            "ORDER BY created_at {order}, id {order} LIMIT %(limit)s"
        ).format(
            cols=sql.SQL(SELECT_LIST),
            where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL(""),
            order=order,
        )
        return [decode_process(r) for r in self._rows(query, args)]

    @verb
    def history_list(self, process_id: str) -> list[Event]:
        return [codec.event_from_row(r) for r in self._rows(Q["history_list"], {"id": process_id})]

    @verb
    def history_append(self, events: Sequence[Event]) -> None:
        if events:
            self._rows(Q["history_append"], event_args([codec.event_to_row(e) for e in events]))
