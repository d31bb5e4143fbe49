"""The worker: claim runnable processes, run one iteration each, commit the outcome.

One loop thread talks to the database: it claims as many processes as it has free
slots in one round trip and commits every finished iteration in one transaction.
Handlers run on a fixed set of slot threads. A renewer thread extends the leases of
running iterations (this is what proves the worker alive) and tells handlers when
their process was asked to cancel or their lease was lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from corral import model
from corral.context import IterationSignals
from corral.errors import StorageUnavailable, UsageError
from corral.iteration import run_iteration
from corral.model import Change, ErrorInfo, Event
from corral.recovery import Recovery
from corral.storage.base import Claim, Claimed, IterationCommit

if TYPE_CHECKING:
    from corral.app import App

log = logging.getLogger("corral.worker")

#: After a claim, how long the loop may wait for running iterations to finish so that
#: the next exchange commits them together (one transaction, one fsync, for many).
LINGER = 0.002

#: While the database is unreachable the loop waits this long between tries, doubling the
#: wait up to the second number (seconds).
BACKOFF = (0.1, 5.0)


@dataclass
class WorkerStats:
    iterations: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    stopped_by: str = ""


@dataclass
class _InFlight:
    claimed: Claimed
    signals: IterationSignals
    events: tuple[Event, ...] = ()


@dataclass
class WorkerOptions:
    concurrency: int = 1
    #: Exit when nothing is runnable (the crontab mode) instead of waiting for work.
    once: bool = False
    #: Stop claiming after this many seconds; running iterations still finish.
    max_time: float | None = None
    #: Stop claiming once resident memory passes this many megabytes.
    max_memory_mb: float | None = None
    #: Longest idle wait between claims: bounds how late an expired lease or a future
    #: run_at is noticed when no write wakes the worker sooner.
    poll_interval: float = 1.0
    #: Seconds running iterations get to finish after a stop request.
    grace: float = 30.0
    #: How often this worker offers to run the recovery sweep (timeouts).
    sweep_interval: float = 1.0
    process_ids: Sequence[str] | None = None
    queues: Sequence[str] | None = None
    #: Who holds the leases this worker takes: host, pid and a random part.
    owner: str = field(
        default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )

    def check(self) -> None:
        """Raise UsageError naming the first option that is wrong."""
        c = self.concurrency
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise UsageError(f"concurrency must be an integer >= 1, not {c!r}")
        for name in ("max_time", "max_memory_mb", "poll_interval", "grace", "sweep_interval"):
            value = getattr(self, name)
            if value is None and name in ("max_time", "max_memory_mb"):
                continue
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
            if not ok and not (name == "grace" and value == 0):
                raise UsageError(f"{name} must be a number > 0, not {value!r}")


class Worker:
    def __init__(
        self,
        app: App,
        options: WorkerOptions | None = None,
        until: Callable[[], bool] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.options = options or WorkerOptions()
        self.options.check()
        self.storage = app.storage
        self.stats = WorkerStats()
        self._until = until
        self._tick = tick
        self._in_flight: dict[str, _InFlight] = {}
        self._tasks: queue.SimpleQueue[_InFlight | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_InFlight, Change]] = queue.SimpleQueue()
        self._finished = threading.Condition()  # notified when an iteration finishes
        self._stop = threading.Event()
        self._halt = threading.Event()  # second signal: release at once, no grace
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        #: Iterations whose lease is gone but whose handler still runs (a thread cannot
        #: be stopped): they hold a slot thread, and nothing they return is committed.
        self._abandoned = 0
        self.recovery = Recovery(app, self.options.owner, self.options.sweep_interval)
        self._outage = _Outage()

    # --- control -------------------------------------------------------------------------
    def stop(self, *, immediately: bool = False) -> None:
        """Stop claiming; running iterations get `grace` seconds (none if `immediately`)."""
        if self._stop.is_set() or immediately:
            self._halt.set()
        self._stop.set()
        self.storage.notify_local()

    def run(self) -> WorkerStats:
        opts = self.options
        started = time.monotonic()
        self._start_threads()
        log.info("worker %s started (concurrency %d)", opts.owner, opts.concurrency)
        try:
            while not self._stop.is_set():
                try:
                    reason = self._budget_spent(started)
                    if reason:
                        self.stats.stopped_by = reason
                        break
                    claimed = self._exchange() + self.recovery.maybe_sweep()
                    self._outage.over()
                    if self._tick:
                        self._tick()
                    if claimed:
                        self._gather()
                        continue
                    if not self._in_flight and (opts.once or (self._until and self._until())):
                        # Last look: timeouts that expired meanwhile may have made work.
                        if opts.once and self.recovery.maybe_sweep(force=True):
                            continue
                        self.stats.stopped_by = "idle" if opts.once else "done"
                        break
                    self.storage.wait_for_change(opts.poll_interval)
                except StorageUnavailable as exc:
                    # The database went away (a restart, a network cut). A claim that failed
                    # claimed nothing we know of (if it landed unseen, those leases expire and
                    # the next claim anywhere takes them over); finished iterations wait in
                    # `_done`. Running handlers carry on. Wait, then try again.
                    self._outage.wait(exc, self._stop)
            else:
                self.stats.stopped_by = "signal"
            self._drain(opts.grace)
        finally:
            self._stop_threads()
        log.info("worker %s stopped (%s): %s", opts.owner, self.stats.stopped_by, self.stats)
        return self.stats

    # --- claiming ------------------------------------------------------------------------
    def _exchange(self) -> int:
        """One round trip: commit the iterations that finished, claim what fits in the
        free slots. Returns how many processes were claimed."""
        commits = self._collect_finished()
        free = self.options.concurrency - len(self._in_flight) - self._abandoned
        if free <= 0:
            if commits:
                self._commit(commits)
            return 0
        claim = Claim(
            owner=self.options.owner,
            now=self.app.clock(),
            lease_seconds=self.app.lease_seconds,
            limit=free,
            process_ids=self.options.process_ids,
            queues=self.options.queues,
        )
        try:
            lost, claimed = self.storage.process_commit_and_claim(commits, claim)
        except StorageUnavailable:
            if not commits:
                raise
            self._commit(commits, unknown=True)  # retried as _commit explains
            return 0
        self._account(commits, set(lost), unknown=False)
        immediate = [commit for c in claimed if (commit := self._dispatch(c)) is not None]
        if immediate:
            self._commit(immediate)
        return len(claimed)

    def _dispatch(self, c: Claimed) -> IterationCommit | None:
        """Start the iteration in a slot, or return the commit that settles it at once."""
        process, now = c.process, self.app.clock()
        registry = self.app.registry
        job = registry.jobs.get(process.job)
        events: list[Event] = []
        if c.recovered:
            events.append(model.lease_expired_event(process, now, c.previous_owner))
        if process.attempt > 1:
            events.append(
                Event(
                    "attempt",
                    now,
                    process.status,
                    process.status,
                    process.attempt,
                    {"cause": "lease_expired" if c.recovered else "retry"},
                )
            )
        change: Change | None = None
        if job is None:
            error = ErrorInfo(
                "UnknownJob",
                f"job {process.job!r} is not registered in the app this worker runs",
                reason="unknown_job",
            )
            change = model.fail(
                Change.of(process).with_(error=error),
                now,
                has_rollback=registry.has_rollback(None),
                reason="unknown_job",
            )
        elif c.recovered:
            change = model.recovered(
                process,
                now,
                c.previous_owner,
                max_attempts=job.max_attempts,
                has_rollback=registry.has_rollback(job),
            )
        if (
            change is None
            and job is not None
            and process.cancel_requested
            and process.status is not model.Status.FAILING
        ):
            change = model.cancel_now(process, now, has_rollback=registry.has_rollback(job))
        if change is not None:
            change = change.with_(events=(*events, *change.events))
            return IterationCommit(process.id, c.token, change, now)
        flight = _InFlight(c, IterationSignals(), tuple(events))
        with self._lock:
            self._in_flight[process.id] = flight
        self._tasks.put(flight)
        return None

    def _gather(self) -> None:
        """Wait, at most LINGER, until every running iteration has finished, so that the
        next exchange commits them in one transaction rather than the first one or two
        to finish. Handlers that take longer than LINGER are committed as they come."""
        running = len(self._in_flight)
        if not running:
            return
        with self._finished:
            self._finished.wait_for(
                lambda: self._done.qsize() >= running or self._stop.is_set(), timeout=LINGER
            )

    # --- committing ----------------------------------------------------------------------
    def _commit_finished(self) -> None:
        commits = self._collect_finished()
        if commits:
            self._commit(commits)

    def _collect_finished(self) -> list[IterationCommit]:
        """The commits of the iterations whose handlers returned since the last look."""
        commits = []
        while True:
            try:
                flight, change = self._done.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                if self._in_flight.pop(flight.claimed.process.id, None) is None:
                    self._abandoned -= 1  # its slot thread is free again
            if flight.signals.lost:
                # Lost, or timed out here: the commit could not land; the next claim or
                # the recovery sweep deals with the process.
                self.stats.lost += 1
                continue
            if flight.events:
                change = change.with_(events=(*flight.events, *change.events))
            commits.append(
                IterationCommit(
                    flight.claimed.process.id, flight.claimed.token, change, self.app.clock()
                )
            )
        return commits

    def _commit(self, commits: list[IterationCommit], *, unknown: bool = False) -> None:
        # A commit that fails with StorageUnavailable has an unknown outcome: the statement
        # may have committed before the connection broke. It is retried as it is, same
        # tokens, until it gets an answer. That is safe because a commit is fenced by its
        # token and releases the lease: if the first try landed, the retry finds the lease
        # released (or, if a later claim took the process, the token moved on) and reports
        # the process "lost", writing nothing twice. So after an unknown outcome, "lost"
        # means: landed on an earlier try, or never landed and another worker took the
        # process over once our lease expired (it runs that iteration again: at-least-once).
        # Either way there is nothing left to do, and it is not reported as a lease loss
        # (a lease_lost event would be false if it landed). Only a halt (second signal)
        # gives up: then the leases expire and the iterations run again elsewhere.
        # `unknown`: an earlier try (e.g. a commit-and-claim round trip) already failed so.
        while True:
            try:
                lost = set(self.storage.process_commit_many(commits))
                break
            except StorageUnavailable as exc:
                if self._halt.is_set():
                    log.warning("%d finished iterations not committed: %s", len(commits), exc)
                    return
                unknown = True
                self._outage.wait(exc, self._halt)
        self._outage.over()
        self._account(commits, lost, unknown=unknown)

    def _account(self, commits: list[IterationCommit], lost: set[str], *, unknown: bool) -> None:
        """Count the outcomes and note, in the history, the commits refused for a lost lease."""
        notes = []
        for commit in commits:
            self.stats.iterations += 1
            if commit.process_id in lost and unknown:
                log.debug(
                    "process %s: committed on an earlier try, or taken over", commit.process_id
                )
            elif commit.process_id in lost:
                self.stats.lost += 1
                log.warning(
                    "process %s: lease lost, this iteration's outcome was discarded",
                    commit.process_id,
                )
                notes.append((commit.process_id, commit.token, "commit refused"))
            elif commit.change.status is model.Status.COMPLETED:
                self.stats.completed += 1
            elif commit.change.status in (model.Status.FAILED, model.Status.CANCELED):
                self.stats.failed += 1
        if notes:
            self._note_lost(notes)

    # --- slots and the lease renewer -----------------------------------------------------
    def _start_threads(self) -> None:
        for i in range(self.options.concurrency):
            t = threading.Thread(target=self._slot, name=f"corral-slot-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        renewer = threading.Thread(target=self._renew, name="corral-renewer", daemon=True)
        renewer.start()
        self._renewer = renewer

    def _stop_threads(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        self._halt.set()
        self._renewer.join(timeout=5)

    def _slot(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while True:
                flight = self._tasks.get()
                if flight is None:
                    return
                process = flight.claimed.process
                job = self.app.registry.jobs[process.job]
                change = run_iteration(
                    self.app.registry, job, process, flight.signals, self.app.clock, loop
                )
                self._done.put((flight, change))
                with self._finished:
                    self._finished.notify()
                self.storage.notify_local()
        finally:
            loop.close()

    def _renew(self) -> None:
        interval = max(self.app.lease_seconds / 3, 0.05)
        while not self._halt.wait(interval):
            with self._lock:
                flights = dict(self._in_flight)
            now, mono = self.app.clock(), time.monotonic()
            held: dict[str, int] = {}
            beats: dict[str, float] = {}
            for pid, f in flights.items():
                if _over_time(f, now, mono):
                    # start_to_close or heartbeat_timeout: stop proving this one alive.
                    f.signals.lose_lease()
                if f.signals.lost:
                    self._abandon(pid, f)
                    continue
                held[pid] = f.claimed.token
                beats[pid] = now - (mono - f.signals.last_heartbeat)
            if not held:
                continue
            try:
                renewal = self.storage.lease_renew_many(
                    self.options.owner, held, now, self.app.lease_seconds, beats
                )
            except StorageUnavailable:  # the database is away (logged once): next round
                continue
            except Exception:  # the database may be briefly away; try again next round
                log.exception("could not renew leases")
                continue
            # A refused renewal is a lost lease only for an iteration still running. One
            # that finished meanwhile was committed by the loop (which released the lease:
            # hence the refusal) or is being committed, fenced: the loop notes a real loss.
            lost = [pid for pid in renewal.lost if self._abandon(pid, flights[pid])]
            if lost:
                self._note_lost(
                    [(pid, flights[pid].claimed.token, "renewal refused") for pid in lost]
                )
            for pid in renewal.cancel_requested:
                flights[pid].signals.request_cancel()

    def _note_lost(self, losses: Iterable[tuple[str, int, str]]) -> None:
        """Write lease losses (process id, token, why) into the history. Unfenced: a note
        changes no process, so it may be written whoever holds the lease now."""
        now = self.app.clock()
        owner = self.options.owner
        events = [
            Event("lease_lost", now, None, None, 0, {"owner": owner, "token": t, "why": why}, pid)
            for pid, t, why in losses
        ]
        try:
            self.storage.history_append(events)
        except StorageUnavailable:  # only notes: the process itself is safe either way
            log.debug("%d lease_lost notes not written: the database is unavailable", len(events))

    def _abandon(self, pid: str, flight: _InFlight) -> bool:
        """Give up on a running iteration whose lease is gone: its handler is told, and its
        slot stays busy until the handler returns. False if it is no longer running
        (finished, or followed by the process's next iteration): then nothing changes."""
        with self._lock:
            if self._in_flight.get(pid) is not flight:
                return False
            flight.signals.lose_lease()  # before it leaves _in_flight: see _collect_finished
            del self._in_flight[pid]
            self._abandoned += 1
        self.storage.notify_local()
        return True

    # --- stopping ------------------------------------------------------------------------
    def _budget_spent(self, started: float) -> str:
        opts = self.options
        if opts.max_time is not None and time.monotonic() - started >= opts.max_time:
            return "max-time"
        if opts.max_memory_mb is not None and resident_mb() >= opts.max_memory_mb:
            return "max-memory"
        return ""

    def _drain(self, grace: float) -> None:
        """Let running iterations finish within `grace`, then give back the leases left."""
        deadline = time.monotonic() + grace
        while self._in_flight and not self._halt.is_set() and time.monotonic() < deadline:
            self._commit_finished()
            if self._in_flight:
                self.storage.wait_for_change(min(0.1, max(deadline - time.monotonic(), 0)))
        self._commit_finished()
        with self._lock:
            left = {pid: f.claimed.token for pid, f in self._in_flight.items()}
            self._in_flight.clear()
        if left:
            try:
                released = self.storage.lease_release_many(left, self.app.clock())
            except StorageUnavailable as exc:
                log.warning("%d leases not given back, they will expire: %s", len(left), exc)
                return
            self.stats.released += len(released)
            log.info("released %d leases for other workers to continue", len(released))


class _Outage:
    """The loop's side of a database outage: one line when it starts and one when it ends
    (not one per try), and a wait between tries that doubles from BACKOFF[0] to BACKOFF[1]."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.since = 0.0

    def wait(self, exc: StorageUnavailable, until: threading.Event) -> None:
        if not self.delay:
            self.delay, self.since = BACKOFF[0], time.monotonic()
            # The storage logs the outage itself, as a warning: this line says what we do.
            log.info("database unavailable: claims and commits wait and retry (%s)", exc)
        else:
            log.debug("database still unavailable: %s", exc)
        until.wait(self.delay)
        self.delay = min(self.delay * 2, BACKOFF[1])

    def over(self) -> None:
        if self.delay:
            log.info("database available again after %.1f s", time.monotonic() - self.since)
            self.delay = 0.0


def _over_time(flight: _InFlight, now: float, mono: float) -> bool:
    p = flight.claimed.process
    if (
        p.start_to_close is not None
        and p.claimed_at is not None
        and (now - p.claimed_at > p.start_to_close)
    ):
        return True
    return p.heartbeat_timeout is not None and mono - flight.signals.last_heartbeat > (
        p.heartbeat_timeout
    )


def resident_mb() -> float:
    """Current resident memory of this process, in megabytes."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # not Linux: peak instead of current, still a safe upper bound
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
