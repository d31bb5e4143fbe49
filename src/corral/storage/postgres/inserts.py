"""Inserts: new processes in one statement per batch, idempotent custom ids, the retry of
an insert whose connection broke, and transactional enqueue on the caller's connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.string import TextLoader

from corral.errors import UsageError
from corral.model import Process
from corral.storage import codec, dependents
from corral.storage.base import Inserted, NewBatch, NewProcess, SubmitShared
from corral.storage.postgres.connection import Connection, outage, verb
from corral.storage.postgres.graphs import Graphs
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import (
    as_float,
    as_time,
    as_time_or_none,
    column_args,
    decode_process,
    new_process_record,
)
from corral.storage.shared import same_submit


class Inserts(Graphs):
    """process_insert_many and what it takes."""

    @verb
    def process_insert_many(
        self,
        processes: Sequence[NewProcess],
        *,
        shared: SubmitShared | None = None,
        connection: object | None = None,
        batch: NewBatch | None = None,
    ) -> list[Inserted]:
        graph = batch is not None or dependents.needs_graph(processes)
        if connection is not None:
            return self._insert_in(connection, processes, shared, batch)
        if not processes and batch is None:
            return []
        if graph:
            # Its locks on existing dependencies may meet a commit's locks on their
            # dependents the other way round: PostgreSQL undoes one of the two.
            out = _after_deadlocks(lambda: self._insert_graph_in_own(processes, batch))
        else:
            # Two batches taking the same custom ids in opposite orders: the other one
            # has committed by now, so another try finds its processes.
            query, args = _insert_args(processes, shared, self._notify_param)
            out = _after_deadlocks(lambda: self._insert_again_if_lost(processes, query, args))
        self.notify_local()
        return out

    def _insert_graph_in_own(
        self, processes: Sequence[NewProcess], batch: NewBatch | None
    ) -> list[Inserted]:
        """A graph in a transaction of its own."""
        with self._connection() as conn, conn.transaction():
            return self._insert_graph(conn.cursor(), processes, batch)

    def _insert_again_if_lost(
        self, processes: Sequence[NewProcess], query: str, args: dict[str, Any]
    ) -> list[Inserted]:
        """Insert; if the connection turns out dead (the pool's check looks only for what a
        dropped connection leaves behind, see _check, and a connection can break after
        it), insert again on another one. An insert that committed before its connection
        broke is found by its ids: the second try's unique violation then means done."""
        used: list[Connection] = []
        try:
            return self._insert(processes, query, args, handed_out=used)
        except psycopg.OperationalError as exc:
            # No connection to be had (a pool timeout), or not an outage: no second try.
            if not used or not outage(exc):
                raise
        try:
            return self._insert(processes, query, args)
        except psycopg.errors.UniqueViolation:
            landed = self._landed(processes)
            if landed is None:
                raise
            return landed

    def _landed(self, processes: Sequence[NewProcess]) -> list[Inserted] | None:
        """The processes as created, if every one of them is stored as it was inserted."""
        rows = self._rows(Q["process_get_many"], {"ids": [n.id for n in processes]})
        stored = {p.id: p for p in map(decode_process, rows)}
        ours = [stored.get(n.id) for n in processes]
        if all(
            p is not None
            and (p.job, p.custom_id) == (n.job, n.custom_id)
            # Parameters compared as values (jsonb keeps no text), loosely (1 == 1.0 ==
            # True), but the ids are fresh UUIDs.
            and p.created_at == as_time(n.created_at)
            and p.params == codec.loads(codec.params_json(n))
            for p, n in zip(ours, processes, strict=True)
        ):
            return [Inserted(p, "created") for p in ours if p is not None]
        return None

    def _insert(
        self,
        processes: Sequence[NewProcess],
        query: str,
        args: dict[str, Any],
        *,
        handed_out: list[Connection] | None = None,
    ) -> list[Inserted]:
        """`handed_out`: note the connection in this list once the pool hands it out."""
        # Without custom ids the one statement is the whole transaction; with them, the
        # batch must roll back as a whole on a conflict found by the second statement.
        atomic = query == "process_insert_many"
        with self._connection() as conn:
            if handed_out is not None:
                handed_out.append(conn)
            with conn.transaction() if atomic else nullcontext():
                return self._insert_on(conn, processes, query, args)

    def _insert_on(
        self, conn: Connection, processes: Sequence[NewProcess], query: str, args: dict[str, Any]
    ) -> list[Inserted]:
        if query == "process_insert_new" and psycopg.Pipeline.is_supported():
            # All or nothing: the records are built while the server inserts (it takes
            # about as long), and leaving the pipeline raises the statement's error.
            with conn.pipeline():
                conn.execute(Q[query], args)
                return [Inserted(new_process_record(n), "created") for n in processes]
        return _insert_rows(conn, processes, query, args)

    def _insert_in(
        self,
        connection: object,
        processes: Sequence[NewProcess],
        shared: SubmitShared | None,
        batch: NewBatch | None,
    ) -> list[Inserted]:
        """Transactional enqueue: insert through the caller's connection, in the caller's
        transaction, which we neither commit nor roll back. The NOTIFY the insert sends is
        delivered by PostgreSQL when (and only if) that transaction commits."""
        if not isinstance(connection, psycopg.Connection):
            raise UsageError(
                "connection must be a psycopg (3) Connection, not "
                f"{type(connection).__module__}.{type(connection).__qualname__}"
            )
        # The caller's row factory and loaders may differ from the pool's: use our own.
        cur = psycopg.Cursor(connection, row_factory=tuple_row)
        cur.adapters.register_loader("jsonb", TextLoader)
        # Without autocommit, this first statement also opens the caller's transaction if
        # none was open yet (psycopg's implicit BEGIN), so that the block below is only a
        # savepoint. In autocommit mode outside a transaction block, the insert commits at
        # once, like a plain submit.
        row = cur.execute(Q["notify_channel"]).fetchone()
        if row is None or (str(row[0]), str(row[1])) != (self._channel, self._database):
            where = "?" if row is None else f"database {row[1]!r}, channel {row[0]!r}"
            raise UsageError(
                f"the connection reaches another corral database or schema ({where}) than "
                f"this app ({self._database!r}, {self._channel!r}): use the same database "
                "and search_path"
            )
        if batch is not None or dependents.needs_graph(processes):
            with connection.transaction():
                return self._insert_graph(cur, processes, batch)
        if not processes:
            return []
        # A savepoint: a custom id conflict undoes this submit and leaves the caller's
        # transaction usable.
        with connection.transaction():
            return _insert_rows(
                cur, processes, *_insert_args(processes, shared, self._notify_param)
            )


