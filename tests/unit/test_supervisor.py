"""The supervisor's decisions over time, with fake worker processes, a fake database and a
clock the test moves: restarts with backoff and the crash-loop guard, recycling, quieting
then TERM then KILL past their deadlines, the connection budget, the drain. The real
subprocesses are in tests/e2e/test_supervisor.py."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from corral.scaling import Bounds
from corral.storage.base import ConnectionBudget, Storage, WorkerInfo
from corral.supervisor import EXIT_CRASH_LOOP, Supervisor, SupervisorOptions, worker_argv
from corral.worker import EXIT_BUDGET

HOST = "this-host"
_pids = itertools.count(1000)


@dataclass
class FakeProcess:
    """A worker: exits when told `exit_on` signals (SIGKILL always), or when the test
    says so; remembers every signal it got."""

    exit_on: tuple[int, ...] = (signal.SIGUSR1, signal.SIGTERM)
    pid: int = field(default_factory=lambda: next(_pids))
    code: int | None = None
    signals: list[int] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if self.code is None and (sig in self.exit_on or sig == signal.SIGKILL):
            self.code = -signal.SIGKILL if sig == signal.SIGKILL else 0


@dataclass
class FakeDatabase:
    """What the supervisor reads: the backlog, the registry's rows, the budget."""

    backlog: int = 0
    running: dict[int, int] = field(default_factory=dict)  # pid -> iterations it runs
    budget: ConnectionBudget | None = None

    def now(self) -> float:
        return 0.0

    def runnable_backlog(self, jobs: Any, queues: Any, now: float) -> tuple[int, float]:
        return self.backlog, 0.0

    def worker_list(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(f"w{pid}", HOST, pid, "app", (), None, 10, 0.0, 0.0, ("p",) * n)
            for pid, n in self.running.items()
        ]

    def connection_budget(self) -> ConnectionBudget | None:
        return self.budget


class Rig:
    """A supervisor over fakes, and the clock it reads."""

    def __init__(self, bounds: Bounds, make: Any = FakeProcess, **options: Any) -> None:
        self.now = 0.0
        self.db = FakeDatabase()
        self.spawned: list[FakeProcess] = []
        self.started: list[float] = []
        self.make = make

        def spawn(argv: Sequence[str]) -> FakeProcess:
            proc = self.make()
            self.spawned.append(proc)
            self.started.append(self.now)
            return proc

        self.sup = Supervisor(
            cast(Storage, self.db),
            SupervisorOptions(bounds=bounds, argv=["corral", "worker"], **options),
            spawn=spawn,
            clock=lambda: self.now,
        )
        self.sup._host = HOST

    def at(self, now: float) -> bool:
        self.now = now
        return self.sup.step()

    def alive(self) -> list[FakeProcess]:
        return [p for p in self.spawned if p.code is None]


def test_a_worker_that_dies_at_start_is_restarted_with_backoff_then_given_up() -> None:
    rig = Rig(Bounds(1, 1, 10), crash_limit=4, backoff=(1.0, 30.0))
    rig.sup.begin()
    deaths = []
    for t in range(0, 30):
        for p in rig.alive():
            p.code = 9  # dies at start, seen dead at the next look
            deaths.append(float(t))
        if not rig.at(float(t)):
            break
    # Each death is followed by a restart 1, 2, then 4 s later; the fourth death in a row
    # within the crash window stops the restarts.
    assert deaths == [0.0, 2.0, 5.0, 10.0]
    assert rig.started == [0.0, 1.0, 4.0, 9.0]
    assert rig.sup.drain() == EXIT_CRASH_LOOP


def test_a_worker_that_lived_long_is_restarted_at_once_and_the_count_starts_again() -> None:
    rig = Rig(Bounds(1, 1, 10), crash_limit=2, crash_window=10.0)
    rig.sup.begin()
    rig.spawned[0].code = 9
    assert rig.at(0.5)  # one death at start: restart after the backoff
    assert rig.at(1.0) and len(rig.spawned) == 2
    rig.spawned[1].code = 1  # crashed after 20 s: not a crash at start
    assert rig.at(21.0)
    assert len(rig.spawned) == 3 and rig.alive() == [rig.spawned[2]]


