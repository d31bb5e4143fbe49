"""The storage interface (docs/architecture.md): entity + verb, one params object where it helps.

A backend translates these verbs into atomic, fenced writes. It never decides a
transition: the `Change` it applies was computed by `corral.model`.

Every time is a float of seconds since the epoch, passed in by the caller, so
that tests can drive a clock of their own.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Self

from corral.graph import DependencyRow
from corral.model import JSON, Change, Event, Process, Status
from corral.rates import Rate
from corral.storage.fast import positional_constructor


@dataclass(frozen=True, slots=True)
class NewProcess:
    """A process to insert. `params` is canonical JSON-compatible data."""

    id: str
    job: str
    params: dict[str, JSON]
    created_at: float
    run_at: float
    status: Status = Status.STARTING
    priority: int = 0
    queue: str = "default"
    custom_id: str | None = None
    client_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    depends_on: Sequence[str] = ()
    deadline_at: float | None = None
    schedule_to_close: float | None = None
    start_to_close: float | None = None
    heartbeat_timeout: float | None = None
    #: `codec.dumps(params)` when the caller has it already (the App does: it measures the
    #: parameters' size from it), so that a backend need not encode them again.
    params_json: str | None = None
    #: Task graphs (docs/graphs.md): what a failed dependency does to it (`cancel` or
    #: `run`), the batch it belongs to, and (set by the backend) its unfinished
    #: dependencies. `depends_on` names processes that exist or earlier ones of the batch.
    on_dependency_failure: str = "cancel"
    batch_id: str | None = None
    pending_dependencies: int = 0
    #: At most `concurrency_limit` processes of `concurrency_key` leased at once
    #: (docs/flow-control.md); both None for a process of a job without `concurrency`.
    concurrency_key: str | None = None
    concurrency_limit: int | None = None


@dataclass(frozen=True, slots=True)
class SubmitShared:
    """What the processes of one submit call share: the job and the resolved options. A
    backend given one with `process_insert_many` knows that every process of the batch
    was made by `new_process`, and binds these values once for the whole batch."""

    job: str
    created_at: float
    run_at: float
    priority: int
    queue: str
    client_id: str
    tags: dict[str, str]
    deadline_at: float | None
    schedule_to_close: float | None
    start_to_close: float | None
    heartbeat_timeout: float | None
    #: The job's `concurrency` (None: none); each process's key comes with it.
    concurrency_limit: int | None = None

    def new_process(
        self,
        process_id: str,
        params: dict[str, JSON],
        params_json: str,
        custom_id: str | None,
        concurrency_key: str | None = None,
    ) -> NewProcess:
        return _new_process(
            process_id, self.job, params, self.created_at, self.run_at, Status.STARTING,
            self.priority, self.queue, custom_id, self.client_id, self.tags, (),
            self.deadline_at, self.schedule_to_close, self.start_to_close,
            self.heartbeat_timeout, params_json, "cancel", None, 0,
            None if self.concurrency_limit is None else concurrency_key, self.concurrency_limit,
        )  # fmt: skip


#: NewProcess(...) with every field, positional: a bulk submit makes thousands.
def _new_process(*values: object) -> NewProcess:
    return _NEW_PROCESS(*values)


def evolve(new: NewProcess, **changes: object) -> NewProcess:
    """`new` with some fields changed: `dataclasses.replace`, in a tenth of its time (a
    graph of 100,000 nodes makes two per node)."""
    return _NEW_PROCESS(*[changes.get(name, getattr(new, name)) for name in _NEW_FIELDS])


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch to insert with its processes (`app.batch()`): one graph, written in one
    transaction. With a `custom_id` already used by the same client, nothing is inserted
    and the processes of that batch are returned as `existing`."""

    id: str
    client_id: str = ""
    custom_id: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch as stored."""

    id: str
    client_id: str
    custom_id: str | None
    created_at: float
    size: int


@dataclass(frozen=True, slots=True)
class Inserted:
    process: Process
    outcome: Literal["created", "existing"]


@dataclass(frozen=True, slots=True)
class Claim:
    owner: str
    now: float
    lease_seconds: float
    limit: int = 1
    #: Only these processes (used by `execute` to drive one process).
    process_ids: Sequence[str] | None = None
    queues: Sequence[str] | None = None
    #: Only processes of these jobs: the ones the claiming worker registers. A process of a
    #: job no running worker knows stays queued until one that knows it comes. None: any.
    jobs: Sequence[str] | None = None
    #: At most this many processes whose lease expired (a worker died mid-iteration). A
    #: worker takes one at a time, so that a process that kills its worker (os._exit, the
    #: OOM killer) is not claimed again beside the ones it took down with it.
    max_recovered: int | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A process under a new lease. `recovered` is true when the previous lease had expired."""

    process: Process
    token: int
    recovered: bool
    previous_owner: str | None


