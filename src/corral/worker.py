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

import asyncio
import logging
import math
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
from corral.errors import NotStorable, StorageError, StorageUnavailable, UsageError, ValueRejected
from corral.iteration import run_iteration
from corral.model import Change, Event, Process
from corral.port import StoragePort, WorkerPort
from corral.recovery import Recovery
from corral.settle import Policy, Raised, on_claim, settle, timed_out
from corral.storage import codec
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

#: Why a worker stopped, as its exit code (`corral worker` exits with it).
EXIT_OK = 0  # idle (--once), a signal, a budget spent, the process it drove ended
EXIT_INTERNAL = 1  # a bug in corral: logged with its traceback
EXIT_STORAGE = 3  # the database failed for good, or was still away when the grace ran out
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


@dataclass(eq=False)
class _InFlight:
    claimed: Claimed
    signals: IterationSignals
    events: tuple[Event, ...] = ()
    #: Set under the worker's lock: the handler returned; or the worker gave up on it.
    finished: bool = False
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class _Finished:
    """A settled iteration on its way to the database: its commit, and the process as
    claimed (to settle it again if the database refuses a value of it)."""

    commit: IterationCommit
    process: Process
    #: What the claim noted (a lease taken over, a new attempt), already in the commit.
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
    #: Handlers stuck past their timeout (whose threads cannot be stopped) the worker
    #: tolerates while it goes on at full concurrency; one more and it exits with
    #: EXIT_WEDGED so that its supervisor replaces it. None: its concurrency.
    max_stuck: int | None = None
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
        self.stats = WorkerStats()
        self._until = until
        self._tick = tick
        self._jobs = sorted(self.registry.jobs)
        self._in_flight: dict[str, _InFlight] = {}
        self._tasks: queue.SimpleQueue[_InFlight | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_InFlight, Change | None]] = queue.SimpleQueue()
        #: Iterations this worker timed out itself (start_to_close, heartbeat_timeout): it
        #: still holds their leases, so it commits the timeout, fenced, at once.
        self._timed_out: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        self._finished = threading.Condition()  # notified when an iteration finishes
        self._stop = threading.Event()
        self._halt = threading.Event()  # second signal: release at once, no grace
        self._renew_wake = threading.Event()
        self._lock = threading.Lock()
        self._slots = 0  # slot threads that take new iterations
        #: Handlers still running whose iteration was given up (past start_to_close or
        #: heartbeat_timeout, or lease lost): each keeps its thread, nothing it returns is
        #: committed, and a new thread took its place.
        self._stuck = 0
        self._max_stuck = (
            self.options.concurrency if self.options.max_stuck is None else self.options.max_stuck
        )
        self._wedged = False
        #: When the grace given by the first stop request ends (monotonic seconds).
        self._grace_ends: float | None = None
        self._renewer: threading.Thread | None = None
        self.recovery = Recovery.of(app, self.options.owner, self.options.sweep_interval)
        self._recovery_thread: threading.Thread | None = None
        self._outage = _Outage()

    # --- control -------------------------------------------------------------------------
    def stop(self, *, immediately: bool = False) -> None:
        """Stop claiming; running iterations get `grace` seconds (none if `immediately`)."""
        if self._grace_ends is None:
            self._grace_ends = time.monotonic() + self.options.grace
        if self._stop.is_set() or immediately:
            self._halt.set()
            self._renew_wake.set()
        self._stop.set()
        self.port.notify_local()

    def run(self) -> WorkerStats:
        opts = self.options
        started = time.monotonic()
        self._start_threads()
        log.info("worker %s started (concurrency %d)", opts.owner, opts.concurrency)
        try:
            self._loop(started)
            self._drain(opts.grace)
        finally:
            self._stop_threads()
        log.info("worker %s stopped (%s): %s", opts.owner, self.stats.stopped_by, self.stats)
        return self.stats

    def _loop(self, started: float) -> None:
        opts = self.options
        while not self._stop.is_set():
            try:
                reason = self._budget_spent(started)
                if reason:
                    self.stats.stopped_by = reason
                    return
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
                self.port.wait_for_change(opts.poll_interval)
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
            self.stats.stopped_by = "signal"

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
        if free <= 0 or self._wedged:
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

    def _dispatch(self, c: Claimed) -> _Finished | None:
        """Start the iteration in a slot, or return what settles it at once."""
        process, now = c.process, self.port.now()
        job = self.registry.jobs.get(process.job)
        policy = None if job is None else self.registry.policy(job)
        events, change = on_claim(
            process, policy, now, recovered=c.recovered, previous_owner=c.previous_owner
        )
        if change is not None:
            return _Finished(IterationCommit(process.id, c.token, change, now), process, events)
        flight = _InFlight(c, IterationSignals(), events)
        with self._lock:
            self._in_flight[process.id] = flight
        if process.heartbeat_timeout is not None or process.start_to_close is not None:
            self._renew_wake.set()  # it may need the renewer sooner than it planned
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
            commit = IterationCommit(pid, flight.claimed.token, change, self.port.now())
            finished.append(_Finished(commit, flight.claimed.process, flight.events))
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

    def _release(self, tokens: dict[str, int]) -> None:
        try:
            released = self.port.release(tokens)
        except StorageError as exc:
            log.warning("%d leases not given back, they will expire: %s", len(tokens), exc)
            return
        self.stats.released += len(released)

    # --- slots and the lease renewer -----------------------------------------------------
    def _start_threads(self) -> None:
        for _ in range(self.options.concurrency):
            self._spawn_slot()
        self._renewer = threading.Thread(target=self._renew, name="corral-renewer", daemon=True)
        self._renewer.start()
        self._recovery_thread = threading.Thread(
            target=self.recovery.run, args=(self._stop,), name="corral-recovery", daemon=True
        )
        self._recovery_thread.start()

    def _spawn_slot(self) -> None:
        with self._lock:
            self._slots += 1
            n = self._slots + self._stuck
        threading.Thread(target=self._slot, name=f"corral-slot-{n}", daemon=True).start()

    def _stop_threads(self) -> None:
        with self._lock:
            slots = self._slots
        for _ in range(slots):
            self._tasks.put(None)
        self._stop.set()  # the recovery thread stops on it
        self._halt.set()
        self._renew_wake.set()
        for thread in (self._renewer, self._recovery_thread):
            if thread is not None:
                thread.join(timeout=5)

    def _slot(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while True:
                flight = self._tasks.get()
                if flight is None:
                    return
                change = self._run(flight, loop)
                with self._lock:
                    flight.finished = True
                    given_up = flight.abandoned
                    if given_up:
                        self._stuck -= 1
                self._done.put((flight, change))
                with self._finished:
                    self._finished.notify()
                self.port.notify_local()
                if given_up:
                    return  # another thread took this one's place when it was given up
        finally:
            loop.close()

    def _run(self, flight: _InFlight, loop: asyncio.AbstractEventLoop) -> Change | None:
        """Run the iteration and settle its outcome: the Change to commit, or None when it
        could not be settled (a bug, logged): then its lease is given back."""
        process = flight.claimed.process
        try:
            job = self.registry.jobs[process.job]
            outcome = run_iteration(self.registry, job, process, flight.signals, loop)
            change = settle(process, self.registry.policy(job), outcome, self.port.now())
        except Exception:
            log.exception("process %s: its iteration could not be settled", process.id)
            return None
        if flight.events:
            change = change.with_(events=(*flight.events, *change.events))
        return change

    def _renew_interval(self, flights: Iterable[_InFlight]) -> float:
        """A third of the lease, or of the shortest heartbeat timeout of what runs: the
        database learns that a handler beats well within its heartbeat_timeout."""
        interval = self.lease_seconds / 3
        for f in flights:
            beat = f.claimed.process.heartbeat_timeout
            if beat is not None:
                interval = min(interval, beat / 3)
        return max(interval, 0.05)

    def _renew(self) -> None:
        last = time.monotonic()
        while not self._halt.is_set():
            with self._lock:
                flights = dict(self._in_flight)
            remaining = last + self._renew_interval(flights.values()) - time.monotonic()
            # Wake up for the first start_to_close to pass, too: its handler is given up
            # (and its timeout committed) then, not at the next renewal.
            remaining = min(remaining, _until_first_deadline(flights.values(), self.port.now()))
            # Not more often than every 20 ms, whatever is overdue.
            remaining = max(remaining, last + 0.02 - time.monotonic())
            if remaining > 0:
                self._renew_wake.wait(remaining)
                self._renew_wake.clear()
                continue
            last = time.monotonic()
            self._renew_round(flights)

    def _renew_round(self, flights: dict[str, _InFlight]) -> None:
        now, mono = self.port.now(), time.monotonic()
        held: dict[str, int] = {}
        beats: dict[str, float] = {}
        for pid, f in flights.items():
            why = _over_time(f, now, mono)
            if why:
                # start_to_close or heartbeat_timeout: give the iteration up and commit the
                # timeout while this worker still holds the lease (the sweep would see it
                # only once the lease or the heartbeat it vouched for ran out).
                if self._abandon(pid, f, why):
                    self._time_out(f, why, now)
                continue
            if f.signals.lost:
                self._abandon(pid, f, "lease lost")
                continue
            held[pid] = f.claimed.token
            # This worker vouches for the handler (it beat within its heartbeat_timeout,
            # or has none): the database's clock of its heartbeat starts again now.
            beats[pid] = now
        if not held:
            return
        try:
            renewal = self.port.renew(self.options.owner, held, self.lease_seconds, beats)
        except StorageError as exc:  # the database is away (logged once): next round
            log.debug("leases not renewed: %s", exc)
            return
        except Exception:
            log.exception("could not renew leases")
            return
        # A refused renewal is a lost lease only for an iteration still running. One that
        # finished meanwhile was committed by the loop (which released the lease: hence
        # the refusal) or is being committed, fenced: the loop notes a real loss.
        lost = [pid for pid in renewal.lost if self._abandon(pid, flights[pid], "lease lost")]
        if lost:
            self._note_lost([(pid, flights[pid].claimed.token, "renewal refused") for pid in lost])
        for pid in renewal.cancel_requested:
            flights[pid].signals.request_cancel()

    def _time_out(self, flight: _InFlight, cause: str, now: float) -> None:
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

    def _abandon(self, pid: str, flight: _InFlight, why: str) -> bool:
        """Give up on a running iteration whose lease is gone or whose time is up: its
        handler is told, and a new thread takes its slot while it runs on. False if it is
        no longer running (finished, or followed by the process's next iteration)."""
        with self._lock:
            if self._in_flight.get(pid) is not flight or flight.finished:
                return False
            flight.signals.lose_lease()  # before it leaves _in_flight: see _collect_finished
            flight.abandoned = True
            del self._in_flight[pid]
            self._stuck += 1
            self._slots -= 1
            stuck = self._stuck
        self.stats.stuck = max(self.stats.stuck, stuck)
        if stuck > self._max_stuck:
            log.error(
                "process %s: handler still running (%s); %d handlers are stuck, more than "
                "the %d this worker tolerates: stopping so that it can be replaced",
                pid,
                why,
                stuck,
                self._max_stuck,
            )
            self._wedged = True
            self._stop.set()
        else:
            log.warning(
                "process %s: handler still running (%s); its thread is left to finish and "
                "another takes its place (%d stuck, at most %d)",
                pid,
                why,
                stuck,
                self._max_stuck,
            )
            self._spawn_slot()
        self.port.notify_local()
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
        """Let running iterations finish within `grace`, then give back the leases left.
        Nothing here waits past the grace: with the database away, what could not be
        committed or given back is left to expire."""
        deadline = self._grace_ends or time.monotonic() + grace
        while self._in_flight and not self._halt.is_set() and time.monotonic() < deadline:
            self._commit_finished(deadline)
            if self._in_flight:
                try:
                    self.port.wait_for_change(min(0.1, max(deadline - time.monotonic(), 0)))
                except StorageError:
                    time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
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


def _until_first_deadline(flights: Iterable[_InFlight], now: float) -> float:
    """Seconds until the first running iteration passes its start_to_close (inf: none)."""
    first = math.inf
    for f in flights:
        p = f.claimed.process
        if p.start_to_close is not None and p.claimed_at is not None:
            first = min(first, p.claimed_at + p.start_to_close - now)
    return first


def _over_time(flight: _InFlight, now: float, mono: float) -> str:
    """Which of its timeouts the running iteration has passed, if any."""
    p = flight.claimed.process
    if (
        p.start_to_close is not None
        and p.claimed_at is not None
        and (now - p.claimed_at > p.start_to_close)
    ):
        return "start_to_close"
    if p.heartbeat_timeout is not None and mono - flight.signals.last_heartbeat > (
        p.heartbeat_timeout
    ):
        return "heartbeat_timeout"
    return ""


def resident_mb() -> float:
    """Current resident memory of this process, in megabytes."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # not Linux: peak instead of current, still a safe upper bound
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