def test_a_recycled_worker_is_replaced_at_once() -> None:
    rig = Rig(Bounds(2, 2, 10), crash_limit=1)
    rig.sup.begin()
    rig.spawned[0].code = EXIT_BUDGET  # --max-memory or --max-iterations: not a crash
    assert rig.at(0.1)
    assert len(rig.alive()) == 2 and len(rig.spawned) == 3


def test_shrinking_quiets_idle_workers_then_terms_and_kills_past_the_deadlines() -> None:
    stubborn = itertools.chain([FakeProcess()], iter(lambda: FakeProcess(exit_on=()), None))
    rig = Rig(
        Bounds(1, 3, 10, window=5.0),
        make=lambda: next(stubborn),
        quiet_timeout=60.0,
        grace=30.0,
        kill_margin=5.0,
    )
    rig.sup.begin()
    rig.db.backlog = 100
    assert rig.at(0.0)
    first, second, third = rig.spawned
    assert len(rig.alive()) == 3
    # The burst is over; the first worker still runs an iteration, the others are idle.
    rig.db.backlog = 0
    rig.db.running = {first.pid: 1, second.pid: 0, third.pid: 0}
    assert rig.at(1.0) and all(not p.signals for p in rig.spawned)  # the window starts
    assert rig.at(6.0)
    assert first.signals == [] and second.signals == third.signals == [signal.SIGUSR1]
    # They do not exit (stuck in a long iteration): TERM past the quiet timeout...
    assert rig.at(65.0)
    assert second.signals == [signal.SIGUSR1] and third.signals == [signal.SIGUSR1]
    assert rig.at(66.0)
    assert second.signals == third.signals == [signal.SIGUSR1, signal.SIGTERM]
    # ...and KILL past the grace and its margin.
    assert rig.at(100.0) and second.code is None
    assert rig.at(101.0)
    assert second.signals[-1] == signal.SIGKILL and third.signals[-1] == signal.SIGKILL
    assert rig.at(102.0)
    assert rig.alive() == [first] and first.signals == []


def test_the_connection_budget_holds_the_fleet_back() -> None:
    rig = Rig(Bounds(1, 8, 10))
    rig.sup.begin()
    rig.db.backlog = 1000
    # 60 more connections allowed, 11 per worker: 5 more workers, 6 in all.
    rig.db.budget = ConnectionBudget(limit=97, in_use=37, per_worker=11)
    assert rig.at(0.0)
    assert len(rig.alive()) == 6


def test_a_stop_drains_every_worker() -> None:
    rig = Rig(Bounds(3, 3, 10))
    rig.sup.begin()
    rig.sup.stop()
    assert not rig.at(0.0)
    assert rig.sup.drain() == 0
    assert [p.signals for p in rig.spawned] == [[signal.SIGTERM]] * 3


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["--app", "a.py", "worker", "--processes", "1..4", "-c", "3"], ["--app", "a.py",
         "worker", "-c", "3"]),
        (["worker", "--processes=2", "--scale-down-after", "5s", "--quiet-timeout=1m",
          "--grace", "9s"], ["worker", "--grace", "9s"]),
    ],
)  # fmt: skip
def test_the_workers_command_line_is_the_supervisor_s_without_its_own_options(
    args: list[str], kept: list[str]
) -> None:
    argv = worker_argv(args, ("--processes", "--scale-down-after", "--quiet-timeout"))
    assert argv[3:] == kept


def test_a_worker_that_exits_2_stops_the_restarts_at_once() -> None:
    """Exit 2: bad usage, an app that does not load, a database that will not work. The
    same command would fail the same way: no restart, the others drained, exit 2."""
    rig = Rig(Bounds(2, 2, 10))
    rig.sup.begin()
    rig.spawned[0].code = 2
    assert not rig.at(30.0)
    assert rig.sup.drain() == 2
    assert len(rig.spawned) == 2 and rig.spawned[1].signals == [signal.SIGTERM]
