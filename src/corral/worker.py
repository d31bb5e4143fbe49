"""The worker: claim runnable processes, run one iteration each, commit the outcome.

One loop thread talks to the database: it claims as many processes as it has free
slots in one round trip and commits every finished iteration in one transaction.
Handlers run on slot threads, one iteration each at a time. A renewer thread extends the
leases of running iterations (this is what proves the worker alive) and tells handlers
when their process was asked to cancel or their lease was lost.

What no handler can do: kill the loop (whatever it raises or returns becomes its own
process's outcome, and a value the database refuses fails only the process it belongs
to), or take the worker's capacity (a handler stuck past its timeout keeps its thread,
Python cannot stop one, but a new thread takes its place, up to a bound).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from corral import logs, model
from corral.context import IterationSignals
from corral.errors import NotStorable, StorageError, StorageUnavailable, UsageError, ValueRejected
from corral.model import Change, Event, Process, Status
from corral.port import StoragePort, WorkerPort
from corral.rates import Rate
from corral.recovery import Recovery
from corral.renewer import Renewer
from corral.runner import Flight, Runner
from corral.settle import Outcome, Policy, Raised, on_claim, settle, timed_out
from corral.storage import codec
from corral.storage.base import Claim, Claimed, IterationCommit, NewProcess, WorkerInfo

if TYPE_CHECKING:
    from corral.app import App

log = logging.getLogger("corral.worker")

#: After a claim, how long the loop may wait for running iterations to finish so that
#: the next exchange commits them together (one transaction, one fsync, for many).
LINGER = 0.002

#: While the database is unreachable the loop waits this long between tries, doubling the
#: wait up to the second number (seconds).
BACKOFF = (0.1, 5.0)

#: Why a worker stopped, as its exit code (`corral worker` exits with it).
EXIT_OK = 0  # idle (--once), a signal, the process it drove ended
EXIT_INTERNAL = 1  # a bug in corral: logged with its traceback
EXIT_STORAGE = 3  # the database failed for good, or was still away when the grace ran out
EXIT_BUDGET = 4  # a budget was spent (--max-time, --max-memory, --max-iterations): recycle
EXIT_WEDGED = 5  # more handlers stuck past their timeouts than the bound allows


@dataclass
class WorkerStats:
    iterations: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    stuck: int = 0
    stopped_by: str = ""
    exit_code: int = EXIT_OK

    def summary(self) -> str:
        """Why the worker stopped and what it did, in words (its last log line)."""
        why = _STOPPED_BY.get(self.stopped_by, self.stopped_by or "stopped")
        iterations = f"{self.iterations} {_plural(self.iterations, 'iteration')}"
        return (
            f"{why} ({self.stopped_by}); {iterations}: {self.completed} completed, "
            f"{self.failed} failed or canceled, {self.lost} leases lost, "
            f"{self.released} leases given back"
            + (f", {self.stuck} handlers stuck" if self.stuck else "")
            + f" (exit {self.exit_code})"
        )


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


_STOPPED_BY = {
    "idle": "nothing left to do",
    "done": "the process it drove ended",
    "signal": "told to stop",
    "quiet": "told to stop claiming; what it ran has ended",
    "max-time": "its --max-time budget was spent",
    "max-memory": "its --max-memory budget was spent",
    "max-iterations": "its --max-iterations budget was spent",
    "storage error": "its database failed",
    "internal error": "a bug in corral, see the traceback above",
    "wedged": "too many handlers stuck past their timeouts",
}


@dataclass(frozen=True, slots=True)
class _Finished:
    """A settled iteration on its way to the database: its commit, and the process as
    claimed (to settle it again if the database refuses a value of it)."""

    commit: IterationCommit
    process: Process
    #: What the claim noted (a lease taken over, a new attempt), already in the commit.
    events: tuple[Event, ...] = ()
    #: How long its handler ran (None: settled without running one).
    duration: float | None = None


#: Iterations a worker runs at once by default: enough for I/O-bound jobs (arq and Oban
#: default to 10, Sidekiq to 5, Dramatiq to 8 threads), few enough that CPU-bound ones on
#: threads do not thrash. Async handlers share one event loop and need no thread each.
DEFAULT_CONCURRENCY = 10


@dataclass
class WorkerOptions:
    concurrency: int = DEFAULT_CONCURRENCY
    #: Exit when nothing is runnable (the crontab mode) instead of waiting for work.
    once: bool = False
    #: Stop claiming after this many seconds; running iterations still finish.
    max_time: float | None = None
    #: Stop claiming once resident memory passes this many megabytes.
    max_memory_mb: float | None = None
    #: Stop claiming once this many iterations have been started.
    max_iterations: int | None = None
    #: Longest idle wait between claims: bounds how late an expired lease or a future
    #: run_at is noticed when no write wakes the worker sooner.
    poll_interval: float = 1.0
    #: Seconds running iterations get to finish after a stop request.
    grace: float = 30.0
    #: How often this worker offers to run the recovery sweep (timeouts).
    sweep_interval: float = 1.0
    process_ids: Sequence[str] | None = None
    queues: Sequence[str] | None = None
    #: Handlers stuck past their timeout (whose threads cannot be stopped) the worker
    #: tolerates while it goes on at full concurrency; one more and it exits with
    #: EXIT_WEDGED so that its supervisor replaces it. None: its concurrency.
    max_stuck: int | None = None
    #: What the worker registry says this worker runs (the CLI gives its --app).
    app_name: str = ""
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
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value > 0
            )
            if not ok and not (name == "grace" and value == 0):
                raise UsageError(f"{name} must be a number > 0, not {value!r}")
        m = self.max_stuck
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 0):
            raise UsageError(f"max_stuck must be an integer >= 0, not {m!r}")
        n = self.max_iterations
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise UsageError(f"max_iterations must be an integer >= 1, not {n!r}")


class Worker:
    """Runs the jobs of an app's registry against its database, through a narrow port: it
    holds the registry (handlers and policies), the port and its options, not the App.

    `until`: stop once it returns True while nothing runs (`execute`); `tick`: called
    after each exchange (`execute`'s progress bar)."""

    def __init__(
        self,
        app: App,
        options: WorkerOptions | None = None,
        until: Callable[[], bool] | None = None,
        tick: Callable[[], None] | None = None,
        *,
        port: WorkerPort | None = None,
    ) -> None:
        self.options = options or WorkerOptions()
        self.options.check()
        self.port: WorkerPort = port or StoragePort(app.storage, app.clock)
        self.registry = app.registry
        self.lease_seconds = app.lease_seconds
        #: Makes the children a handler spawns (`ctx.spawn`): checked like any submit.
        self._new_process = app.new_process
        self.stats = WorkerStats()
        self._until = until
        self._tick = tick
        self._jobs = self.registry.local_jobs()
        self._in_flight: dict[str, Flight] = {}
        self._done: queue.SimpleQueue[tuple[Flight, Change | None]] = queue.SimpleQueue()
        #: Iterations this worker timed out itself (start_to_close, heartbeat_timeout): it
        #: still holds their leases, so it commits the timeout, fenced, at once.
        self._timed_out: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self._finished = threading.Condition()  # notified when an iteration finishes
        self._stop = threading.Event()
        self._halt = threading.Event()  # second signal: release at once, no grace
        self._lock = threading.Lock()
        opts = self.options
        self._runner = Runner(
            self.registry,
            opts.concurrency,
            opts.concurrency if opts.max_stuck is None else opts.max_stuck,
            self._finish,
        )
        self._renewer = Renewer(
            self.port,
            opts.owner,
            self.lease_seconds,
            self._snapshot,
            self._abandon,
            self._time_out,
            self._note_lost,
            self._registration,
        )
        self._began = 0.0  # when it started, by the database's clock
        self._wedged = False
        self._started = 0  # iterations handed to a slot (for --max-iterations)
        #: When the grace given by the first stop request ends (monotonic seconds).
        self._grace_ends: float | None = None
        self._quiet = False  # told to stop claiming and finish, with no deadline
        self.recovery = Recovery.of(app, self.options.owner, self.options.sweep_interval)
        self._recovery_thread: threading.Thread | None = None
        self._outage = _Outage()

    # --- control -------------------------------------------------------------------------
    def stop(self, *, immediately: bool = False) -> None:
        """Stop claiming; running iterations get `grace` seconds (none if `immediately`).
        A second request gives their leases back at once; after `quiet`, the first one
        only starts the grace."""
        first = self._grace_ends is None
        if first:
            self._grace_ends = time.monotonic() + self.options.grace
        if immediately or (self._stop.is_set() and not (first and self._quiet)):
            self._halt.set()
        self._stop.set()
        self.port.notify_local()

    def quiet(self) -> None:
        """Stop claiming and exit once the running iterations end, however long they take
        (a supervisor shrinking its fleet: SIGUSR1). Nothing is cut short; a `stop` after
        this starts the grace."""
        if self._stop.is_set():
            return
        self._quiet = True
        self._stop.set()
        self.port.notify_local()

    def run(self) -> WorkerStats:
        opts = self.options
        started = time.monotonic()
        self._start_threads()
        self._register()
        log.info("worker %s started (concurrency %d)", opts.owner, opts.concurrency)
        try:
            self._loop(started)
            self._drain(opts.grace)
        finally:
            self._stop_threads()
            self._unregister()
        log.info("worker %s stopped: %s", opts.owner, self.stats.summary())
        return self.stats

    def _loop(self, started: float) -> None:
        opts = self.options
        while not self._stop.is_set():
            try:
                reason = self._budget_spent(started)
                if reason:
                    self._stopped(reason, EXIT_BUDGET)
                    return
                # Read before looking: whatever changes from here on ends the wait below.
                epoch = self.port.change_epoch()
                claimed = self._exchange()
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
                    return
                self.port.wait_for_change(epoch, opts.poll_interval)
            except StorageUnavailable as exc:
                # The database went away (a restart, a network cut, a full disk). A claim
                # that failed claimed nothing we know of (if it landed unseen, those leases
                # expire and the next claim anywhere takes them over); finished iterations
                # wait in `_done`. Running handlers carry on. Wait, then try again.
                self._outage.wait(exc, self._stop)
            except StorageError as exc:
                # For good (a corrupt, read-only or replaced file): stop claiming, let what
                # runs finish within the grace, and exit non-zero.
                log.error("stopping: %s", exc)
                self._stopped("storage error", EXIT_STORAGE)
                return
            except Exception:
                log.exception("stopping: unexpected error in the worker loop (a bug in corral)")
                self._stopped("internal error", EXIT_INTERNAL)
                return
        if self._wedged:
            self._stopped("wedged", EXIT_WEDGED)
        elif not self.stats.stopped_by:
            self.stats.stopped_by = "quiet" if self._quiet else "signal"

    def _stopped(self, why: str, code: int) -> None:
        self.stats.stopped_by = why
        self.stats.exit_code = max(self.stats.exit_code, code)
        self._stop.set()

    # --- claiming ------------------------------------------------------------------------
    def _exchange(self) -> int:
        """One round trip: commit the iterations that finished, claim what fits in the
        free slots. Returns how many processes were claimed."""
        finished = self._collect_finished()
        free = self.options.concurrency - len(self._in_flight)
        if self.options.max_iterations is not None:
            free = min(free, self.options.max_iterations - self._started)
        # An app of external jobs only has nothing to claim here (its worker still runs
        # the recovery sweep, which applies those jobs' timeouts).
        if free <= 0 or self._wedged or not self._jobs:
            if finished:
                self._commit(finished)
            return 0
        recovering = any(f.claimed.recovered for f in self._in_flight.values())
        claim = Claim(
            owner=self.options.owner,
            now=self.port.now(),
            lease_seconds=self.lease_seconds,
            limit=free,
            process_ids=self.options.process_ids,
            queues=self.options.queues,
            jobs=self._jobs,
            # One taken-over process at a time: if it is what killed its last worker, it
            # takes down no other process that worker was running.
            max_recovered=0 if recovering else 1,
        )
        commits = [f.commit for f in finished]
        try:
            lost, claimed = self.port.exchange(commits, claim)
        except StorageUnavailable:
            if not finished:
                raise
            self._commit(finished, unknown=True)  # retried as _commit explains
            return 0
        except (ValueRejected, NotStorable):
            self._commit_each(finished)  # one by one: only the process at fault fails
            finished, lost = [], []
            claimed = self.port.claim(claim)
        self._account(finished, set(lost), unknown=False)
        immediate = [f for c in claimed if (f := self._dispatch(c)) is not None]
        if immediate:
            self._commit(immediate)
        return len(claimed)

    def _rate_limited(self, process: Process, rate: Rate, now: float) -> Change | None:
        """None when a token of the job's rate limit was taken (the iteration starts); else
        the iteration is deferred to when one is due, without using an attempt."""
        wait = self.port.rate_take(rate.bucket(process.job, process.params), rate)
        if wait <= 0:
            return None
        return model.retry_later(process, now, wait, "rate_limited")

    def _dispatch(self, c: Claimed) -> _Finished | None:
        """Start the iteration in a slot, or return what settles it at once."""
        process, now = c.process, self.port.now()
        job = self.registry.jobs.get(process.job)
        policy = None if job is None else self.registry.policy(job)
        events, change = on_claim(
            process, policy, now, recovered=c.recovered, previous_owner=c.previous_owner
        )
        if c.recovered:
            logs.ITERATIONS.warning(
                "taken over from %s, whose lease expired (its worker died or froze)",
                c.previous_owner,
                extra=logs.iteration_fields(process, outcome="taken_over"),
            )
        if change is None and job is not None and job.rate is not None:
            change = self._rate_limited(process, job.rate, now)
        if change is not None:
            return _Finished(IterationCommit(process.id, c.token, change, now), process, events)
        spawn: Callable[..., NewProcess] | str = self._new_process
        if job is not None and job.kind != "process":
            spawn = (
                f"job {job.name!r} is a function: spawn children from a multi-step process "
                "(@app.process), whose next handler reads them"
            )
        signals = IterationSignals(functools.partial(self.port.dependencies, process.id), spawn)
        flight = Flight(c, signals, events)
        self._started += 1
        with self._lock:
            self._in_flight[process.id] = flight
        if process.heartbeat_timeout is not None or process.start_to_close is not None:
            self._renewer.wake.set()  # it may need a renewal round sooner than planned
        self._runner.run(flight)
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
    def _commit_finished(self, deadline: float | None = None) -> None:
        finished = self._collect_finished()
        if finished:
            self._commit(finished, deadline=deadline)

    def _collect_finished(self) -> list[_Finished]:
        """What the iterations whose handlers returned since the last look commit."""
        finished: list[_Finished] = []
        release: dict[str, int] = {}
        while True:
            try:
                flight, change = self._done.get_nowait()
            except queue.Empty:
                break
            pid = flight.claimed.process.id
            with self._lock:
                if self._in_flight.get(pid) is flight:
                    del self._in_flight[pid]
            if flight.signals.lost:
                # Lost, or timed out here: the commit could not land; the next claim or
                # the recovery sweep deals with the process.
                self.stats.lost += 1
                continue
            if change is None:  # could not even be settled (logged): give the lease back
                release[pid] = flight.claimed.token
                continue
            # Children go with the commit that makes their parent wait for them.
            spawn = tuple(flight.signals.spawned) if change.status is Status.WAITING else ()
            commit = IterationCommit(pid, flight.claimed.token, change, self.port.now(), spawn)
            took = time.monotonic() - flight.started
            finished.append(_Finished(commit, flight.claimed.process, flight.events, took))
        while True:
            try:
                finished.append(self._timed_out.get_nowait())
            except queue.Empty:
                break
        if release:
            self._release(release)
        return finished

    def _commit(
        self,
        finished: list[_Finished],
        *,
        unknown: bool = False,
        deadline: float | None = None,
        last_resort: bool = False,
    ) -> None:
        # A commit that fails with StorageUnavailable has an unknown outcome: the statement
        # may have committed before the connection broke. It is retried as it is, same
        # tokens, until it gets an answer. That is safe because a commit is fenced by its
        # token and releases the lease: if the first try landed, the retry finds the lease
        # released (or, if a later claim took the process, the token moved on) and reports
        # the process "lost", writing nothing twice. So after an unknown outcome, "lost"
        # means: landed on an earlier try, or never landed and another worker took the
        # process over once our lease expired (it runs that iteration again: at-least-once).
        # Either way there is nothing left to do, and it is not reported as a lease loss
        # (a lease_lost event would be false if it landed). A halt (second signal) or the
        # end of the grace (`deadline`) gives up: the leases then expire and the iterations
        # run again elsewhere.
        # `unknown`: an earlier try (e.g. a commit-and-claim round trip) already failed so.
        # A value the database refuses (ValueRejected, or NotStorable from the encoding)
        # fails only its own process: see _commit_each.
        commits = [f.commit for f in finished]
        while True:
            try:
                lost = set(self.port.commit(commits))
                break
            except StorageUnavailable as exc:
                if deadline is None:
                    deadline = self._grace_ends  # a stop request came during the outage
                if self._halt.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    log.warning(
                        "%d finished iterations not committed, their leases will expire: %s",
                        len(commits),
                        exc,
                    )
                    self.stats.exit_code = max(self.stats.exit_code, EXIT_STORAGE)
                    return
                unknown = True
                # Woken by a stop request, which sets the deadline; then only by a halt.
                self._outage.wait(exc, self._halt if deadline else self._stop, deadline)
            except (ValueRejected, NotStorable) as exc:
                if len(finished) > 1:
                    self._commit_each(finished, deadline)
                elif last_resort:
                    pid = finished[0].commit.process_id
                    log.error(
                        "process %s: even its failure could not be stored (%s); its lease is "
                        "given back",
                        pid,
                        exc,
                    )
                    self._release({pid: finished[0].commit.token})
                else:
                    self._commit_refused(finished[0], exc, deadline)
                return
        self._outage.over()
        self._account(finished, lost, unknown=unknown)

    def _commit_each(self, finished: list[_Finished], deadline: float | None = None) -> None:
        """Commit one at a time, after the database refused a value in a batch: a commit it
        refuses fails its own process, with the reason, and no other."""
        for f in finished:
            self._commit([f], deadline=deadline)

    def _commit_refused(self, f: _Finished, exc: Exception, deadline: float | None) -> None:
        """The database refused what this iteration wrote: fail its process with that
        reason (settled as an error that is not retried), writing none of its values."""
        process, now = f.process, self.port.now()
        job = self.registry.jobs.get(process.job)
        message = codec.safe_text(f"the database refused what this iteration wrote: {exc}")
        log.warning("process %s: %s", process.id, message)
        error = Raised(type(exc).__name__, message, retryable=False)
        try:
            policy = self.registry.policy(job) if job is not None else Policy()
            change = settle(process, policy, error, now)
        except Exception:
            log.exception("process %s: its refused commit could not be settled", process.id)
            self._release({process.id: f.commit.token})
            return
        change = change.with_(events=(*f.events, *change.events))
        commit = IterationCommit(process.id, f.commit.token, change, now)
        self._commit([_Finished(commit, process, f.events)], deadline=deadline, last_resort=True)

    def _account(self, finished: list[_Finished], lost: set[str], *, unknown: bool) -> None:
        """Count the outcomes and note, in the history, the commits refused for a lost lease."""
        notes = []
        for f in finished:
            commit = f.commit
            self.stats.iterations += 1
            if commit.process_id in lost and unknown:
                log.debug(
                    "process %s: committed on an earlier try, or taken over", commit.process_id
                )
            elif commit.process_id in lost:
                self.stats.lost += 1
                logs.ITERATIONS.warning(
                    "lease lost: another worker took the process over; this iteration's "
                    "outcome was discarded",
                    extra=logs.iteration_fields(f.process, outcome="lease_lost"),
                )
                notes.append((commit.process_id, commit.token, "commit refused"))
            else:
                if commit.change.status is model.Status.COMPLETED:
                    self.stats.completed += 1
                elif commit.change.status in (model.Status.FAILED, model.Status.CANCELED):
                    self.stats.failed += 1
                if logs.ITERATIONS.isEnabledFor(logging.INFO):
                    outcome, words = logs.describe(f.process, commit.change, f.duration)
                    took = None if f.duration is None else round(f.duration * 1000, 1)
                    logs.ITERATIONS.info(
                        "%s",
                        words,
                        extra=logs.iteration_fields(f.process, outcome=outcome, duration_ms=took),
                    )
        if notes:
            self._note_lost(notes)

    def _release(self, tokens: dict[str, int]) -> None:
        try:
            released = self.port.release(tokens)
        except StorageError as exc:
            log.warning("%d leases not given back, they will expire: %s", len(tokens), exc)
            return
        self.stats.released += len(released)

    # --- the worker registry ---------------------------------------------------------------
    def _registration(self) -> WorkerInfo:
        opts = self.options
        now = self.port.now()
        return WorkerInfo(
            owner=opts.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            app=opts.app_name,
            jobs=self._jobs,
            queues=None if opts.queues is None else list(opts.queues),
            concurrency=opts.concurrency,
            started_at=self._began or now,
            last_seen_at=now,
            running=sorted(self._snapshot()),
        )

    def _register(self) -> None:
        # The registry is for people watching: a database away now only delays the row
        # (the renewer puts it in at its next round), it never stops the worker.
        try:
            info = self._registration()
            self._began = info.started_at
            self.port.register(info)
        except StorageError as exc:
            log.debug("not in the worker registry yet: %s", exc)

    def _unregister(self) -> None:
        try:
            self.port.unregister(self.options.owner)
        except StorageError as exc:  # the row goes stale, and readers show the worker gone
            log.debug("could not leave the worker registry: %s", exc)

    # --- the runner, the renewer, the recovery sweep ---------------------------------------
    def _start_threads(self) -> None:
        self._runner.start()
        self._renewer.start()
        self._recovery_thread = threading.Thread(
            target=self.recovery.run, args=(self._stop,), name="corral-recovery", daemon=True
        )
        self._recovery_thread.start()

    def _stop_threads(self) -> None:
        self._stop.set()  # the recovery thread stops on it
        self._halt.set()
        self._runner.stop()
        self._renewer.stop()
        if self._recovery_thread is not None:
            self._recovery_thread.join(timeout=5)

    def _snapshot(self) -> dict[str, Flight]:
        with self._lock:
            return dict(self._in_flight)

    def _finish(self, flight: Flight, outcome: Outcome | None) -> None:
        """Settle a finished iteration and hand it to the loop (from the runner)."""
        change = self._settle(flight, outcome)
        with self._lock:
            flight.finished = True
            if flight.abandoned:
                self._runner.returned(flight)
        self._done.put((flight, change))
        with self._finished:
            self._finished.notify()
        self.port.notify_local()

    def _settle(self, flight: Flight, outcome: Outcome | None) -> Change | None:
        """The Change to commit, or None when it could not be settled (a bug, logged):
        then its lease is given back."""
        if outcome is None:
            return None
        process = flight.claimed.process
        try:
            policy = self.registry.policy(self.registry.jobs[process.job])
            change = settle(process, policy, outcome, self.port.now())
        except Exception:
            log.exception("process %s: its iteration could not be settled", process.id)
            return None
        if flight.events:
            change = change.with_(events=(*flight.events, *change.events))
        return change

    def _time_out(self, flight: Flight, cause: str, now: float) -> None:
        process = flight.claimed.process
        try:
            policy = self.registry.policy(self.registry.jobs[process.job])
            change = timed_out(process, policy, cause, now)
        except Exception:  # its lease then expires, as after a crash
            log.exception("process %s: its %s could not be settled", process.id, cause)
            return
        if change is None:
            return
        change = change.with_(events=(*flight.events, *change.events))
        commit = IterationCommit(process.id, flight.claimed.token, change, now)
        self._timed_out.put(_Finished(commit, process, flight.events))
        self.port.notify_local()

    def _note_lost(self, losses: Iterable[tuple[str, int, str]]) -> None:
        """Write lease losses (process id, token, why) into the history. Unfenced: a note
        changes no process, so it may be written whoever holds the lease now."""
        now = self.port.now()
        owner = self.options.owner
        events = [
            Event("lease_lost", now, None, None, 0, {"owner": owner, "token": t, "why": why}, pid)
            for pid, t, why in losses
        ]
        try:
            self.port.note(events)
        except StorageError:  # only notes: the process itself is safe either way
            log.debug("%d lease_lost notes not written: the database is unavailable", len(events))

    def _abandon(self, pid: str, flight: Flight, why: str) -> bool:
        """Give up on a running iteration whose lease is gone or whose time is up: its
        handler is told, and the runner cancels it (async) or lets another thread take its
        slot while it runs on. False if it is no longer running (finished, or followed by
        the process's next iteration)."""
        with self._lock:
            if self._in_flight.get(pid) is not flight or flight.finished:
                return False
            flight.signals.lose_lease()  # before it leaves _in_flight: see _collect_finished
            flight.abandoned = True
            del self._in_flight[pid]
        on_a_thread = flight.task is None
        room = self._runner.give_up(flight)
        self.stats.stuck = self._runner.most_stuck
        fields = logs.iteration_fields(flight.claimed.process, outcome="given_up")
        stuck, bound = self._runner.stuck, self._runner.max_stuck
        if not on_a_thread:
            logs.ITERATIONS.warning("async handler canceled (%s)", why, extra=fields)
        elif room:
            logs.ITERATIONS.warning(
                "handler still running (%s); its thread is left to finish and another takes "
                "its place (%d stuck, at most %d)",
                why,
                stuck,
                bound,
                extra=fields,
            )
        else:
            logs.ITERATIONS.error(
                "handler still running (%s); %d handlers are stuck, more than the %d this "
                "worker tolerates: stopping so that it can be replaced",
                why,
                stuck,
                bound,
                extra=fields,
            )
            self._wedged = True
            self._stop.set()
        self.port.notify_local()
        return True

    # --- stopping ------------------------------------------------------------------------
    def _budget_spent(self, started: float) -> str:
        opts = self.options
        if opts.max_time is not None and time.monotonic() - started >= opts.max_time:
            return "max-time"
        if opts.max_memory_mb is not None and resident_mb() >= opts.max_memory_mb:
            return "max-memory"
        if opts.max_iterations is not None and self._started >= opts.max_iterations:
            return "max-iterations"
        return ""

    def _drain(self, grace: float) -> None:
        """Let running iterations finish within `grace`, then give back the leases left.
        Nothing here waits past the grace: with the database away, what could not be
        committed or given back is left to expire."""
        fallback = time.monotonic() + grace
        while True:
            # Re-read each round: a quiet worker has no deadline until it is told to stop.
            deadline = self._grace_ends or (math.inf if self._quiet else fallback)
            if not self._in_flight or self._halt.is_set() or time.monotonic() >= deadline:
                break
            epoch = self.port.change_epoch()
            self._commit_finished(deadline)
            if self._in_flight:
                pause = min(0.1, max(deadline - time.monotonic(), 0))
                try:
                    self.port.wait_for_change(epoch, pause)
                except StorageError:
                    time.sleep(pause)
        self._commit_finished(deadline)
        with self._lock:
            left = {pid: f.claimed.token for pid, f in self._in_flight.items()}
            self._in_flight.clear()
        if left:
            before = self.stats.released
            self._release(left)
            if self.stats.released > before:
                log.info(
                    "released %d leases for other workers to continue",
                    self.stats.released - before,
                )


class _Outage:
    """The loop's side of a database outage: one line when it starts and one when it ends
    (not one per try), and a wait between tries that doubles from BACKOFF[0] to BACKOFF[1]."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.since = 0.0

    def wait(
        self, exc: StorageUnavailable, until: threading.Event, deadline: float | None = None
    ) -> None:
        if not self.delay:
            self.delay, self.since = BACKOFF[0], time.monotonic()
            # The storage logs the outage itself, as a warning: this line says what we do.
            log.info("database unavailable: claims and commits wait and retry (%s)", exc)
        else:
            log.debug("database still unavailable: %s", exc)
        wait = self.delay
        if deadline is not None:
            wait = max(min(wait, deadline - time.monotonic()), 0.0)
        until.wait(wait)
        self.delay = min(self.delay * 2, BACKOFF[1])

    def over(self) -> None:
        if self.delay:
            log.info("database available again after %.1f s", time.monotonic() - self.since)
            self.delay = 0.0


def resident_mb() -> float:
    """Current resident memory of this process, in megabytes."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # not Linux: peak instead of current, still a safe upper bound
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
