"""Chaos: `corral worker` processes SIGKILLed at random while they work through 5,000 mixed
processes, on SQLite and on PostgreSQL (whose server is also restarted twice mid-run).

A killer picks a random worker every 0.5 to 2 s, kills it with SIGKILL (most likely in
the middle of iterations: each does 1 to 20 ms of "work") and starts a replacement. Most
processes are submitted in bulk before the workers start, the rest in batches while they
run. After about one kill in three, another worker is also frozen (SIGSTOP) for 1.5 to 3 s,
longer than its lease: when it wakes up, others have taken its processes over and the
iterations it finished try to commit with stale tokens, which must be refused. Once every
process has ended, the checker reads the database and the workers' audit files (see
apps/chaos_app.py) and asserts:

- lost = 0: every submitted process exists and is terminal, and nothing else appeared;
- failed = 0: every process completed (the jobs allow 50 attempts an iteration, far more
  than the kills can take), simple jobs with the result their parameters imply;
- every multi-step process's store counter equals its steps, and its store lists each of
  its committed iterations exactly once, in order (duplicate_commits = 0, missing = 0);
- the fencing tokens in each store strictly increase, and no committed iteration's place
  was also taken by an iteration holding a later token (stale_commits = 0): no commit
  landed from a lease that another claim had already taken over;
- no worker died of anything but our SIGKILL (crashed = 0; on PostgreSQL the workers ride
  the restarts out), and the last ones stop with exit 0 on SIGTERM. A replacement that
  cannot connect to start with exits 2, as documented for an unreachable database: on
  PostgreSQL (a replacement still importing when the server goes down, or another test
  restarting the shared server) that is counted apart, as refused_to_start;
- each completed process's history holds each of its status transitions exactly once
  (they are written in the same transaction as the commit that makes them).

Among them run a few poison processes (a result or store no database can store: each must
fail alone, with its own NotStorable error) and one killer process (it kills its worker
with os._exit, as the OOM killer would: it must fail alone, LeaseExpired after its
attempts, and no healthy process may fail; its workers' deaths, exit 70, are not crashes).

Task graphs run in the mix: small graphs submitted in batches (four `square` nodes, a
`gather` that depends on them, a second `gather` that depends on the first and on one of
the squares). Each node must end exactly once, completed, each `gather` with the sum of
its dependencies' results, and each made runnable (`waiting` -> `starting`) only once all
of its dependencies had ended: in dependency order.

The test prints one line of figures per backend. CHAOS_SEED replays a run's random choices
(the kills' timing and victims, not the operating system's scheduling).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from corral.app import App
from corral.loader import load_app
from corral.model import Process, Status
from corral.storage.base import ProcessFilter
from tests.backends import backend_url
from tests.chaos.apps.chaos_app import KILLER_ATTEMPTS, KILLER_EXIT
from tests.chaos.conftest import (
    CHAOS_APP,
    postgres_left_running,
    query,
    read_audit,
    require_restartable_postgres,
    restart_postgres,
)
from tests.e2e.conftest import Corral

WORKERS = 3
CONCURRENCY = 4
SIMPLE = 3_500  # simple jobs: one iteration each
MULTI = 1_500  # multi-step processes of 2 to 4 steps: start, steps, finish
LATE = 0.2  # the share of both submitted while the workers run,
GRAPHS = 50  # task graphs of 6 processes each, submitted in batches
LATE_BATCHES = 5  # in this many batches,
LATE_EVERY = 5.0  # one every so many seconds: the chaos lasts 25 s at least
KILL_EVERY = (0.5, 2.0)  # seconds between two kills
LEASE = 1.0  # seconds: a killed worker's iterations are taken over about a second later
FREEZE_CHANCE = 0.3  # after a kill, the chance that another worker is frozen (SIGSTOP)
FREEZE_FOR = (1.5, 3.0)  # seconds: longer than the lease
RESTARTS_AT = (0.3, 0.6)  # PostgreSQL restarts once this share of the processes has ended
#: Seconds from the first worker's start to the last process's end, at most. Measured on
#: the 2-core machine: 25 to 44 s on SQLite, 30 to 57 s on PostgreSQL (two restarts).
BUDGET = 120.0
TERMINAL = ("completed", "failed", "canceled")


@dataclass
class Chaos:
    """One chaos run: the command line on one database, its workers, and what was done."""

    backend: str
    corral: Corral
    app: App
    url: str
    audit: Path
    rng: random.Random
    simple: dict[str, int] = field(default_factory=dict)  # id -> x
    multi: dict[str, int] = field(default_factory=dict)  # id -> steps
    gathers: dict[str, tuple[list[str], int]] = field(default_factory=dict)  # deps, result
    poisons: list[str] = field(default_factory=list)
    killers: list[str] = field(default_factory=list)
    killed_by_job: int = 0  # workers killed by the killer process
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0
    freezes: int = 0
    frozen: dict[int, threading.Timer] = field(default_factory=dict)  # pid -> its thaw
    freezing: threading.Lock = field(default_factory=threading.Lock)
    refused: int = 0  # replacements that could not connect to start with
    restarts: int = 0
    crashed: list[str] = field(default_factory=list)  # the last lines of their logs
    restarted_at: list[int] = field(default_factory=list)  # processes ended by then
    seconds: float = 0.0

    @property
    def submitted(self) -> int:
        return (
            len(self.simple)
            + len(self.multi)
            + len(self.gathers)
            + len(self.poisons)
            + len(self.killers)
        )

    def submit_graphs(self, count: int) -> None:
        """`count` task graphs, each in one batch: squares, a gather of them, a gather of
        that gather and the first square."""
        for _ in range(count):
            base = len(self.simple) + 1_000_000  # xs of their own: results tell them apart
            xs = [base + i for i in range(4)]
            with self.app.batch() as b:
                squares = [b.submit("square", {"x": x}) for x in xs]
                first = b.submit("gather", depends_on=squares)
                second = b.submit("gather", depends_on=[first, squares[0]])
            for node, x in zip(squares, xs, strict=True):
                self.simple[node.id] = x
            total = sum(x * x for x in xs)
            self.gathers[first.id] = ([n.id for n in squares], total)
            self.gathers[second.id] = ([first.id, squares[0].id], total + xs[0] * xs[0])

    def submit_misbehaving(self) -> None:
        """The poison processes and the killer, among the first of the healthy ones."""
        kinds = [{"kind": k} for k in ("store", "nan", "result")]
        self.poisons = [s.id for s in self.app.submit_many("poison", kinds)]
        self.killers = [self.app.submit("killer").id]

    def submit(self, simple: int, multi: int) -> None:
        base = len(self.simple)
        xs = range(base, base + simple)
        for s, x in zip(self.app.submit_many("square", [{"x": x} for x in xs]), xs, strict=True):
            self.simple[s.id] = x
        steps = [2 + self.rng.randrange(3) for _ in range(multi)]
        params = [{"steps": n} for n in steps]
        for s, n in zip(self.app.submit_many("counter", params), steps, strict=True):
            self.multi[s.id] = n

    def finished(self) -> int:
        """How many processes have ended; -1 when the database does not answer (the shared
        PostgreSQL server may be restarting, by this test or another)."""
        terminal = ", ".join(f"'{s}'" for s in TERMINAL)
        sql = f"SELECT count(*) FROM corral_process WHERE status IN ({terminal})"
        try:
            [(n,)] = query(self.url, sql)
        except psycopg.OperationalError as exc:
            print(f"chaos {self.backend}: no answer ({exc}); carrying on")
            return -1
        return int(n)

    # --- the workers and the killer ----------------------------------------------------------
    def start_worker(self) -> subprocess.Popen[bytes]:
        return self.corral.start_worker("--concurrency", str(CONCURRENCY))

    def replace_the_dead(self) -> None:
        """A worker that exited without our SIGKILL crashed: note it and start another.

        Except one that never started because it could not reach PostgreSQL (exit 3, as
        documented): it was still starting when the server went down (restarted by this
        test, or by another: the server is shared)."""
        for i, w in enumerate(self.workers):
            if w.poll() is None:
                continue
            self.unfreeze(w, thaw=False)
            log = self.corral.log_of(w)
            if w.returncode == 3 and "cannot connect" in log and " started (" not in log:
                self.refused += 1
            elif w.returncode == KILLER_EXIT:
                self.killed_by_job += 1
            else:
                tail = "\n".join(log.splitlines()[-15:])
                self.crashed.append(f"worker {w.pid} exited {w.returncode}:\n{tail}")
            self.workers[i] = self.start_worker()

    def kill_one(self) -> None:
        i = self.rng.randrange(len(self.workers))
        victim = self.workers[i]
        self.unfreeze(victim, thaw=False)  # SIGKILL ends a stopped process too
        self.corral.kill(victim)  # SIGKILL, and reap it
        self.kills += 1
        self.workers[i] = self.start_worker()

    def maybe_freeze_one(self) -> None:
        """Now and then stop a worker (SIGSTOP) for longer than its lease: when it wakes up,
        others have taken its processes over, and the commits of the iterations it finished
        must not land. A timer thread wakes it whatever the main loop is doing (a submit may
        be waiting for the SQLite write lock that the frozen worker holds)."""
        awake = [w for w in self.workers if w.pid not in self.frozen and w.poll() is None]
        if len(awake) < 2 or self.rng.random() >= FREEZE_CHANCE:
            return
        w = self.rng.choice(awake)
        timer = threading.Timer(self.rng.uniform(*FREEZE_FOR), self.unfreeze, (w,))
        timer.daemon = True
        with self.freezing:
            os.kill(w.pid, signal.SIGSTOP)
            self.frozen[w.pid] = timer
        timer.start()
        self.freezes += 1

    def unfreeze(self, w: subprocess.Popen[bytes], *, thaw: bool = True) -> None:
        """Forget `w`'s freeze (cancel its timer) and, if `thaw`, send it SIGCONT. Under the
        lock, so that a timer never signals a process that was killed and reaped meanwhile."""
        with self.freezing:
            timer = self.frozen.pop(w.pid, None)
            if timer is None:
                return
            timer.cancel()
            if thaw:
                os.kill(w.pid, signal.SIGCONT)

    def thaw_all(self) -> None:
        for w in self.workers:
            self.unfreeze(w)

    def run(self, restarts_at: tuple[float, ...] = ()) -> None:
        """Start the workers, kill one every 0.5 to 2 s until every process has ended,
        submitting the late share and restarting PostgreSQL on the way; then stop the rest."""
        batch = (round(SIMPLE * LATE / LATE_BATCHES), round(MULTI * LATE / LATE_BATCHES))
        self.submit(SIMPLE - batch[0] * LATE_BATCHES, MULTI - batch[1] * LATE_BATCHES)
        self.submit_graphs(GRAPHS // 2)
        self.submit_misbehaving()
        total = SIMPLE + MULTI + GRAPHS * 6 + len(self.poisons) + len(self.killers)
        late = 0  # late batches submitted so far
        self.workers = [self.start_worker() for _ in range(WORKERS)]
        began = time.monotonic()
        pending = [round(share * total) for share in restarts_at]
        while True:
            time.sleep(self.rng.uniform(*KILL_EVERY))
            self.replace_the_dead()
            done = self.finished()
            if done == total == self.submitted:
                break
            if late < LATE_BATCHES and time.monotonic() - began >= LATE_EVERY * (late + 1):
                self.submit(*batch)
                self.submit_graphs(GRAPHS // 2 // LATE_BATCHES)
                late += 1
            while pending and done >= pending[0]:
                pending.pop(0)
                restart_postgres()
                self.restarts += 1
                self.restarted_at.append(done)
            self.seconds = time.monotonic() - began
            assert self.seconds < BUDGET, (
                f"{total - done} of {total} processes still unfinished after {BUDGET} s: "
                f"{self.figures_so_far()}"
            )
            self.kill_one()
            self.maybe_freeze_one()
        self.seconds = time.monotonic() - began
        self.thaw_all()
        codes = {w.pid: self.corral.stop(w) for w in self.workers}
        assert set(codes.values()) == {0}, {
            pid: (code, self.corral.logs[pid].read_text()[-3000:]) for pid, code in codes.items()
        }

    def figures_so_far(self) -> str:
        return (
            f"kills={self.kills} freezes={self.freezes} restarts={self.restarts} "
            f"crashed={len(self.crashed)} refused={self.refused} "
            f"killed_by_job={self.killed_by_job}"
        )


@dataclass
class Figures:
    processes: int = 0
    lost: int = 0  # missing, not terminal, or never submitted
    failed: int = 0  # failed or canceled
    wrong: int = 0  # completed with a wrong result, store counter or store audit
    wrong_history: int = 0  # a status transition missing or recorded twice
    duplicate_commits: int = 0  # an iteration committed twice
    missing_commits: int = 0  # an iteration of a completed process never committed
    tokens_not_increasing: int = 0
    stale_commits: int = 0  # committed from a lease that a later claim had taken over
    unaudited: int = 0  # committed, yet no audit line says it ran: the check would be blind
    out_of_order: int = 0  # a graph node made runnable before one of its dependencies ended
    committed: int = 0  # iterations in the stores
    ran: int = 0  # iterations that ran (audit lines), killed or not
    examples: list[str] = field(default_factory=list)

    def problem(self, what: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(what)


TRANSITIONS = {
    "square": [("starting", "completed")],
    "counter": [("starting", "running"), ("running", "ending"), ("ending", "completed")],
    "gather": [("waiting", "starting"), ("starting", "completed")],
}


def expected_entries(job: str, steps: int) -> list[tuple[str, int]]:
    if job in ("square", "gather"):
        return [("run", 0)]
    return [("start", 0), *(("step", i) for i in range(1, steps + 1)), ("finish", 0)]


def check(chaos: Chaos) -> Figures:
    """Read every process and every audit line; count what is wrong (see the module doc)."""
    chaos.app.close()  # a fresh connection: the old one may predate a server restart
    processes = chaos.app.storage.process_list(ProcessFilter(limit=10**7, newest_first=False))
    runs: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    ran = 0
    for pid, _phase, _n, index, token in read_audit(chaos.audit):
        runs[pid][index].append(token)
        ran += 1
    # The history's transitions are written in the same transactions as the commits that
    # make them: each must be there exactly once.
    transitions: dict[str, list[tuple[str, str]]] = defaultdict(list)
    sql = "SELECT process_id, from_status, to_status FROM corral_history WHERE kind = 'transition'"
    for pid, src, dst in query(chaos.url, sql + " ORDER BY id"):
        transitions[pid].append((src, dst))
    f = Figures(processes=chaos.submitted, ran=ran)
    by_id = {p.id: p for p in processes}
    expected = {**{pid: 0 for pid in (*chaos.simple, *chaos.gathers)}, **chaos.multi}
    misbehaving = check_misbehaving(f, chaos, by_id)
    f.lost = len(set(expected) - set(by_id))
    extra = set(by_id) - set(expected) - misbehaving
    if extra:
        f.problem(f"{len(extra)} processes nobody submitted, e.g. {sorted(extra)[:3]}")
        f.lost += len(extra)
    for pid, steps in expected.items():
        p = by_id.get(pid)
        if p is None:
            f.problem(f"{pid}: missing")
            continue
        if p.status.value not in TERMINAL:
            f.lost += 1
            f.problem(f"{pid}: still {p.status.value}")
            continue
        if p.status is not Status.COMPLETED:
            f.failed += 1
            f.problem(f"{pid}: {p.status.value}: {p.error}")
            continue
        want = chaos.gathers[pid][1] if pid in chaos.gathers else None
        x = chaos.simple.get(pid)
        check_one(f, p.job, steps, x, p.store, p.result, runs[pid], pid, want)
        if p.lease_owner is not None or p.lease_expires_at is not None or p.attempt != 0:
            # Its last commit released the lease and reset the attempts
            # (docs/leases-and-fencing.md).
            f.wrong += 1
            f.problem(f"{pid}: completed, yet {p.lease_owner=} {p.lease_expires_at=} {p.attempt=}")
        if transitions[pid] != TRANSITIONS[p.job]:
            f.wrong_history += 1
            f.problem(f"{pid}: transitions {transitions[pid]}")
    check_dependency_order(f, chaos, by_id)
    return f


#: How far apart two workers' estimates of PostgreSQL's clock may be (each stamps the
#: times it writes with its own estimate; they differed by 0.8 ms in a CI run).
CLOCK_ESTIMATES_APART = 0.05


def check_dependency_order(f: Figures, chaos: Chaos, by_id: dict[str, Process]) -> None:
    """Each gather was made runnable only once every dependency of it had ended: its
    promotion's time is not before any dependency's end, give or take the distance
    between two workers' clocks on PostgreSQL (one machine's clock on SQLite). That it
    *ran* after they had all completed, the gather checks itself when it runs."""
    slack = CLOCK_ESTIMATES_APART if chaos.backend == "postgres" else 0.0
    for pid, (deps, _) in chaos.gathers.items():
        # Its promotion only: a killed iteration's `attempt` and `lease_expired` events
        # name `starting` too.
        promoted = [
            e.at
            for e in chaos.app.history(pid)
            if e.kind == "transition" and e.from_status is Status.WAITING
        ]
        ended = [by_id[d].finished_at for d in deps if d in by_id]
        if len(promoted) != 1 or len(ended) != len(deps) or None in ended:
            f.out_of_order += 1
            f.problem(f"{pid}: promoted at {promoted}, dependencies ended at {ended}")
        elif any(e is not None and e > promoted[0] + slack for e in ended):
            f.out_of_order += 1
            f.problem(f"{pid}: promoted at {promoted[0]}, before a dependency ended {ended}")


def check_one(
    f: Figures,
    job: str,
    steps: int,
    x: int | None,
    store: dict[str, object],
    result: object,
    runs: dict[int, list[int]],
    pid: str,
    want_result: object = None,
) -> None:
    audit = store.get("audit")
    assert isinstance(audit, list), (pid, store)
    entries = [(str(phase), int(n)) for phase, n, _ in audit]
    tokens = [int(token) for _, _, token in audit]
    f.committed += len(entries)
    want = expected_entries(job, steps)
    f.duplicate_commits += len(entries) - len(set(entries))
    f.missing_commits += len(set(want) - set(entries))
    if job == "gather":
        right_result = result == want_result
    else:
        right_result = result == (x * x if x is not None else steps)
    counter_ok = job in ("square", "gather") or (
        store.get("count") == steps == sum(1 for phase, _ in entries if phase == "step")
    )
    if entries != want or not right_result or not counter_ok:
        f.wrong += 1
        f.problem(f"{pid} ({job}, {steps} steps): store {store}, result {result!r}")
    if any(b <= a for a, b in itertools.pairwise(tokens)):
        f.tokens_not_increasing += 1
        f.problem(f"{pid}: tokens {tokens}")
    for index, token in enumerate(tokens):
        ran_here = runs.get(index, [])
        if token not in ran_here:
            f.unaudited += 1
            f.problem(f"{pid}: entry {index} committed by token {token}, which never ran it")
        later = [t for t in ran_here if t > token]
        if later:
            # Another claim ran this same iteration on the store as it was before this
            # entry: this one's lease had been taken over, yet its commit landed.
            f.stale_commits += 1
            f.problem(f"{pid}: entry {index} by token {token}, also run later by {later}")


def check_misbehaving(f: Figures, chaos: Chaos, by_id: dict[str, Process]) -> set[str]:
    """The poison processes failed with their own error, the killer with LeaseExpired after
    its attempts, each on its own; returns their ids."""
    for pid, error_type in [
        *((p, "NotStorable") for p in chaos.poisons),
        *((k, "LeaseExpired") for k in chaos.killers),
    ]:
        p = by_id.get(pid)
        if p is None or p.status is not Status.FAILED or p.error is None:
            f.lost += 1
            f.problem(f"{pid}: should have failed, is {p and p.status.value}")
        elif p.error.type != error_type:
            f.wrong += 1
            f.problem(f"{pid}: failed with {p.error.type}: {p.error.message}, not {error_type}")
    return {*chaos.poisons, *chaos.killers}


def history_counts(url: str) -> Counter[str]:
    return Counter(dict(query(url, "SELECT kind, count(*) FROM corral_history GROUP BY kind")))


@contextmanager
def chaos_on(backend: str, tmp_path: Path) -> Iterator[Chaos]:
    """A private database with corral's tables, the command line on it with the chaos app,
    and the test's own app for submitting; every worker left running is killed at the end."""
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(2**32))
    print(f"\nchaos {backend}: CHAOS_SEED={seed}")
    with ExitStack() as stack:
        url = stack.enter_context(backend_url(backend, tmp_path))
        audit = tmp_path / "audit"
        audit.mkdir()
        corral = Corral(tmp_path, CHAOS_APP)
        corral.url = url
        corral.extra_env.update(
            CHAOS_LEASE_SECONDS=str(LEASE), CHAOS_AUDIT_DIR=str(audit), CHAOS_MAX_SLEEP_MS="20"
        )
        stack.callback(corral.cleanup)
        app = load_app(str(CHAOS_APP))
        app.use_database(url)
        stack.callback(app.close)
        app.storage.migrate()  # the schema exists before the workers race to open it
        chaos = Chaos(backend, corral, app, url, audit, random.Random(seed))
        stack.callback(chaos.thaw_all)  # before the cleanup kills them: no timer left
        yield chaos


