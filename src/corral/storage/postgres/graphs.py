"""Task graphs: inserting processes with dependencies (and batches) in one transaction,
what a process sees of its dependencies, and a batch's graph.

The commit that ends a process settles its dependents inside its own statement (the
`corral_settle` function of the schema); what happens here is the insert side: the
dependencies that exist already are locked in id order and marked as having dependents,
so that none can end unseen before the edges are written, then corral.graph decides each
new node's initial status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg

from corral import graph, rates
from corral.model import Process, Status
from corral.rates import Rate
from corral.storage import codec, dependents
from corral.storage.base import BatchInfo, Inserted, NewBatch, NewProcess
from corral.storage.postgres.connection import Connected, Connection, verb
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import (
    as_time,
    column_args,
    decode_process,
    event_args,
    new_process_record,
)
from corral.storage.shared import same_submit

Cursor = psycopg.Cursor[tuple[Any, ...]]


class Graphs(Connected):
    """The graph verbs, and the insert of processes that have dependencies."""

    def _insert_graph(
        self, conn: Cursor, processes: Sequence[NewProcess], batch: NewBatch | None
    ) -> list[Inserted]:
        """In the caller's transaction, on its cursor `conn`."""
        if batch is not None:
            if batch.custom_id is not None:
                row = conn.execute(
                    Q["batch_by_custom_id"],
                    {"client_id": batch.client_id, "custom_id": batch.custom_id},
                ).fetchone()
                if row is not None:
                    return [Inserted(p, "existing") for p in self._batch_processes(conn, row[0])]
            inserted = conn.execute(
                Q["batch_insert"],
                {
                    "id": batch.id,
                    "client_id": batch.client_id,
                    "custom_id": batch.custom_id,
                    "created_at": as_time(batch.created_at),
                    "size": len(processes),
                },
            ).fetchone()
            if inserted is None:  # a concurrent submit of the same batch won: it is that one
                row = conn.execute(
                    Q["batch_by_custom_id"],
                    {"client_id": batch.client_id, "custom_id": batch.custom_id},
                ).fetchone()
                assert row is not None
                return [Inserted(p, "existing") for p in self._batch_processes(conn, row[0])]
        new, existing_out = _resolve_custom_ids(conn, processes)
        ours = {n.id for n in new}
        outside = sorted({d for n in new for d in n.depends_on if d not in ours})
        existing = {}
        if outside:
            for pid, status, root in conn.execute(Q["graph_lock_existing"], {"ids": outside}):
                existing[pid] = graph.Existing(Status(status), root)
        at = as_time(processes[0].created_at) if processes else 0.0
        plan = dependents.plan_inserts(new, existing, at)
        if plan.processes:
            conn.execute(Q["process_insert_graph"], _insert_args(plan, self._notify_param))
        if plan.canceled:
            rows = [codec.event_to_row(e, c.id) for c in plan.canceled for e in c.events]
            conn.execute(
                Q["graph_cancel_at_once"],
                {
                    "ids": [c.id for c in plan.canceled],
                    "roots": [c.root_cause for c in plan.canceled],
                    "at": at,
                }
                | event_args(rows),
            )
            # Their own dependents outside the batch: none (they are new); inside it,
            # corral.graph has decided them already.
        canceled = {c.id: c for c in plan.canceled}
        records = {}
        for n in plan.processes:
            record = new_process_record(n)
            if n.id in canceled:
                record = replace(record, status=Status.CANCELED, finished_at=at)
            records[n.id] = record
        return [existing_out.get(n.id) or Inserted(records[n.id], "created") for n in processes]

    def _spawn(self, cur: Cursor, parent: str, children: Sequence[NewProcess], at: float) -> None:
        """The children a committed iteration of `parent` spawned, in its transaction:
        inserted (a custom id already taken names the process that holds it), each an
        edge of the parent, which waits for those not ended yet, or resumes at once if
        none is left."""
        new, existing = _resolve_custom_ids(cur, children)
        ids = list(dict.fromkeys(
            existing[n.id].process.id if n.id in existing else n.id for n in children
        ))  # fmt: skip
        if new:
            plan = dependents.GraphInsert(
                tuple(new), tuple((parent, c) for c in ids), frozenset(n.id for n in new), ()
            )
            cur.execute(Q["process_insert_graph"], _insert_args(plan, self._notify_param))
        else:
            cur.execute(
                "INSERT INTO corral_dependency (process_id, depends_on) "
                "SELECT %(parent)s, unnest(%(ids)s::text[])",
                {"parent": parent, "ids": ids},
            )
        old = [existing[n.id].process.id for n in children if n.id in existing]
        if old:
            cur.execute(Q["graph_mark_dependents"], {"ids": old})
        ended = {i.process.id for i in existing.values() if i.process.status.terminal}
        pending = sum(1 for child in ids if child not in ended)
        cur.execute(Q["spawn_parent"], {"pending": pending, "id": parent})
        if pending == 0:
            cur.execute(Q["spawn_resume"], {"at": as_time(at), "id": parent})

    def _batch_processes(self, conn: Cursor | Connection, batch_id: str) -> list[Process]:
        return [decode_process(r) for r in conn.execute(Q["batch_processes"], {"id": batch_id})]

    @verb
    def dependencies_of(self, process_ids: Sequence[str]) -> dict[str, list[graph.DependencyRow]]:
        if not process_ids:
            return {}
        out: dict[str, list[graph.DependencyRow]] = {}
        for pid, dep, status, result, error in self._rows(
            Q["dependencies_of"], {"ids": list(process_ids)}
        ):
            out.setdefault(pid, []).append(dependents.dependency_row(dep, status, result, error))
        return out

    @verb
    def process_resume_dependents(self, root_id: str, now: float) -> list[str]:
        # The canceled dependents are locked first: a dependency that ends meanwhile
        # settles them after this transaction, and sees them waiting (docs/graphs.md).
        out = []
        with self._connection() as conn, conn.transaction():
            canceled = [r[0] for r in conn.execute(Q["canceled_by_root"], {"root": root_id})]
            if not canceled:
                return []
            edges = [(a, b) for a, b in conn.execute(Q["edges_of"], {"ids": canceled}).fetchall()]
            for pid in graph.resume_order(root_id, canceled, edges):
                rows = conn.execute(Q["dependency_statuses"], {"id": pid}).fetchall()
                decision = graph.resumed(Status(r[0]) for r in rows)
                if decision is None:
                    continue
                event = graph.resume_event(pid, decision, root_id, now)
                conn.execute(
                    Q["dependent_resume"],
                    {
                        "id": pid,
                        "status": decision.status.value,
                        "pending": decision.pending,
                        "now": as_time(now),
                        "detail": codec.dumps(dict(event.detail)),
                    },
                )
                out.append(pid)
            if out and self._notify_param is not None:  # some may be runnable at once
                conn.execute("SELECT pg_notify(%s, '')", (self._notify_param,))
        if out:
            self.notify_local()
        return out

    @verb
    def rate_take(self, bucket: str, rate: Rate, now: float) -> float:
        at = as_time(now)
        with self._connection() as conn, conn.transaction():
            conn.execute(Q["rate_bucket_new"], {"bucket": bucket, "tokens": rate.burst, "now": at})
            row = conn.execute(Q["rate_bucket"], {"bucket": bucket}).fetchone()
            assert row is not None  # inserted above if it was not there
            tokens, updated_at = float(row[0]), float(row[1])
            left, wait = rates.take(tokens, updated_at, at, rate)
            conn.execute(
                Q["rate_bucket_set"],
                {"bucket": bucket, "tokens": left, "now": max(at, updated_at)},
            )
        return wait

    @verb
    def process_edges(self, process_id: str) -> tuple[list[str], list[str]]:
        rows = self._rows(Q["process_edges"], {"id": process_id})
        return [r[1] for r in rows if r[0] == "on"], [r[1] for r in rows if r[0] == "by"]

    @verb
    def batch_get(self, batch_id: str) -> BatchInfo | None:
        rows = self._rows(Q["batch_get"], {"id": batch_id})
        return BatchInfo(*rows[0]) if rows else None

    @verb
    def batch_by_custom_id(self, client_id: str, custom_id: str) -> BatchInfo | None:
        rows = self._rows(Q["batch_by_custom_id"], {"client_id": client_id, "custom_id": custom_id})
        return BatchInfo(*rows[0]) if rows else None

    @verb
    def batch_counts(self, batch_id: str) -> dict[Status, int]:
        return {Status(s): int(n) for s, n in self._rows(Q["batch_counts"], {"id": batch_id})}

    @verb
    def batch_counts_fold(self, limit: int) -> int:
        [(folded,)] = self._rows(Q["batch_counts_fold"], {"limit": limit})
        return int(folded)

    @verb
    def batch_graph(self, batch_id: str) -> tuple[list[Process], list[tuple[str, str]]]:
        with self._connection() as conn:
            processes = self._batch_processes(conn, batch_id)
            edges = [(a, b) for a, b in conn.execute(Q["batch_edges"], {"id": batch_id})]
        return processes, edges