def _insert_args(
    processes: Sequence[NewProcess], shared: SubmitShared | None, notify: str | None
) -> tuple[str, dict[str, Any]]:
    """The insert query for a batch and its arguments: `process_insert_new` when the App
    says what they share (one submit call: job, queue, client, tags, timeouts...) and no
    process has a custom id, so that those go once rather than once per process
    (`process_insert_one` for a single one: no arrays at all); else the general
    `process_insert_many`."""
    first = processes[0]
    # Processes with a concurrency key go the general way: the fast ones do not carry it.
    if (
        shared is not None
        and shared.concurrency_limit is None
        and all(n.custom_id is None for n in processes)
    ):
        args: dict[str, Any] = {
            "job": first.job,
            "status": first.status.value,
            "queue": first.queue,
            "client_id": first.client_id,
            "tags": codec.dumps(dict(first.tags)),
            "created_at": as_time(first.created_at),
            "detail": codec.dumps(codec.submitted_detail(first)),
            "deadline_at": as_time_or_none(first.deadline_at),
            "schedule_to_close": as_float(first.schedule_to_close),
            "start_to_close": as_float(first.start_to_close),
            "heartbeat_timeout": as_float(first.heartbeat_timeout),
            "edge_deps": [d for n in processes for d in n.depends_on],
            "notify": notify,
        }
        if len(processes) == 1:
            args |= {
                "id": first.id,
                "params": codec.params_json(first),
                "run_at": as_time(first.run_at),
                "priority": first.priority,
            }
            return "process_insert_one", args
        args |= {
            "ids": [n.id for n in processes],
            "params": [codec.params_json(n) for n in processes],
            "run_at": [as_time(n.run_at) for n in processes],
            "priorities": [n.priority for n in processes],
            "edge_ids": [n.id for n in processes for _ in n.depends_on],
        }
        return "process_insert_new", args
    return "process_insert_many", column_args(processes) | {
        "edge_ids": [n.id for n in processes for _ in n.depends_on],
        "edge_deps": [d for n in processes for d in n.depends_on],
        "notify": notify,
    }


def _insert_rows(
    cur: Connection | psycopg.Cursor[tuple[Any, ...]],
    processes: Sequence[NewProcess],
    query: str,
    args: dict[str, Any],
) -> list[Inserted]:
    """The insert itself, in a transaction its caller manages: one multi-row statement
    for the whole batch, and one more when custom ids were already taken. The records
    returned for new processes are built from what was inserted, not read back."""
    rows = cur.execute(Q[query], args).fetchall()
    if query != "process_insert_many":  # every process was inserted, or the statement failed
        return [Inserted(new_process_record(n), "created") for n in processes]
    created = set(rows[0][0] or ())
    taken = [n for n in processes if n.id not in created]
    # For each process not inserted: the one holding its custom id, and whether their
    # parameters are equal as jsonb values (the stored document has no text of its own).
    holders: dict[str, tuple[Process, bool]] = {}
    if taken:
        # A separate statement: it sees the rows this transaction just inserted and those
        # of concurrent submitters that ON CONFLICT waited for.
        rows = cur.execute(
            Q["process_get_by_custom_ids"],
            {
                "client_ids": [n.client_id for n in taken],
                "custom_ids": [n.custom_id for n in taken],
                "params": [codec.params_json(n) for n in taken],
            },
        ).fetchall()
        for row in rows:
            holders[taken[row[-1] - 1].id] = (decode_process(row), bool(row[-2]))
    return [_outcome(new, created, holders.get(new.id)) for new in processes]


def _outcome(new: NewProcess, created: set[str], holder: tuple[Process, bool] | None) -> Inserted:
    if new.id in created:
        return Inserted(new_process_record(new), "created")
    if holder is None:  # only a custom id conflict skips an insert
        raise AssertionError(f"process {new.id} was neither inserted nor found")
    found, same_params = holder
    if found.id == new.id:  # inserted by a first try whose connection broke after its commit
        return Inserted(found, "created")
    same_submit(found, new, codec.params_json(new), same_params=same_params)
    return Inserted(found, "existing")


def _after_deadlocks(insert: Callable[[], list[Inserted]]) -> list[Inserted]:
    """`insert()`, tried again (up to three times in all) when PostgreSQL undid it to break
    a deadlock: the other transaction has gone on by then."""
    for attempt in (1, 2, 3):
        try:
            return insert()
        except psycopg.errors.DeadlockDetected:
            if attempt == 3:
                raise
    raise AssertionError("unreachable")