def report(chaos: Chaos) -> Figures:
    """Check the run, print its figures, then assert them."""
    f = check(chaos)
    events = history_counts(chaos.url)
    restarted_at = "/".join(str(n) for n in chaos.restarted_at)
    print(
        f"chaos {chaos.backend}: processes={f.processes} kills={chaos.kills} "
        f"freezes={chaos.freezes} "
        f"restarts={chaos.restarts} lost={f.lost} duplicate_commits={f.duplicate_commits} "
        f"stale_commits={f.stale_commits} failed={f.failed} crashed={len(chaos.crashed)} "
        f"refused_to_start={chaos.refused} killed_by_job={chaos.killed_by_job} "
        f"lease_expired={events['lease_expired']} lease_lost={events['lease_lost']} "
        f"graph_nodes={len(chaos.gathers) * 3} out_of_order={f.out_of_order} "
        f"iterations_committed={f.committed} iterations_ran={f.ran} seconds={chaos.seconds:.1f}"
        + (f" restarted_after={restarted_at}" if restarted_at else "")
    )
    assert chaos.crashed == [], "\n\n".join(chaos.crashed)
    assert f.examples == [], "\n".join(f.examples)
    assert (f.lost, f.failed, f.wrong, f.wrong_history) == (0, 0, 0, 0)
    assert (f.duplicate_commits, f.missing_commits, f.stale_commits) == (0, 0, 0)
    assert (f.tokens_not_increasing, f.unaudited, f.out_of_order) == (0, 0, 0)
    assert f.processes >= 5_000 and len(chaos.gathers) >= GRAPHS
    assert chaos.kills >= 10, "the work ended before the killer could disturb it"
    # The killer process ran out of attempts, killing a worker at each.
    assert 1 <= chaos.killed_by_job <= KILLER_ATTEMPTS
    assert events["lease_expired"] >= 1, "no kill landed in the middle of an iteration"
    return f


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(200)
def test_chaos_sqlite(tmp_path: Path) -> None:
    with chaos_on("sqlite", tmp_path) as chaos:
        chaos.run()
        report(chaos)
        assert chaos.refused == 0


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.postgres
@pytest.mark.timeout(200)
def test_chaos_postgres(tmp_path: Path) -> None:
    require_restartable_postgres()
    with chaos_on("postgres", tmp_path) as chaos, postgres_left_running():
        chaos.run(restarts_at=RESTARTS_AT)
        report(chaos)
        assert chaos.restarts == 2


