"""The supervisor (`corral worker --processes MIN..MAX`): worker subprocesses, started,
restarted, scaled and stopped (docs/supervisor.md).

It runs no handler and holds no job state: every second it reads the runnable backlog of
its workers' jobs and the worker registry's rows of its children, asks the pure rule
(`corral.scaling`) how many workers to run, starts the missing ones and quiets (SIGUSR1)
the ones to let go, idle first. A quiet worker claims nothing more and exits once its
iterations end; only past `quiet_timeout` does it get SIGTERM (its grace), and past that
grace SIGKILL. A worker that crashes is started again after a backoff; one that dies
within `crash_window` of its start `crash_limit` times in a row stops the restarts: the
supervisor drains the others and exits EXIT_CRASH_LOOP. SIGTERM or SIGINT drains every
worker: TERM to each, KILL to those still there past the grace; a second signal sends
TERM again, which makes the workers give their leases back at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from corral.errors import StorageError
from corral.scaling import Bounds, Decision, Observed, Running, decide
from corral.storage.base import Storage
from corral.worker import EXIT_BUDGET, EXIT_OK

log = logging.getLogger("corral.supervisor")


class Process(Protocol):
    """What the supervisor uses of a worker subprocess (a `subprocess.Popen`)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...


#: The supervisor's own exit codes beside the worker's (0: drained after a signal).
EXIT_CRASH_LOOP = 6  # a worker kept dying at start: restarts stopped, the others drained
#: A worker's exit code for bad usage or a database that will not work (the command line's
#: own): the same again would fail the same way.
EXIT_USAGE = 2
#: What a worker started by a supervisor finds in its environment: the supervisor's pid.
SUPERVISOR_ENV = "CORRAL_SUPERVISOR_PID"


@dataclass
class SupervisorOptions:
    bounds: Bounds
    #: The worker command (`corral ... worker ...` without the supervisor's own options).
    argv: Sequence[str]
    #: The worker's --grace: how long a worker told to stop (TERM) may take.
    grace: float = 30.0
    #: How long a quiet worker may finish its iterations before it is told to stop.
    quiet_timeout: float = 600.0
    #: A worker that dies within this many seconds of its start has crashed at start...
    crash_window: float = 10.0
    #: ...and this many of those in a row stop the restarts.
    crash_limit: int = 5
    #: Seconds before a crashed worker is started again, doubling up to the second number.
    backoff: tuple[float, float] = (0.5, 30.0)
    #: How often (seconds) the supervisor reads the backlog and the registry.
    interval: float = 1.0
    #: How long past its grace (seconds) a worker told to stop gets before SIGKILL: the
    #: grace is the worker's own, and it needs a moment to give its leases back after it.
    kill_margin: float = 5.0
    jobs: Sequence[str] | None = None
    queues: Sequence[str] | None = None


@dataclass
class Child:
    """A worker subprocess and where it stands: running, quieted (since when), told to
    stop (TERM, and when KILL is due)."""

    proc: Process
    started_at: float
    quieted_at: float | None = None
    termed_at: float | None = None
    kill_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def leaving(self) -> bool:
        return self.quieted_at is not None or self.termed_at is not None


@dataclass
class _Crashes:
    """Consecutive deaths at start, and when the next restart is due."""

    in_a_row: int = 0
    restart_at: float = 0.0
    pending: int = 0  # workers to start again once restart_at comes
    looping: bool = False


