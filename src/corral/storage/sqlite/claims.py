"""Claims and a worker's commits, in the caller's write transaction (`BEGIN IMMEDIATE`,
so a claim is atomic: no other writer runs between its SELECT and its UPDATE).

A claim takes processes in the claim order of docs/storage-sqlite.md: expired leases
first (a worker died mid-iteration), then unleased runnable processes by claim_rank
(cancel requests, failing, ending, running, starting), higher priority first, then the
oldest run_at. Each class is one walk of its own partial index, named in the statement
(`INDEXED BY`): SQLite's planner otherwise prefers the status index and walks every
runnable row. A process with a concurrency key is taken only while its key has a free
slot (docs/flow-control.md): the single writer makes the count and the lease one step.
A commit is fenced by the lease token: a worker that lost its lease writes nothing. The
Python work (JSON, records) is done outside the transaction by the caller: other
processes wait for SQLite's one write lock while it is held.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from corral import graph
from corral.model import Status
from corral.storage import codec, columns, dependents
from corral.storage.base import Claim, Claimed, IterationCommit, NewProcess
from corral.storage.sqlite import graphs
from corral.storage.sqlite.reads import claim_filters, decode_process
from corral.storage.sqlite.sql import Q

#: Claimed rows and, per process id, the owner of the lease it had (None: unleased).
Chosen = tuple[list[Any], dict[str, str | None]]
#: Per commit: process id, the UPDATE's parameters, the history rows if it lands, the
#: status it ends the process with (None: it does not end it), the children it spawned.
CommitRows = list[
    tuple[str, tuple[Any, ...], list[tuple[Any, ...]], Status | None, tuple[NewProcess, ...]]
]


def claim(conn: sqlite3.Connection, claim: Claim) -> Chosen:
    """Lease the processes to claim; their rows, and the previous owner of each."""
    paused = {r[0] for r in conn.execute(Q["paused_queues"])}
    if "*" in paused:
        return [], {}
    filters, fargs = claim_filters(claim.process_ids, claim.queues, claim.jobs, paused)
    # Driving one named process needs no ordered walk of the runnable index.
    by_index = not claim.process_ids
    rows: list[Any] = []
    previous: dict[str, str | None] = {}
    for name in ("select_expired", "select_runnable"):
        sql = _select(name, filters, by_index)
        while True:
            need = claim.limit - len(previous)
            if name == "select_expired" and claim.max_recovered is not None:
                need = min(need, claim.max_recovered - len(previous))
            if need <= 0:
                break
            chosen, skipped = _keep(conn.execute(sql, (claim.now, *fargs, need)))
            if chosen:
                rows.extend(_lease_rows(conn, claim, chosen))
                previous.update(chosen)
            # Rows of a key this round filled took room in its LIMIT: look again, past
            # them now that their key is full (without this, a worker would run the
            # first keys of the queue only, however many slots it has).
            if not skipped:
                break
    return rows, previous


def _keep(selected: Iterable[Any]) -> tuple[list[tuple[str, str | None]], bool]:
    """The selected rows to lease: every one without a concurrency key, and of each key
    as many as it had free slots (the statement's count, before this round), the first
    in claim order. Whether any was left out."""
    chosen: list[tuple[str, str | None]] = []
    taken: Counter[str] = Counter()
    skipped = False
    for pid, owner, key, free in selected:
        if key is not None:
            if taken[key] >= free:
                skipped = True
                continue
            taken[key] += 1
        chosen.append((pid, owner))
    return chosen, skipped


def _lease_rows(
    conn: sqlite3.Connection, claim: Claim, chosen: Sequence[tuple[str, str | None]]
) -> list[Any]:
    return conn.execute(
        _lease(len(chosen)),
        (claim.owner, claim.now + claim.lease_seconds, claim.now, claim.now, claim.now,
         *(pid for pid, _ in chosen)),
    ).fetchall()  # fmt: skip


def claimed(chosen: Chosen) -> list[Claimed]:
    """The claimed processes, recovered ones first, then as selected (the claim order)."""
    rows, previous = chosen
    out = []
    for row in rows:
        process = decode_process(row)
        owner = previous[process.id]
        out.append(Claimed(process, process.lease_token, owner is not None, owner))
    order = {pid: i for i, pid in enumerate(previous)}
    out.sort(key=lambda c: order[c.process.id])
    return out


def commit_rows(commits: Sequence[IterationCommit]) -> CommitRows:
    """What `commit` binds, computed before the transaction."""
    return [
        (
            commit.process_id,
            (*columns.change_values(commit.change), commit.now, commit.process_id, commit.token),
            [codec.event_to_row(e, commit.process_id) for e in commit.change.events],
            commit.change.status if dependents.ended_by(commit.change) else None,
            commit.spawn,
        )
        for commit in commits
    ]


def commit(conn: sqlite3.Connection, commits: CommitRows, now: float) -> list[str]:
    """Apply the commits whose lease is still held; the ids of those that were lost. The
    dependents of the processes they end are settled in the same transaction."""
    lost: list[str] = []
    events: list[tuple[Any, ...]] = []
    ended: list[graph.Ended] = []
    spawned: list[tuple[str, tuple[NewProcess, ...]]] = []
    for process_id, values, rows, ends, children in commits:
        if ends is None:
            landed = conn.execute(Q["process_commit"], values).rowcount == 1
        else:
            row = conn.execute(Q["process_commit_ending"], values).fetchone()
            landed = row is not None
            if landed and row[0]:
                ended.append(graph.Ended(process_id, ends))
        if landed:
            events.extend(rows)
            if children:
                spawned.append((process_id, children))
        else:
            lost.append(process_id)
    if events:
        conn.executemany(Q["history_insert"], events)
    for parent, children in spawned:
        graphs.spawn(conn, parent, children, now)
    if ended:
        graphs.settle(conn, ended, now)
    return lost


@functools.lru_cache(maxsize=256)
def _select(name: str, filters: str, by_index: bool) -> str:
    """select_expired or select_runnable with the claim's filters, walking its index."""
    index = {
        "select_expired": "corral_process_leased",
        "select_runnable": "corral_process_runnable",
    }
    indexed_by = f"INDEXED BY {index[name]}" if by_index else ""
    return Q[name].replace("/* indexed_by */", indexed_by).replace("/* filters */", filters)


@functools.lru_cache(maxsize=64)
def _lease(count: int) -> str:
    return Q["process_lease"].replace("/* ids */", ", ".join("?" * count))