def test_the_checker_sees_stale_duplicate_and_lost_commits() -> None:
    """The checker is not blind: fabricated stores and audit lines, each with one fault."""

    def figures(audit: list[list[object]], runs: dict[int, list[int]], count: int = 2) -> Figures:
        f = Figures()
        store = {"count": count, "audit": audit}
        check_one(f, "counter", 2, None, store, count, runs, "p")
        return f

    good = [["start", 0, 1], ["step", 1, 3], ["step", 2, 4], ["finish", 0, 6]]
    ran = {0: [1], 1: [2, 3], 2: [4], 3: [5, 6]}  # tokens 2 and 5: killed tries
    f = figures(good, ran)
    assert (f.wrong, f.stale_commits, f.unaudited, f.tokens_not_increasing) == (0, 0, 0, 0)
    assert (f.duplicate_commits, f.missing_commits, f.committed, f.examples) == (0, 0, 4, [])
    # Token 3 committed step 1 after token 4 had claimed the process and run step 1 again.
    assert figures(good, {**ran, 1: [3, 4]}).stale_commits == 1
    # A committed entry that no iteration ran.
    assert figures(good, {**ran, 2: [7]}).unaudited == 1
    dup = figures([*good[:2], ["step", 1, 4], ["step", 2, 5], ["finish", 0, 6]], ran, count=2)
    assert (dup.duplicate_commits, dup.wrong) == (1, 1)
    lost = figures([good[0], good[2], good[3]], ran, count=1)
    assert (lost.missing_commits, lost.wrong) == (1, 1)
    assert figures([good[0], good[1], ["step", 2, 2], good[3]], ran).tokens_not_increasing == 1
    assert figures(good, ran, count=3).wrong == 1
