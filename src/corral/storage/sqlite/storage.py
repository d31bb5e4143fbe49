"""`SQLiteStorage`: the storage interface over one SQLite connection. Each verb is one
transaction (connection.py) around the SQL of its concern (inserts, task graphs, claims,
admin, leases, reads, queues); the wake-up verbs come from wakeups.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corral import rates
from corral.errors import UsageError
from corral.graph import DependencyRow
from corral.model import Change, Event, Process, Status
from corral.rates import Rate
from corral.storage import dependents
from corral.storage.base import (
    BatchInfo,
    Claim,
    Claimed,
    ConcurrencySlots,
    Inserted,
    IterationCommit,
    NewBatch,
    NewProcess,
    ProcessFilter,
    ProcessStats,
    Progress,
    Renewal,
    ScheduleFiring,
    ScheduleState,
    Storage,
    SubmitShared,
    TimedOut,
    TokenInfo,
    Update,
    WorkerInfo,
)
from corral.storage.sqlite import (
    admin,
    claims,
    graphs,
    inserts,
    leases,
    queues,
    reads,
    schedules,
    schema,
    tokens,
    workers,
)
from corral.storage.sqlite.sql import Q
from corral.storage.sqlite.wakeups import SQLiteWakeups


class SQLiteStorage(SQLiteWakeups, Storage):
    """Storage on a SQLite file (`sqlite:///path.db`), or on a private in-memory database
    (`memory://`, `path` None)."""

    def __init__(self, url: str, path: str | None, *, migrate: bool = True) -> None:
        super().__init__(url, path)
        try:
            if migrate:
                self.migrate()
        except BaseException:
            self.close()
            raise

    def migrate(self) -> int:
        with self._write(wakes=False) as conn:
            return schema.migrate(conn, self.url)

    # --- processes -----------------------------------------------------------------------
    def process_insert_many(
        self,
        processes: Sequence[NewProcess],
        *,
        shared: SubmitShared | None = None,
        connection: object | None = None,
        batch: NewBatch | None = None,
    ) -> list[Inserted]:
        if connection is not None:
            raise UsageError("transactional enqueue needs the PostgreSQL backend")
        if batch is not None or dependents.needs_graph(processes):
            with self._write() as conn:
                return graphs.insert(conn, processes, batch)
        values = inserts.shared_values(processes, shared)
        with self._write() as conn:
            return inserts.insert_many(conn, processes, values)

    def process_get(self, process_id: str) -> Process | None:
        with self._read() as conn:
            return reads.get(conn, process_id)

    def process_list(self, where: ProcessFilter) -> list[Process]:
        with self._read() as conn:
            return reads.list_processes(conn, where)

    def process_count(self, where: ProcessFilter) -> int:
        with self._read() as conn:
            return reads.count(conn, where)

    def process_id_neighbors(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        if not ids:
            return {}
        with self._read() as conn:
            return reads.id_neighbors(conn, ids)

    def runnable_backlog(
        self, jobs: Sequence[str] | None, queues: Sequence[str] | None, now: float
    ) -> tuple[int, float]:
        with self._read() as conn:
            return reads.runnable_backlog(conn, jobs, queues, now)

    def process_concurrency(self, process_id: str, now: float) -> ConcurrencySlots | None:
        with self._read() as conn:
            return reads.concurrency(conn, process_id, now)

    # Claims and commits do their Python work (JSON, building records) outside the write
    # transaction: other processes wait for SQLite's one write lock while it is held.
    def process_claim(self, claim: Claim) -> list[Claimed]:
        with self._write(wakes=False, durable=False) as conn:
            chosen = claims.claim(conn, claim)
        return claims.claimed(chosen)

    def process_commit_many(self, commits: Sequence[IterationCommit]) -> list[str]:
        rows = claims.commit_rows(commits)
        with self._write() as conn:
            return claims.commit(conn, rows, _latest(commits))

    def process_commit_and_claim(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        # One transaction, so one fsync of the WAL, for a worker's whole exchange.
        rows = claims.commit_rows(commits)
        with self._write(wakes=bool(commits), durable=bool(commits)) as conn:
            lost = claims.commit(conn, rows, _latest(commits)) if rows else []
            chosen = claims.claim(conn, claim)
        return lost, claims.claimed(chosen)

    def process_update(
        self,
        process_id: str,
        expected_version: int,
        change: Change,
        now: float,
        *,
        revoke_lease: bool = False,
    ) -> bool:
        with self._write() as conn:
            return admin.update(
                conn, process_id, expected_version, change, now, revoke_lease=revoke_lease
            )

    def process_update_many(self, updates: Sequence[Update]) -> list[str]:
        if not updates:
            return []
        with self._write() as conn:
            return admin.update_many(conn, updates)

    # --- task graphs ----------------------------------------------------------------------
    def dependencies_of(self, process_ids: Sequence[str]) -> dict[str, list[DependencyRow]]:
        if not process_ids:
            return {}
        with self._read() as conn:
            return graphs.dependencies_of(conn, process_ids)

    def process_resume_dependents(self, root_id: str, now: float) -> list[str]:
        with self._write() as conn:
            return graphs.resume_dependents(conn, root_id, now)

    def rate_take(self, bucket: str, rate: Rate, now: float) -> float:
        with self._write(wakes=False) as conn:
            conn.execute(Q["rate_bucket_new"], (bucket, rate.burst, now))
            tokens, updated_at = conn.execute(Q["rate_bucket"], (bucket,)).fetchone()
            left, wait = rates.take(tokens, updated_at, now, rate)
            conn.execute(Q["rate_bucket_set"], (left, max(now, updated_at), bucket))
        return wait

    def process_edges(self, process_id: str) -> tuple[list[str], list[str]]:
        with self._read() as conn:
            return graphs.dependency_ids(conn, process_id), graphs.dependent_ids(conn, process_id)

    def batch_get(self, batch_id: str) -> BatchInfo | None:
        with self._read() as conn:
            return graphs.batch_get(conn, batch_id)

    def batch_by_custom_id(self, client_id: str, custom_id: str) -> BatchInfo | None:
        with self._read() as conn:
            return graphs.batch_by_custom_id(conn, client_id, custom_id)

    def batch_counts(self, batch_id: str) -> dict[Status, int]:
        with self._read() as conn:
            return graphs.batch_counts(conn, batch_id)

    def batch_graph(self, batch_id: str) -> tuple[list[Process], list[tuple[str, str]]]:
        with self._read() as conn:
            return graphs.batch_processes(conn, batch_id), graphs.batch_edges(conn, batch_id)

    def process_timed_out(self, now: float, limit: int) -> list[TimedOut]:
        with self._read() as conn:
            return admin.timed_out(conn, now, limit)

    def process_prune(self, finished_before: float) -> int:
        with self._write() as conn:
            return admin.prune(conn, finished_before)

    def process_prunable(self, finished_before: float) -> dict[str, int]:
        with self._read() as conn:
            return admin.prunable(conn, finished_before)

    def process_prune_expired(self, cutoffs: Mapping[str, float], limit: int) -> int:
        if not cutoffs or limit <= 0:
            return 0
        # A look first, without the write lock: most sweeps find nothing to delete.
        with self._read() as conn:
            if not admin.expired(conn, cutoffs, 1):
                return 0
        with self._write(wakes=False) as conn:
            return admin.prune_ids(conn, admin.expired(conn, cutoffs, limit))

    # --- schedules -----------------------------------------------------------------------
    def schedule_list(self) -> list[ScheduleState]:
        with self._read() as conn:
            return schedules.list_schedules(conn)

    def schedule_fire(self, firing: ScheduleFiring) -> list[Inserted] | None:
        if len(firing.processes) != len(firing.occurrences):
            raise ValueError("schedule_fire: one occurrence per process")
        with self._write(wakes=bool(firing.processes)) as conn:
            return schedules.fire(conn, firing)

    # --- leases --------------------------------------------------------------------------
    def lease_renew_many(
        self,
        owner: str,
        tokens: Mapping[str, int],
        now: float,
        lease_seconds: float,
        heartbeats: Mapping[str, float] | None = None,
        progress: Mapping[str, Progress] | None = None,
    ) -> Renewal:
        if not tokens:
            return Renewal(frozenset(), frozenset())
        with self._write(wakes=False, durable=False) as conn:
            return leases.renew_many(
                conn, owner, tokens, now, lease_seconds, heartbeats or {}, progress or {}
            )

    def lease_release_many(self, tokens: Mapping[str, int], now: float) -> list[str]:
        with self._write() as conn:
            return leases.release_many(conn, tokens, now)

    def leader_acquire(self, name: str, owner: str, now: float, ttl: float) -> bool:
        with self._write(wakes=False, durable=False) as conn:
            return leases.leader_acquire(conn, name, owner, now, ttl)

    # --- history -------------------------------------------------------------------------
    def history_list(
        self, process_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Event]:
        with self._read() as conn:
            return reads.history(conn, process_id, offset, limit)

    def history_append(self, events: Sequence[Event]) -> None:
        with self._write(wakes=False) as conn:
            reads.append_history(conn, events)

    # --- queues --------------------------------------------------------------------------
    def queue_pause(self, queue: str, paused: bool) -> None:
        with self._write() as conn:
            queues.pause(conn, queue, paused)

    def queue_paused(self) -> list[str]:
        with self._read() as conn:
            return queues.paused(conn)

    def queue_counts(self) -> dict[str, dict[Status, int]]:
        with self._read() as conn:
            return queues.counts(conn)

    def process_stats(self, since: float, client_id: str | None = None) -> ProcessStats:
        with self._read() as conn:
            return tokens.stats(conn, since, client_id)

    # --- tokens --------------------------------------------------------------------------
    # A token creates no work: its writes wake nobody.
    def token_insert(self, token: TokenInfo, token_hash: str) -> None:
        with self._write(wakes=False) as conn:
            tokens.insert(conn, token, token_hash)

    def token_by_hash(self, token_hash: str) -> TokenInfo | None:
        with self._read() as conn:
            return tokens.by_hash(conn, token_hash)

    def token_list(self) -> list[TokenInfo]:
        with self._read() as conn:
            return tokens.list_tokens(conn)

    def token_revoke(self, token_id: str, now: float) -> bool:
        with self._write(wakes=False) as conn:
            return tokens.revoke(conn, token_id, now)

    # --- the worker protocol's claims ------------------------------------------------------
    def worker_claim_get(self, client: str, claim_id: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(Q["worker_claim_get"], (client, claim_id)).fetchone()
            return None if row is None else str(row[0])

    def worker_claim_put(
        self, client: str, claim_id: str, answer: str, now: float, keep: float
    ) -> str:
        with self._write(wakes=False) as conn:
            conn.execute(Q["worker_claim_prune"], (now - keep,))
            conn.execute(Q["worker_claim_put"], (client, claim_id, answer, now))
            row = conn.execute(Q["worker_claim_get"], (client, claim_id)).fetchone()
            return str(row[0])

    # --- workers -------------------------------------------------------------------------
    # The registry creates no work: its writes wake nobody.
    def worker_register(self, worker: WorkerInfo) -> None:
        with self._write(wakes=False) as conn:
            workers.register(conn, worker)

    def worker_seen(self, owner: str, now: float, running: Sequence[str]) -> bool:
        # As often as lease renewals, and as little worth an fsync: a power loss that
        # forgets it also stopped the worker.
        with self._write(wakes=False, durable=False) as conn:
            return workers.seen(conn, owner, now, running)

    def worker_remove(self, owner: str) -> None:
        with self._write(wakes=False) as conn:
            workers.remove(conn, owner)

    def worker_list(self) -> list[WorkerInfo]:
        with self._read() as conn:
            return workers.list_workers(conn)

    def worker_prune(self, seen_before: float) -> int:
        with self._write(wakes=False) as conn:
            return workers.prune(conn, seen_before)


def _latest(commits: Sequence[IterationCommit]) -> float:
    """The time of a batch of commits: when the last of them was decided."""
    return max((c.now for c in commits), default=0.0)
