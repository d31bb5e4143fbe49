"""Task graphs, in the caller's write transaction: inserting processes with dependencies
(and batches), settling the dependents of processes that ended, and reading a graph.

The rules are corral.graph's, run over rows by corral.storage.dependents; this module
gives them SQLite's reads and writes. SQLite has one writer at a time, so nothing read
here can change before the transaction ends.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from corral import graph
from corral.model import Event, Process, Status
from corral.storage import codec, columns, dependents
from corral.storage.base import BatchInfo, Inserted, NewBatch, NewProcess
from corral.storage.shared import same_submit
from corral.storage.sqlite.inserts import created_tags, insert_rows, insert_tags
from corral.storage.sqlite.reads import append_history, decode_process, get_by_custom_id
from corral.storage.sqlite.sql import Q

#: Ids bound per `IN (...)` at most (SQLite binds at most 32,766 values per statement).
_CHUNK = 500


def insert(
    conn: sqlite3.Connection, processes: Sequence[NewProcess], batch: NewBatch | None
) -> list[Inserted]:
    """Insert processes that have dependencies or form a batch: each one's initial status
    decided from its dependencies' (corral.graph.plan_batch), the edges, the submitted
    events, the tags' rows, and the cancels of nodes whose dependency had already failed."""
    if batch is not None:
        found = _batch_row(conn, Q["batch_by_custom_id"], batch.client_id, batch.custom_id)
        if found is not None and batch.custom_id is not None:
            return [Inserted(p, "existing") for p in batch_processes(conn, found.id)]
        conn.execute(
            Q["batch_insert"],
            (batch.id, batch.client_id, batch.custom_id, batch.created_at, len(processes)),
        )
    new, existing_out = _resolve_custom_ids(conn, processes)
    ours = {n.id for n in new}
    outside = sorted({d for n in new for d in n.depends_on if d not in ours})
    existing = {
        row[0]: graph.Existing(Status(row[1]), row[2])
        for chunk in _chunks(outside)
        for row in conn.execute(_in(Q["graph_existing"], len(chunk)), chunk)
    }
    at = processes[0].created_at if processes else 0.0
    plan = dependents.plan_inserts(new, existing, at)
    tags = codec.JsonCache()
    # Multi-row statements, as the plain inserts (inserts.py): a graph may be 100,000 rows.
    rows = [v for n in plan.processes for v in _insert_row(n, tags)]
    insert_rows(conn, Q["process_insert_graph"], rows)
    events = [v for n in plan.processes for v in codec.event_to_row(_submitted(n), n.id)]
    insert_rows(conn, Q["history_insert"], events)
    insert_rows(conn, Q["dependency_insert"], [v for edge in plan.edges for v in edge])
    targets = sorted(plan.with_dependents)
    for chunk in _chunks(targets):
        conn.execute(_in(Q["graph_mark_dependents"], len(chunk)), chunk)
    if plan.canceled:
        # Canceled at once: settle them as any canceled dependent, down the batch.
        write_changes(conn, plan.canceled, at)
    canceled = {c.id: c for c in plan.canceled}
    records = {n.id: _record(n, canceled.get(n.id)) for n in plan.processes}
    out = [existing_out.get(n.id) or Inserted(records[n.id], "created") for n in processes]
    insert_tags(conn, created_tags(out))
    return out


def _resolve_custom_ids(
    conn: sqlite3.Connection, processes: Sequence[NewProcess]
) -> tuple[list[NewProcess], dict[str, Inserted]]:
    """The processes to insert, and those whose custom id some process holds already (the
    same submit: `existing`; else CustomIdConflict), by their new id. A later node that
    depends on an existing one depends on the process that holds its custom id."""
    existing: dict[str, Inserted] = {}
    renamed: dict[str, str] = {}
    new: list[NewProcess] = []
    for n in processes:
        if renamed and any(d in renamed for d in n.depends_on):
            n = replace(n, depends_on=tuple(renamed.get(d, d) for d in n.depends_on))
        if n.custom_id is not None:
            found = get_by_custom_id(conn, n.client_id, n.custom_id)
            if found is not None:
                same_submit(found, n, codec.params_json(n))
                existing[n.id] = Inserted(found, "existing")
                renamed[n.id] = found.id
                continue
        new.append(n)
    return new, existing


def _insert_row(n: NewProcess, tags: codec.JsonCache) -> tuple[Any, ...]:
    """The values of process_insert_graph for a new process."""
    return (
        n.id, n.job, codec.params_json(n), n.status._value_, n.priority, n.queue, n.run_at,
        n.custom_id, n.client_id, tags.dumps(n.tags), n.created_at, n.created_at,
        n.deadline_at, n.schedule_to_close, n.start_to_close, n.heartbeat_timeout, n.run_at,
        n.pending_dependencies, n.on_dependency_failure, n.batch_id, n.concurrency_key,
        n.concurrency_limit,
    )  # fmt: skip


def _record(n: NewProcess, canceled: graph.DependentChange | None) -> Process:
    """The record of a new process, as inserted (and canceled at once, for some)."""
    process = columns.new_process_record(n)
    if canceled is not None:
        return replace(process, status=Status.CANCELED, finished_at=canceled.finished_at)
    return process


def _submitted(n: NewProcess) -> Event:
    return Event("submitted", n.created_at, None, n.status, 0, codec.submitted_detail(n), n.id)