def _resolve_custom_ids(
    conn: Cursor, processes: Sequence[NewProcess]
) -> tuple[list[NewProcess], dict[str, Inserted]]:
    """As the SQLite backend's: processes whose custom id is taken are `existing` (or a
    CustomIdConflict), and later nodes depend on the process that holds it."""
    existing: dict[str, Inserted] = {}
    renamed: dict[str, str] = {}
    new: list[NewProcess] = []
    for n in processes:
        if renamed and any(d in renamed for d in n.depends_on):
            n = replace(n, depends_on=tuple(renamed.get(d, d) for d in n.depends_on))
        if n.custom_id is not None:
            row = conn.execute(
                Q["process_get_by_custom_id"], {"client_id": n.client_id, "custom_id": n.custom_id}
            ).fetchone()
            if row is not None:
                found = decode_process(row)
                same_submit(found, n, codec.params_json(n))
                existing[n.id] = Inserted(found, "existing")
                renamed[n.id] = found.id
                continue
        new.append(n)
    return new, existing


def _insert_args(plan: dependents.GraphInsert, notify: str | None) -> dict[str, Any]:
    ps = plan.processes
    return column_args(ps) | {
        "pending": [n.pending_dependencies for n in ps],
        "policies": [n.on_dependency_failure for n in ps],
        "batch_ids": [n.batch_id for n in ps],
        "has_dependents": [n.id in plan.with_dependents for n in ps],
        "edge_ids": [a for a, _ in plan.edges],
        "edge_deps": [b for _, b in plan.edges],
        "notify": notify,
    }