class Supervisor:
    """Runs worker subprocesses for one database; `run` returns the exit code."""

    def __init__(
        self,
        storage: Storage,
        options: SupervisorOptions,
        *,
        spawn: Callable[[Sequence[str]], Process] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.options = options
        self.children: dict[int, Child] = {}
        self._spawn = spawn or _spawn
        self._clock = clock
        self._next_look = 0.0
        self._wake = threading.Event()
        self._signals = 0
        self._low_since: float | None = None
        self._crashes = _Crashes()
        self._host = socket.gethostname()
        self._last_decision = ""
        self._db_down = False
        #: Once restarts stop: the exit code and why, in words.
        self._gave_up = (EXIT_CRASH_LOOP, "crash loop")

    # --- control (from signal handlers) -----------------------------------------------------
    def stop(self) -> None:
        """Drain every worker (SIGTERM, SIGINT); a second call makes them hurry."""
        self._signals += 1
        self._wake.set()

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        b = self.options.bounds
        log.info(
            "supervisor %d started: %d..%d workers of concurrency %d",
            os.getpid(),
            b.minimum,
            b.maximum,
            b.concurrency,
        )
        self.begin()
        while self.step():
            self._wake.wait(min(0.2, max(self._next_look - self._clock(), 0.0)))
            self._wake.clear()
        return self.drain()

    def begin(self) -> None:
        """Start the minimum of workers."""
        for _ in range(self.options.bounds.minimum):
            self._start("minimum")

    def step(self) -> bool:
        """One round: note the workers that exited (restarting those that should not
        have), look at the database when it is time, escalate overdue stops. False once
        the supervisor should drain (a signal, a crash loop)."""
        if self._signals or self._crashes.looping:
            return False
        self._reap()
        now = self._clock()
        self._restart_due(now)
        if now >= self._next_look:
            self._scale(now)
            self._next_look = now + self.options.interval
        self._escalate(now)
        return not (self._signals or self._crashes.looping)

    def _scale(self, now: float) -> None:
        if self._crashes.pending or self._crashes.looping:
            return  # restarts first: scaling now would start what keeps crashing
        kept = [c for c in self.children.values() if not c.leaving]
        seen = self._observe(kept, now)
        if seen is None:
            return
        decision = decide(self.options.bounds, seen, self._low_since)
        self._low_since = decision.low_since
        self._apply(decision, kept)

    def _observe(self, kept: Sequence[Child], now: float) -> Observed | None:
        """One look at the database; None while it cannot be read (the workers go on)."""
        try:
            db_now = self.storage.now()
            backlog, age = self.storage.runnable_backlog(
                self.options.jobs, self.options.queues, db_now
            )
            rows = {
                w.pid: len(w.running) for w in self.storage.worker_list() if w.host == self._host
            }
            budget = self.storage.connection_budget()
        except StorageError as exc:
            if not self._db_down:
                log.warning("cannot read the backlog, keeping %d workers: %s", len(kept), exc)
            self._db_down = True
            return None
        if self._db_down:
            log.info("the database answers again: scaling resumes")
            self._db_down = False
        workers = [Running(str(c.pid), rows.get(c.pid), c.started_at) for c in kept]
        allowed = None
        if budget is not None:
            allowed = len(kept) + max(budget.limit - budget.in_use, 0) // budget.per_worker
        return Observed(backlog, age, workers, allowed, now)

    def _apply(self, decision: Decision, kept: Sequence[Child]) -> None:
        starting = decision.start(len(kept))
        if starting or decision.quiet:
            log.info(
                "scaling from %d to %d workers: %s", len(kept), decision.desired, decision.reason
            )
        elif decision.reason != self._last_decision:
            log.debug("%d workers: %s", len(kept), decision.reason)
        self._last_decision = decision.reason
        for _ in range(starting):
            self._start("scale up")
        for name in decision.quiet:
            self._quiet(self.children[int(name)])

    # --- one worker ---------------------------------------------------------------------------
    def _start(self, why: str) -> None:
        try:
            proc = self._spawn(self.options.argv)
        except OSError as exc:
            log.error("cannot start a worker (%s): %s", why, exc)
            self._crashed(self._clock())
            return
        self.children[proc.pid] = Child(proc, self._clock())
        log.info("started worker %d (%s)", proc.pid, why)

    def _quiet(self, child: Child) -> None:
        child.quieted_at = self._clock()
        log.info(
            "quieting worker %d: it claims nothing more and exits when its iterations end "
            "(SIGTERM past %.0f s)",
            child.pid,
            self.options.quiet_timeout,
        )
        _signal(child, signal.SIGUSR1)

    def _terminate(self, child: Child, why: str) -> None:
        now = self._clock()
        child.termed_at = now
        child.kill_at = now + self.options.grace + self.options.kill_margin
        log.info("stopping worker %d (%s): SIGTERM, SIGKILL past its grace", child.pid, why)
        _signal(child, signal.SIGTERM)

    def _escalate(self, now: float) -> None:
        """TERM to quiet workers past their deadline, KILL to stopped ones past theirs."""
        for child in list(self.children.values()):
            if child.kill_at is not None and now >= child.kill_at:
                log.warning("killing worker %d: still running past its grace", child.pid)
                _signal(child, signal.SIGKILL)
                child.kill_at = None
            elif (
                child.termed_at is None
                and child.quieted_at is not None
                and now - child.quieted_at >= self.options.quiet_timeout
            ):
                self._terminate(child, "quiet for too long")

    def _reap(self) -> None:
        """Take note of the workers that exited; restart the ones that should not have."""
        for pid, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[pid]
            now = self._clock()
            lived = now - child.started_at
            if child.leaving or self._signals:
                log.info("worker %d exited (%s) after %.1f s", pid, _code(code), lived)
            elif code == EXIT_BUDGET:
                log.info("worker %d exited to be recycled (%s): replacing it", pid, _code(code))
                self._crashes.in_a_row = 0
                self._start("recycled")
            elif code == EXIT_USAGE:
                log.error(
                    "worker %d exited %d: bad usage, an app that does not load or a database "
                    "that will not work (its log says which); restarting will not help",
                    pid,
                    code,
                )
                self._crashes.looping = True
                self._gave_up = (EXIT_USAGE, "a worker cannot start")
            elif code == EXIT_OK and lived >= self.options.crash_window:
                log.warning("worker %d exited unasked (%s): replacing it", pid, _code(code))
                self._crashes.in_a_row = 0
                self._start("replacement")
            else:
                self._died(pid, code, lived, now)

    def _died(self, pid: int, code: int, lived: float, now: float) -> None:
        opts = self.options
        if lived >= opts.crash_window:
            self._crashes.in_a_row = 0
            log.error("worker %d crashed (%s) after %.1f s: restarting it", pid, _code(code), lived)
            self._start("restart")
            return
        self._crashed(now)
        n = self._crashes.in_a_row
        if self._crashes.looping:
            log.error(
                "worker %d died at start (%s), %d times in a row within %.0f s of starting: "
                "crash loop, restarts stopped; see the worker's log above",
                pid,
                _code(code),
                n,
                opts.crash_window,
            )
            return
        log.error(
            "worker %d died %.1f s after its start (%s), %d in a row: restarting in %.1f s",
            pid,
            lived,
            _code(code),
            n,
            self._crashes.restart_at - now,
        )

    def _crashed(self, now: float) -> None:
        c, opts = self._crashes, self.options
        c.in_a_row += 1
        if c.in_a_row >= opts.crash_limit:
            c.looping = True
            c.pending = 0
            return
        c.pending += 1
        first, most = opts.backoff
        c.restart_at = now + min(first * 2 ** (c.in_a_row - 1), most)

    def _restart_due(self, now: float) -> None:
        c = self._crashes
        if c.pending and not c.looping and now >= c.restart_at:
            pending, c.pending = c.pending, 0
            for _ in range(pending):
                self._start("restart after a crash")

    # --- stopping -------------------------------------------------------------------------------
    def drain(self) -> int:
        """TERM every worker, wait for them within the grace, KILL the rest; the exit code."""
        looping = self._crashes.looping
        why = self._gave_up[1] if looping else "the supervisor was told to stop"
        n = len(self.children)
        log.info("draining %d worker%s (%s)", n, "" if n == 1 else "s", why)
        for child in list(self.children.values()):
            if child.termed_at is None:
                self._terminate(child, why)
        hurried = self._signals
        while self.children:
            self._reap()
            if self._signals > hurried:  # one more signal: leases back at once
                hurried = self._signals
                for child in list(self.children.values()):
                    log.info("worker %d: SIGTERM again, its leases are given back now", child.pid)
                    _signal(child, signal.SIGTERM)
            self._escalate(self._clock())
            if self.children:
                self._wake.wait(0.1)
            self._wake.clear()
        code = self._gave_up[0] if looping else EXIT_OK
        log.info("supervisor %d stopped (exit %d)", os.getpid(), code)
        return code


def _spawn(argv: Sequence[str]) -> Process:
    """A worker subprocess in its own process group (a Ctrl-C in a terminal reaches the
    supervisor alone, which drains the workers once, not twice), told to die with it
    (Linux: should the supervisor be killed, its workers get SIGTERM)."""
    env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
    return subprocess.Popen(
        list(argv), env=env, process_group=0, preexec_fn=_death_signal(), close_fds=True
    )


def _death_signal() -> Callable[[], None] | None:
    """What the child runs between fork and exec to get SIGTERM when its parent dies, or
    None off Linux. Resolved here, in the parent: between fork and exec a child of a
    threaded process must not import or take locks, only make the call."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, term = 1, int(signal.SIGTERM)

    def call() -> None:
        prctl(pr_set_pdeathsig, term)

    return call


def _signal(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        child.proc.send_signal(sig)


def _code(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"


def worker_argv(args: Sequence[str], supervisor_options: Sequence[str]) -> list[str]:
    """The worker's command line: `args` (the supervisor's own, after the program name)
    without the options only a supervisor takes, run by this very Python."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name, eq, _ = arg.partition("=")
        if name in supervisor_options:
            skip = not eq
            continue
        out.append(arg)
    return [sys.executable, "-c", "from corral.cli import main; main()", *out]
