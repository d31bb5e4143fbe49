"""Claims and commits of iterations: leases taken with FOR UPDATE SKIP LOCKED in the order
of docs/state-machine.md, and commits fenced by the lease token. Batched writes over several
rows lock them in id order first, so that two batches never deadlock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from corral.storage import codec
from corral.storage.base import Claim, Claimed, IterationCommit
from corral.storage.postgres.connection import verb
from corral.storage.postgres.graphs import Graphs
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import as_time, change_args, decode_process, event_args


class Claims(Graphs):
    """The worker's exchange: claim, commit, or both in one round trip."""

    @verb
    def process_commit_and_claim(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        if not commits:
            return [], self.process_claim(claim)
        if any(c.spawn for c in commits):  # rare: children to insert with the commit
            return self.process_commit_many(commits), self.process_claim(claim)
        commit = _CommitStatement(commits)
        claim_query, claim_args = _claim_statement(claim)
        notify = {"notify": self._notify_param}
        # One transaction, so one WAL flush, sent as a pipeline: BEGIN, the commit, the
        # claim and COMMIT go out together and come back together, one round trip.
        with self._connection() as conn:
            with conn.pipeline(), conn.transaction():
                committed = conn.execute(commit.query, commit.args | notify)
                claimed = conn.execute(claim_query, claim_args | notify)
            lost = commit.lost(committed.fetchall())
            rows = claimed.fetchall()
        if len(lost) < len(commits):
            self.notify_local()
        return lost, self._claim_more(claim, rows)

    @verb
    def process_claim(self, claim: Claim) -> list[Claimed]:
        if claim.limit <= 0:
            return []
        return self._claim_more(claim, self._rows(*_claim_statement(claim)))

    def _claim_more(self, claim: Claim, rows: Sequence[tuple[Any, ...]]) -> list[Claimed]:
        """The claimed processes of `rows`, and more while the claim has room and took a
        process with a concurrency key: the statement leases no more of a key than it had
        free slots, and the rows of that key it left out took room in its LIMIT. The next
        statement looks past them, their key full now. A claim that took no process with
        a key makes no second statement."""
        out = _claimed(rows)
        if not any(row[-3] is not None for row in rows):
            return out
        while rows and len(out) < claim.limit and any(row[-3] is not None for row in rows):
            recovered = sum(c.recovered for c in out)
            more = replace(
                claim,
                limit=claim.limit - len(out),
                max_recovered=None
                if claim.max_recovered is None
                else max(claim.max_recovered - recovered, 0),
            )
            rows = self._rows(*_claim_statement(more))
            out.extend(_claimed(rows))
        # Recovered ones first, as one statement gives them.
        out.sort(key=lambda c: not c.recovered)
        return out

    @verb
    def process_commit_many(self, commits: Sequence[IterationCommit]) -> list[str]:
        if not commits:
            return []
        spawning = [c for c in commits if c.spawn]
        if spawning:
            plain = [c for c in commits if not c.spawn]
            lost = self.process_commit_many(plain) if plain else []
            return lost + [pid for c in spawning for pid in self._commit_spawning(c)]
        commit = _CommitStatement(commits)
        lost = commit.lost(self._rows(commit.query, commit.args))
        if len(lost) < len(commits):
            self.notify_local()
        return lost

    def _commit_spawning(self, commit: IterationCommit) -> list[str]:
        """One commit and the children its iteration spawned, in one transaction: the
        children exist only if the commit lands. The ids lost (its own, or none)."""
        statement = _CommitStatement([commit])
        with self._connection() as conn, conn.transaction():
            rows = conn.execute(
                statement.query, statement.args | {"notify": self._notify_param}
            ).fetchall()
            lost = statement.lost(rows)
            if not lost:
                self._spawn(conn.cursor(), commit.process_id, commit.spawn, commit.now)
        if not lost:
            self.notify_local()
        return lost


def _claim_statement(claim: Claim) -> tuple[str, dict[str, Any]]:
    """The claim's statement: the filters it asks for, and only those, spliced in, so that
    an unfiltered claim is the plain statement (and its plan) of queries.sql."""
    filters = []
    if claim.process_ids is not None:
        filters.append("AND id = ANY(%(ids)b::text[])")
    if claim.queues is not None:
        filters.append("AND queue = ANY(%(queues)b::text[])")
    if claim.jobs is not None:
        # Checked on the rows the index walk meets, as the queue is: a process of another
        # job is skipped, neither locked nor changed.
        filters.append("AND job = ANY(%(jobs)b::text[])")
    query = Q["process_claim"].replace("/* filters */", " ".join(filters))
    if claim.max_recovered is not None:
        query = query.replace("/* max_recovered */", ", %(max_recovered)b")
    args = {
        "owner": claim.owner,
        "now": as_time(claim.now),
        "expires": as_time(claim.now + claim.lease_seconds),
        "limit": max(claim.limit, 0),
        "ids": list(claim.process_ids or ()),
        "queues": list(claim.queues or ()),
        "jobs": list(claim.jobs or ()),
        "max_recovered": max(claim.max_recovered or 0, 0),
    }
    return query, args


def _claimed(rows: Sequence[tuple[Any, ...]]) -> list[Claimed]:
    # Rows come in the order of docs/state-machine.md: recovered ones (claim_class 1) first.
    # Each row ends with claim_rank, concurrency_key, previous_owner and claim_class.
    claimed = []
    for row in rows:
        process = decode_process(row)
        previous_owner, claim_class = row[-2], row[-1]
        claimed.append(Claimed(process, process.lease_token, claim_class == 1, previous_owner))
    return claimed


class _CommitStatement:
    """process_commit_many's statement for a batch, and which commits it refused."""

    def __init__(self, commits: Sequence[IterationCommit]) -> None:
        self.commits = commits
        # One commit per process: a second one for the same id finds the lease released.
        self.first: dict[str, int] = {}
        for i, commit in enumerate(commits):
            self.first.setdefault(commit.process_id, i)
        batch = [commits[i] for i in self.first.values()]
        columns: dict[str, list[Any]] = {"ids": [], "tokens": [], "now": []}
        for commit in batch:
            columns["ids"].append(commit.process_id)
            columns["tokens"].append(commit.token)
            columns["now"].append(as_time(commit.now))
            for key, value in change_args(commit.change).items():
                columns.setdefault(key, []).append(value)
        events = [codec.event_to_row(e, c.process_id) for c in batch for e in c.change.events]
        self.query = Q["process_commit_many"]
        self.args: dict[str, Any] = columns | event_args(events)
        # When the dependents of the processes it ends are settled (a promoted one is
        # queued from then on).
        self.args["settle_at"] = max(columns["now"])

    def lost(self, landed_rows: Sequence[tuple[Any, ...]]) -> list[str]:
        landed = {r[0] for r in landed_rows}
        return [
            c.process_id
            for i, c in enumerate(self.commits)
            if c.process_id not in landed or self.first[c.process_id] != i
        ]