@dataclass(frozen=True, slots=True)
class IterationCommit:
    """What an iteration decided, written only if `token` still holds the lease."""

    process_id: str
    token: int
    change: Change
    now: float
    #: Children the iteration spawned (`ctx.spawn`): inserted with the commit, and only if
    #: it lands; the process then waits for them (docs/graphs.md).
    spawn: tuple[NewProcess, ...] = ()


@dataclass(frozen=True, slots=True)
class Update:
    """An administrative change (cancel, retry, timeout) of one process, applied only if
    nobody wrote the row since `expected_version`. `revoke_lease`: also drop the lease and
    move the token on, so that the worker holding it can no longer write."""

    process_id: str
    expected_version: int
    change: Change
    now: float
    revoke_lease: bool = False


@dataclass(frozen=True, slots=True)
class Renewal:
    lost: frozenset[str]
    cancel_requested: frozenset[str]


@dataclass(frozen=True, slots=True)
class TimedOut:
    """A process one of whose timeouts (docs/timeouts.md) has expired, and which one."""

    process: Process
    cause: str  # process_timeout, schedule_to_close, start_to_close or heartbeat_timeout


#: A handler's progress: (done, total); a total of None: unknown, or the stored one.
Progress = tuple[float, float | None]


@dataclass(frozen=True, slots=True)
class ProcessFilter:
    status: Status | None = None
    job: str | None = None
    tags: Mapping[str, str] | None = None
    limit: int = 50
    #: Newest first by default, as a person looking at a list expects.
    newest_first: bool = True
    queue: str | None = None
    #: Processes submitted with this custom id (by any client unless `client_id` is set).
    custom_id: str | None = None
    client_id: str | None = None
    #: Ids that start with this text (a person typing a short id); matched literally.
    id_prefix: str | None = None
    #: Processes whose error has this reason (`invalid`, `timeout`, `error`...).
    reason: str | None = None
    #: Created at or after `created_from`, and before `created_until`.
    created_from: float | None = None
    created_until: float | None = None
    #: Keyset pagination: only the processes past this (created_at, id) in the list's
    #: order, the last row of the page before (the HTTP API's cursor).
    page_after: tuple[float, str] | None = None


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """A process holding a slot of a concurrency key: its live lease."""

    process_id: str
    lease_owner: str | None
    lease_expires_at: float


@dataclass(frozen=True, slots=True)
class ConcurrencySlots:
    """A process's concurrency key, its limit, and who holds the key's slots now (the live
    leases of its processes, soonest to expire first)."""

    key: str
    limit: int
    holders: Sequence[KeyHolder]

    @property
    def full(self) -> bool:
        return len(self.holders) >= self.limit


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process as the registry knows it: who it is, what it serves, what it runs.

    A worker registers when it starts, refreshes `last_seen_at` and `running` with its
    lease renewals, and removes its row when it stops; a row that stops being refreshed
    is a worker that died (readers judge staleness against their own clock)."""

    owner: str  # the worker's id: the name its leases carry
    host: str
    pid: int
    app: str
    jobs: Sequence[str]
    queues: Sequence[str] | None  # None: every queue
    concurrency: int
    started_at: float
    last_seen_at: float
    running: Sequence[str] = ()  # ids of the processes it holds leases on

    def __post_init__(self) -> None:
        # Tuples, whatever a caller or a backend's JSON decoder gave: two records of the
        # same worker compare equal.
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "running", tuple(self.running))
        if self.queues is not None:
            object.__setattr__(self, "queues", tuple(self.queues))


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A cron schedule's row (docs/graphs.md, "Schedules"): the latest occurrence handled
    (`handled_until`: fired or dropped, or when the schedule was first seen), the last one
    fired and its process, that process's status now (None: none fired, or pruned since),
    and the row's version, which fences two sweepers."""

    name: str
    handled_until: float
    version: int
    last_occurrence: float | None = None
    last_process_id: str | None = None
    last_status: Status | None = None


