"""The admin verbs, in the caller's write transaction: a change of a process fenced by its
row's version (cancel, retry and the timeouts all come as one, decided by the core), many
of them at once (the recovery sweep), the search for timed-out processes, and pruning
(by age, and by each job's retention)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from corral import graph
from corral.model import Change
from corral.storage import columns, dependents
from corral.storage.base import TimedOut, Update
from corral.storage.sqlite import graphs
from corral.storage.sqlite.reads import append_history, decode_process
from corral.storage.sqlite.sql import Q


def update(
    conn: sqlite3.Connection,
    process_id: str,
    expected_version: int,
    change: Change,
    now: float,
    *,
    revoke_lease: bool = False,
) -> bool:
    """Apply `change` if the row is still at `expected_version`; whether it was."""
    query = Q["process_update_revoking" if revoke_lease else "process_update"]
    values = (
        *columns.change_values(change),
        int(change.cancel_requested),
        now,
        process_id,
        expected_version,
    )
    row = conn.execute(query, values).fetchone()
    if row is None:
        return False
    append_history(conn, change.events, process_id)
    if row[0]:  # some process depends on this one
        if dependents.ended_by(change):
            graphs.settle(conn, [graph.Ended(process_id, change.status)], now)
        elif dependents.reopened_by(change):
            graphs.reopen(conn, process_id, now)
    return True


def update_many(conn: sqlite3.Connection, updates: Sequence[Update]) -> list[str]:
    """`update` for each; the ids updated. One transaction: one fsync for the lot."""
    return [
        u.process_id
        for u in updates
        if update(
            conn, u.process_id, u.expected_version, u.change, u.now, revoke_lease=u.revoke_lease
        )
    ]


def timed_out(conn: sqlite3.Connection, now: float, limit: int) -> list[TimedOut]:
    rows = conn.execute(Q["select_timed_out"], {"now": now, "limit": limit}).fetchall()
    return [TimedOut(decode_process(r[:-1]), r[-1]) for r in rows]


def prunable(conn: sqlite3.Connection, finished_before: float) -> dict[str, int]:
    return {job: n for job, n in conn.execute(Q["prunable"], (finished_before,))}


def prune(conn: sqlite3.Connection, finished_before: float) -> int:
    """Delete the processes finished before the time, their history, their edges and
    their tags' rows."""
    conn.execute(Q["prune_history"], (finished_before,))
    conn.execute(Q["prune_dependencies"], (finished_before,))
    conn.execute(Q["prune_tags"], (finished_before,))
    return int(conn.execute(Q["prune_processes"], (finished_before,)).rowcount)


def expired(conn: sqlite3.Connection, cutoffs: Mapping[str, float], limit: int) -> list[str]:
    """Up to `limit` completed processes past their job's cut-off, oldest first: each
    job's oldest from the index (at most `limit` of them), then the oldest of all."""
    found: list[tuple[float, str]] = []
    for job, before in cutoffs.items():
        found.extend((at, pid) for pid, at in conn.execute(Q["expired"], (job, before, limit)))
    found.sort()
    return [pid for _, pid in found[:limit]]


def prune_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> int:
    """Delete these processes with their history, edges and tags' rows; how many there
    were."""
    doomed = json.dumps(list(ids))
    conn.execute(Q["prune_ids_history"], (doomed,))
    conn.execute(Q["prune_ids_dependencies"], (doomed,))
    conn.execute(Q["prune_ids_tags"], (doomed,))
    return int(conn.execute(Q["prune_ids_processes"], (doomed,)).rowcount)