def spawn(conn: sqlite3.Connection, parent: str, children: Sequence[NewProcess], at: float) -> None:
    """The children a committed iteration of `parent` spawned: inserted (a custom id
    already taken names the process that holds it), each an edge of the parent, which
    waits for those not ended yet, or resumes at once if none is left."""
    new, existing = _resolve_custom_ids(conn, children)
    tags = codec.JsonCache()
    insert_rows(conn, Q["process_insert_graph"], [v for n in new for v in _insert_row(n, tags)])
    events = [v for n in new for v in codec.event_to_row(_submitted(n), n.id)]
    insert_rows(conn, Q["history_insert"], events)
    insert_tags(conn, ((n.id, n.tags) for n in new))
    ids = [existing[n.id].process.id if n.id in existing else n.id for n in children]
    ids = list(dict.fromkeys(ids))  # the same process named twice is one dependency
    insert_rows(conn, Q["dependency_insert"], [v for child in ids for v in (parent, child)])
    for chunk in _chunks(ids):
        conn.execute(_in(Q["graph_mark_dependents"], len(chunk)), chunk)
    ended = {i.process.id for i in existing.values() if i.process.status.terminal}
    pending = sum(1 for child in ids if child not in ended)
    conn.execute(Q["spawn_parent"], (pending, parent))
    if pending == 0:
        row = conn.execute(Q["spawn_resume"], (at, at, at, parent)).fetchone()
        if row is not None:
            to = Status(row[0])
            reason = {"reason": graph.PROMOTE_REASON}
            append_history(conn, [Event("transition", at, Status.WAITING, to, 0, reason, parent)])


def settle(conn: sqlite3.Connection, ended: Sequence[graph.Ended], at: float) -> int:
    """Settle the dependents of processes that just ended, cascade included; how many
    became runnable."""

    def read(ids: Sequence[str]) -> Iterable[dependents.DependentRow]:
        for chunk in _chunks(list(ids)):
            yield from conn.execute(_in(Q["dependents_waiting"], len(chunk)), chunk)

    changes = dependents.settle(ended, read, lambda c: write_changes(conn, c, at), at)
    return sum(1 for c in changes if c.status is Status.STARTING)


def write_changes(
    conn: sqlite3.Connection, changes: Sequence[graph.DependentChange], at: float
) -> None:
    """Write what corral.graph decided for some dependents, with their events. The cascade
    to the dependents of those it cancels is the caller's next round (dependents.settle),
    or was decided already (a batch's plan)."""
    conn.executemany(
        Q["dependent_settle"],
        [
            (c.status.value, c.pending, c.run_at, c.iteration_since, c.finished_at,
             c.root_cause, at, c.id)
            for c in changes
        ],
    )  # fmt: skip
    append_history(conn, [e for c in changes for e in c.events])


def reopen(conn: sqlite3.Connection, process_id: str, at: float) -> None:
    """A dependency was retried: its waiting dependents wait for it again."""
    conn.execute(Q["dependents_reopen"], (at, process_id))


def resume_dependents(conn: sqlite3.Connection, root: str, now: float) -> list[str]:
    """Resume what a cascade from `root` canceled, dependencies first (corral.graph decides
    each); the ids resumed. SQLite's one writer: nothing read here changes meanwhile."""
    canceled = [r[0] for r in conn.execute(Q["canceled_by_root"], (root,))]
    edges = [
        (a, b)
        for chunk in _chunks(canceled)
        for a, b in conn.execute(_in(Q["edges_of"], len(chunk)), chunk)
    ]
    out = []
    for pid in graph.resume_order(root, canceled, edges):
        statuses = [Status(s) for (s,) in conn.execute(Q["dependency_statuses"], (pid,))]
        decision = graph.resumed(statuses)
        if decision is None:
            continue
        conn.execute(
            Q["dependent_resume"], (decision.status.value, decision.pending, now, now, now, pid)
        )
        append_history(conn, [graph.resume_event(pid, decision, root, now)])
        out.append(pid)
    return out


def dependencies_of(
    conn: sqlite3.Connection, ids: Sequence[str]
) -> dict[str, list[graph.DependencyRow]]:
    """What each process sees of its dependencies (only those that have some)."""
    out: dict[str, list[graph.DependencyRow]] = {}
    for chunk in _chunks(list(ids)):
        for pid, dep, status, result, error in conn.execute(
            _in(Q["dependencies_of"], len(chunk)), chunk
        ):
            out.setdefault(pid, []).append(dependents.dependency_row(dep, status, result, error))
    return out


def dependency_ids(conn: sqlite3.Connection, process_id: str) -> list[str]:
    return [r[0] for r in conn.execute(Q["dependency_ids"], (process_id,))]


def dependent_ids(conn: sqlite3.Connection, process_id: str) -> list[str]:
    return [r[0] for r in conn.execute(Q["dependent_ids"], (process_id,))]


def batch_get(conn: sqlite3.Connection, batch_id: str) -> BatchInfo | None:
    return _batch_row(conn, Q["batch_get"], batch_id)


def batch_by_custom_id(
    conn: sqlite3.Connection, client_id: str, custom_id: str
) -> BatchInfo | None:
    return _batch_row(conn, Q["batch_by_custom_id"], client_id, custom_id)


def batch_counts(conn: sqlite3.Connection, batch_id: str) -> dict[Status, int]:
    return {Status(s): n for s, n in conn.execute(Q["batch_counts"], (batch_id,))}


def batch_processes(conn: sqlite3.Connection, batch_id: str) -> list[Process]:
    return [decode_process(r) for r in conn.execute(Q["batch_processes"], (batch_id,))]


def batch_edges(conn: sqlite3.Connection, batch_id: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in conn.execute(Q["batch_edges"], (batch_id,))]


def _batch_row(conn: sqlite3.Connection, query: str, *args: Any) -> BatchInfo | None:
    row = conn.execute(query, args).fetchone()
    return None if row is None else BatchInfo(*row)


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


@functools.lru_cache(maxsize=64)
def _in(query: str, count: int) -> str:
    return query.replace("/* ids */", ", ".join("?" * count))