@dataclass(frozen=True, slots=True)
class ScheduleFiring:
    """What one sweep writes for one schedule, in one transaction, only if the schedule's
    row is still at `expected_version` (0: it has no row yet): `handled_until` moves on,
    and `processes` (one per occurrence fired, oldest first; `occurrences` holds their
    instants) are inserted as `process_insert_many` inserts them (custom ids idempotent)."""

    name: str
    expected_version: int
    handled_until: float
    now: float
    processes: Sequence[NewProcess] = ()
    occurrences: Sequence[float] = ()


#: `runnable_backlog` counts at most this many processes (of each claim class): enough to
#: tell any supervisor to grow to its maximum, and a bounded walk of an index.
BACKLOG_CAP = 10_000


@dataclass(frozen=True, slots=True)
class ConnectionBudget:
    """A database's connections: how many clients it accepts in all (its limit less the
    slots reserved for superusers), how many are open now, and how many one worker's
    storage may open at most (its pool and its listener)."""

    limit: int
    in_use: int
    per_worker: int


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token of the HTTP API as stored, without the token itself (only its hash is kept):
    the client it acts for, whether it may see every client's processes (`admin`) and use
    the worker protocol (`worker`, from `queues`; None: every queue)."""

    id: str
    client: str
    admin: bool
    worker: bool
    queues: tuple[str, ...] | None
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class ProcessStats:
    """Counts of processes: by (queue, job, status), and of completions by minute (the
    minute's start, in epoch seconds) since a time."""

    counts: Sequence[tuple[str, str, Status, int]]
    completions: Sequence[tuple[float, int]]


class Storage(abc.ABC):
    """One database. Safe to share between threads; each backend says how it is for processes."""

    url: str

    def now(self) -> float:
        """The time by the database's clock, in seconds since the epoch: what leases, `run_at`
        and timeouts are compared with. Every worker of a database uses it, so that
        machines whose clocks disagree still agree on who holds a lease. SQLite serves one
        machine: its clock is the local one."""
        return time.time()

    # --- schema ---------------------------------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> int:
        """Create or upgrade the schema; returns the schema version now in place."""

    # --- processes ------------------------------------------------------------------------
    @abc.abstractmethod
    def process_insert_many(
        self,
        processes: Sequence[NewProcess],
        *,
        shared: SubmitShared | None = None,
        connection: object | None = None,
        batch: NewBatch | None = None,
    ) -> list[Inserted]:
        """Insert processes and their first history event in one transaction.

        `shared`: what the processes share, when they all come from one submit call (see
        SubmitShared); a backend may then bind it once rather than per process.

        A process with a `custom_id` already used by the same client is not inserted:
        the existing one is returned with outcome `existing` if it has the same job
        and parameters, else `CustomIdConflict` is raised and nothing is written.

        `batch`: the processes form this batch (each one's `batch_id` names it).

        Processes with dependencies (`depends_on`) or in a batch start `waiting` with the
        count of their unfinished dependencies, or `starting` when none is left, or
        `canceled` at once when a dependency had already failed (docs/graphs.md); the
        dependencies are read and locked in the same transaction, so none can end unseen.
        A dependency that is neither an existing process nor an earlier one of the batch
        is a UsageError, and nothing is written.

        `connection`: transactional enqueue. The caller's own database
        connection, inside the caller's transaction: the processes, their history and
        their wake-up then exist if and only if the caller commits. Only the PostgreSQL
        backend accepts one (a `psycopg.Connection` to the same database and schema);
        SQLite and memory raise `UsageError("transactional enqueue needs the PostgreSQL
        backend")` when given one.
        """

    @abc.abstractmethod
    def process_get(self, process_id: str) -> Process | None: ...

    @abc.abstractmethod
    def process_list(self, where: ProcessFilter) -> list[Process]: ...

    @abc.abstractmethod
    def process_count(self, where: ProcessFilter) -> int:
        """How many processes `where` matches, ignoring its `limit` (a list says how many
        more there are past what it shows)."""

    @abc.abstractmethod
    def process_id_neighbors(self, ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
        """For each id, the stored ids just before and just after it in id order (None at
        either end): what a short id must differ from to name one process only."""

    @abc.abstractmethod
    def process_claim(self, claim: Claim) -> list[Claimed]:
        """Lease up to `claim.limit` runnable processes in claim order (docs/state-machine.md):
        expired leases, cancel requests, failing, ending, running, then starting.

        Runnable: status in CLAIMABLE, no live lease (none, or expired), `run_at <= now`,
        its queue not paused, and, for a process with a concurrency key, fewer live leases
        of its key than its limit, counting those this claim takes (docs/flow-control.md):
        atomically with the leases taken, whatever other claims run at the same time. Each
        claimed process gets a new (larger) lease token and `attempt + 1`.
        """

    @abc.abstractmethod
    def process_commit_many(self, commits: Sequence[IterationCommit]) -> list[str]:
        """Apply each commit if its token still holds the lease, releasing the lease.

        Returns the ids whose lease was lost (nothing of those was written). All or nothing:
        `StorageUnavailable` when the database is away (the outcome is unknown: the caller
        tries again as it is), `ValueRejected` when the database refused a value of some
        commit (nothing was written: the caller settles the commits one by one).
        """

    def process_commit_and_claim(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        """`process_commit_many` then `process_claim`: a worker's steady state. A backend
        that can do both in one transaction (one fsync, one round trip) overrides this."""
        lost = self.process_commit_many(commits) if commits else []
        return lost, self.process_claim(claim)

    @abc.abstractmethod
    def process_update(
        self,
        process_id: str,
        expected_version: int,
        change: Change,
        now: float,
        *,
        revoke_lease: bool = False,
    ) -> bool:
        """Apply an administrative change (cancel, retry, timeout) if nobody wrote the row
        since `expected_version`. False when the version moved on. The lease is left
        alone, unless `revoke_lease`: then it is dropped and the token moves on, so the
        worker that held it can no longer write."""

    def process_update_many(self, updates: Sequence[Update]) -> list[str]:
        """`process_update` for many processes (the recovery sweep's timeouts); the ids
        updated. A backend that can apply them in one transaction overrides this."""
        return [
            u.process_id
            for u in updates
            if self.process_update(
                u.process_id, u.expected_version, u.change, u.now, revoke_lease=u.revoke_lease
            )
        ]

    # --- task graphs ----------------------------------------------------------------------
    @abc.abstractmethod
    def dependencies_of(self, process_ids: Sequence[str]) -> dict[str, list[DependencyRow]]:
        """What each process sees of its dependencies (id, status, result, error), in id
        order; processes without dependencies are left out."""

    @abc.abstractmethod
    def process_resume_dependents(self, root_id: str, now: float) -> list[str]:
        """Resume, in one transaction, the processes that a cascade from `root_id` canceled
        (it was just retried): each one goes back to `waiting` for its dependencies that
        have not completed (or `starting` if none is left), dependencies before dependents;
        one that still depends on another failed or canceled process stays canceled. The
        ids resumed."""

    @abc.abstractmethod
    def rate_take(self, bucket: str, rate: Rate, now: float) -> float:
        """Take a token from a rate limit's bucket at `now`, in one transaction (the bucket
        is the fleet's): 0.0 when one was taken, else the seconds until one is due (and
        nothing taken). corral.rates.take does the arithmetic."""

    @abc.abstractmethod
    def process_edges(self, process_id: str) -> tuple[list[str], list[str]]:
        """The ids a process depends on, and the ids of the processes that depend on it."""

    @abc.abstractmethod
    def batch_get(self, batch_id: str) -> BatchInfo | None: ...

    @abc.abstractmethod
    def batch_by_custom_id(self, client_id: str, custom_id: str) -> BatchInfo | None: ...

    @abc.abstractmethod
    def batch_counts(self, batch_id: str) -> dict[Status, int]:
        """A batch's processes by status (statuses with none left out), from its counter
        rows, which triggers keep in step with every insert, status change and delete of
        its processes: a read of a few rows whatever the size of the graph."""

    def batch_counts_fold(self, limit: int) -> int:
        """Fold up to `limit` recorded moves into the counter rows, for a backend whose
        triggers record moves rather than update counters (PostgreSQL: a counter row
        updated by every commit would be hot); how many it folded. The recovery sweep calls
        it; counts read the same before and after."""
        return 0

    @abc.abstractmethod
    def batch_graph(self, batch_id: str) -> tuple[list[Process], list[tuple[str, str]]]:
        """A batch's processes (in id order) and its edges `(dependent, dependency)`."""

    @abc.abstractmethod
    def process_timed_out(self, now: float, limit: int) -> list[TimedOut]:
        """Non-terminal processes one of whose timeouts expired before `now`:
        `deadline_at`; `iteration_since + schedule_to_close`; and, for leased ones,
        `claimed_at + start_to_close` and `heartbeat_at + heartbeat_timeout`."""

    @abc.abstractmethod
    def process_prune(self, finished_before: float) -> int:
        """Delete terminal processes finished before the given time, with their history."""

    @abc.abstractmethod
    def process_prunable(self, finished_before: float) -> dict[str, int]:
        """What `process_prune` would delete now, by job (a dry run: nothing is written)."""

    @abc.abstractmethod
    def process_prune_expired(self, cutoffs: Mapping[str, float], limit: int) -> int:
        """Delete up to `limit` completed processes whose retention expired, oldest first:
        of each job in `cutoffs`, those finished before its time (other jobs' are left),
        with their history and edges, in one transaction; never one on which an unfinished
        process depends. Found by an index of completed processes by (job, finished_at),
        so the work is that of the processes deleted, not of the table. Returns how many."""

    # --- schedules ------------------------------------------------------------------------
    @abc.abstractmethod
    def schedule_list(self) -> list[ScheduleState]:
        """Every schedule's row, by name, with the status of its last process now."""

    @abc.abstractmethod
    def schedule_fire(self, firing: ScheduleFiring) -> list[Inserted] | None:
        """Apply `firing` in one transaction: if the schedule's row is still at
        `firing.expected_version` (0: no row yet), insert its processes and write the row
        (handled_until; the last occurrence fired and its process, if any fired; the
        version plus one); return what was inserted. Else (another sweeper moved it) write
        nothing and return None. A custom id conflict raises and writes nothing."""

    @abc.abstractmethod
    def runnable_backlog(
        self, jobs: Sequence[str] | None, queues: Sequence[str] | None, now: float
    ) -> tuple[int, float]:
        """How many processes a claim for `jobs` and `queues` (None: any) could take at
        `now`, and how long (seconds) the oldest of them has been claimable: what the
        supervisor scales on (docs/supervisor.md). The claim's predicates: a claimable
        status (so no process waiting on dependencies), an expired lease or none, `run_at`
        come (a rate limit holds a process back by moving it, once a worker met it), its
        queue not paused, its concurrency key not full. Found by the claim's partial
        indexes and counted up to BACKLOG_CAP rows of each, so that the work never grows
        with the table; the age is that of the oldest among the rows counted (0.0 when
        there is none)."""

    @abc.abstractmethod
    def process_concurrency(self, process_id: str, now: float) -> ConcurrencySlots | None:
        """The process's concurrency key and limit, and the live leases (expiring at or
        after `now`) of the processes of that key: what a claim counts
        (docs/flow-control.md). None for a process without a key, or no such process."""

    def connection_budget(self) -> ConnectionBudget | None:
        """What the database allows in connections, for a supervisor deciding how many
        workers it may start; None when there is no such limit (SQLite)."""
        return None

    # --- leases ---------------------------------------------------------------------------
    @abc.abstractmethod
    def lease_renew_many(
        self,
        owner: str,
        tokens: Mapping[str, int],
        now: float,
        lease_seconds: float,
        heartbeats: Mapping[str, float] | None = None,
        progress: Mapping[str, Progress] | None = None,
    ) -> Renewal:
        """Extend the leases this worker still holds; report lost ones and cancel requests.
        `heartbeats` gives, per process, the time of its handler's last heartbeat;
        `progress`, the (done, total) its handler reported since the last renewal (saved
        now so that a watcher sees it while the iteration runs; a total of None keeps the
        stored one). Nothing is written for a lease no longer held."""

    @abc.abstractmethod
    def leader_acquire(self, name: str, owner: str, now: float, ttl: float) -> bool:
        """Take or keep the named leadership (e.g. the recovery sweep) for `ttl` seconds.
        True if `owner` holds it now: one holder at a time across the fleet."""

    @abc.abstractmethod
    def lease_release_many(self, tokens: Mapping[str, int], now: float) -> list[str]:
        """Give leases back without committing (graceful shutdown): the try is not counted.
        Returns the ids released."""

    # --- history --------------------------------------------------------------------------
    @abc.abstractmethod
    def history_list(
        self, process_id: str, offset: int = 0, limit: int | None = None
    ) -> list[Event]:
        """A process's history, oldest first: `limit` events (all when None) after the
        first `offset`, read through the (process, id) index, not the whole history."""

    @abc.abstractmethod
    def history_append(self, events: Sequence[Event]) -> None:
        """Append events that change no process (a worker noting that it lost a lease)."""

    # --- queues ---------------------------------------------------------------------------
    @abc.abstractmethod
    def queue_pause(self, queue: str, paused: bool) -> None:
        """Pause or resume claims from a queue; `*` stands for every queue."""

    @abc.abstractmethod
    def queue_paused(self) -> list[str]: ...

    @abc.abstractmethod
    def queue_counts(self) -> dict[str, dict[Status, int]]:
        """Processes by queue and status (statuses with none are left out)."""

    @abc.abstractmethod
    def process_stats(self, since: float, client_id: str | None = None) -> ProcessStats:
        """Processes by queue, job and status, and the completions by minute since `since`;
        only those of `client_id` when given."""

    # --- tokens (the HTTP API) ------------------------------------------------------------
    @abc.abstractmethod
    def token_insert(self, token: TokenInfo, token_hash: str) -> None:
        """Store a token by its hash (the token itself is never stored)."""

    @abc.abstractmethod
    def token_by_hash(self, token_hash: str) -> TokenInfo | None:
        """The token whose hash this is, unless it was revoked."""

    @abc.abstractmethod
    def token_list(self) -> list[TokenInfo]:
        """Every token, revoked ones too, oldest first."""

    @abc.abstractmethod
    def token_revoke(self, token_id: str, now: float) -> bool:
        """Revoke the token: from now on no request carries it. False if there is no such
        token or it was revoked already."""

    # --- the worker protocol's claims (the HTTP API) -----------------------------------------
    @abc.abstractmethod
    def worker_claim_get(self, client: str, claim_id: str) -> str | None:
        """The answer (JSON text) a claim of this id gave this client, if it is kept."""

    @abc.abstractmethod
    def worker_claim_put(
        self, client: str, claim_id: str, answer: str, now: float, keep: float
    ) -> str:
        """Keep a claim's answer for `keep` seconds, forgetting older ones; the answer now
        kept under this id (an earlier one, if a concurrent claim of the same id won)."""

    # --- workers --------------------------------------------------------------------------
    @abc.abstractmethod
    def worker_register(self, worker: WorkerInfo) -> None:
        """Add the worker's row, or replace the row of the same `owner`."""

    @abc.abstractmethod
    def worker_seen(self, owner: str, now: float, running: Sequence[str]) -> bool:
        """Refresh the worker's `last_seen_at` and `running`. False if it has no row (a
        reader removed it as dead): the worker then registers again."""

    @abc.abstractmethod
    def worker_remove(self, owner: str) -> None:
        """Delete the worker's row (it stops); no error if there is none."""

    @abc.abstractmethod
    def worker_list(self) -> list[WorkerInfo]:
        """Every registered worker, oldest `started_at` first."""

    @abc.abstractmethod
    def worker_prune(self, seen_before: float) -> int:
        """Delete the rows of workers not seen since `seen_before` (long dead); how many."""

    # --- wake-ups -------------------------------------------------------------------------
    @abc.abstractmethod
    def change_epoch(self) -> int:
        """A number that moves on whenever something that may create work happens: a write
        through this object, or (as soon as this storage learns of it) through another
        connection. Read it before looking for work, then wait with it."""

    @abc.abstractmethod
    def wait_for_change(self, epoch: int, timeout: float) -> bool:
        """Block until something changed since `epoch` was read (by another connection, or
        through this object: see `notify_local`), or `timeout` seconds pass. Returns True if
        something changed; a spurious True is allowed, so callers look again rather than
        trust it. A change between reading the epoch and calling this is never missed.
        Cheap: this is how idle workers wait."""

    def notify_local(self) -> None:  # noqa: B027 - optional hook
        """Wake local waiters after a write made through this very object."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NEW_PROCESS = positional_constructor(NewProcess)
_NEW_FIELDS = tuple(f.name for f in dataclasses.fields(NewProcess))
