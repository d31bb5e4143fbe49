"""`corral worker --processes MIN..MAX`: a supervisor of real worker subprocesses, on
SQLite and PostgreSQL. Under a burst it grows to its maximum; when the burst is over it
shrinks to its minimum by quieting idle workers, and no iteration is cut short (every
process ran exactly once, no lease expired or was lost). A worker that dies at start over
and over stops the restarts, and the supervisor exits with its own code."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import ProcessFilter, Storage
from corral.supervisor import EXIT_CRASH_LOOP
from tests.backends import backend_url
from tests.e2e.conftest import Corral, wait_until

APP = Path(__file__).parent / "apps" / "e2e_supervised.py"
BURST = 2000


@pytest.fixture(params=["sqlite", "postgres"])
def supervised(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Corral]:
    with backend_url(str(request.param), tmp_path) as url:
        c = Corral(tmp_path, APP)
        c.url = url
        c.extra_env["E2E_RUNS"] = str(tmp_path / "runs")
        try:
            yield c
        finally:
            c.cleanup()


def registered(storage: Storage) -> int:
    return len(storage.worker_list())


def leased(storage: Storage, process_id: str) -> bool:
    p = storage.process_get(process_id)
    return p is not None and p.lease_owner is not None


@pytest.mark.slow
def test_a_burst_scales_up_then_down_and_every_process_runs_once(supervised: Corral) -> None:
    c = supervised
    c.extra_env["E2E_TICK_SECONDS"] = "0.02"
    sup = c.start(
        "--log-level", "INFO", "worker", "--processes", "1..4", "--concurrency", "2",
        "--scale-down-after", "2s", "--grace", "10s",
    )  # fmt: skip
    storage = open_storage(c.url)
    try:
        # Given one idle worker (the minimum)...
        wait_until(lambda: registered(storage) == 1, timeout=60, what="the first worker")
        # ...when a burst comes, the supervisor grows at once...
        ids = c.submit_many([("tick", {"n": n}) for n in range(BURST)])
        most = wait_until(
            lambda: (n := registered(storage)) > 1 and n, timeout=60, what="more than one worker"
        )
        done = ProcessFilter(status=Status.COMPLETED)
        while storage.process_count(done) < BURST:
            most = max(most, registered(storage))
            assert sup.poll() is None, c.log_of(sup)[-3000:]
            time.sleep(0.2)
        # ...and once it is over, shrinks back to one worker, which it keeps.
        wait_until(lambda: registered(storage) == 1, timeout=60, what="one worker again")
        assert most > 1
        # The supervisor saw the ones it let go exit on their own.
        wait_until(
            lambda: 0 < (log := c.log_of(sup)).count("quieting") == log.count("exited (exit 0)"),
            timeout=30,
            what="the quiet workers to exit",
        )
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=60) == 0, c.log_of(sup)[-3000:]
        assert registered(storage) == 0
        history = [e.kind for pid in ids for e in storage.history_list(pid)]
    finally:
        storage.close()
    log = c.log_of(sup)
    # Every process ran exactly once: nothing was cut short and run again.
    runs = Counter((Path(c.extra_env["E2E_RUNS"])).read_text().split())
    assert sorted(map(int, runs)) == list(range(BURST))
    assert set(runs.values()) == {1}
    assert "lease_expired" not in history and "lease_lost" not in history
    # Each step said in the log: up, quieting (idle ones), their exits, the drain.
    assert "scaling from 1 to" in log and "held to" in log  # by MAX, or by the budget
    assert "quieting worker" in log and "exited (exit 0)" in log
    assert "told to stop claiming; what it ran has ended (quiet)" in log
    assert "draining 1 worker (" in log and "supervisor" in log.splitlines()[-1]
    assert "killing worker" not in log and "crashed" not in log


def test_a_worker_that_dies_at_start_stops_the_restarts(tmp_path: Path) -> None:
    c = Corral(tmp_path, APP)
    c.extra_env["E2E_DIE_AT_START"] = "1"
    try:
        sup = c.start("--log-level", "INFO", "worker", "--processes", "2")
        code = sup.wait(timeout=120)
        log = c.log_of(sup)
        assert code == EXIT_CRASH_LOOP, log[-3000:]
        assert "crash loop, restarts stopped" in log
        assert log.count("died") >= 5 and "restarting in" in log
        # It said what it did at the end, then stopped (the others were drained).
        assert f"stopped (exit {EXIT_CRASH_LOOP})" in log.splitlines()[-1]
    finally:
        c.cleanup()


def test_processes_refuses_a_bad_range_and_once(tmp_path: Path) -> None:
    c = Corral(tmp_path, APP)
    bad = c.run("worker", "--processes", "4..2")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: --processes: the maximum (2) is below the minimum (4)")
    once = c.run("worker", "--processes", "2", "--once")
    assert once.returncode == 2 and "--once and --processes" in once.stderr
    # A worker's own option is checked before any worker starts: one line, not a crash loop.
    memory = c.run("worker", "--processes", "2", "--max-memory", "-5")
    assert (memory.returncode, memory.stderr.strip()) == (
        2,
        "error: --max-memory must be more than 0 MB",
    )
    assert "Traceback" not in bad.stderr + once.stderr


@pytest.mark.parametrize("then_term", [False, True])
def test_a_quiet_worker_finishes_its_iteration_then_exits(tmp_path: Path, then_term: bool) -> None:
    """SIGUSR1 (what a supervisor sends to shrink): no new claim, the running iteration
    ends and commits, exit 0. A SIGTERM after it starts the grace, it does not cut the
    iteration short."""
    c = Corral(tmp_path, APP)
    c.extra_env["E2E_RUNS"] = str(tmp_path / "runs")
    c.extra_env["E2E_TICK_SECONDS"] = "4"
    storage = open_storage(c.url)
    try:
        first = c.submit("tick", "n=1")
        second = c.submit("tick", "n=2")
        w = c.start_worker("--concurrency", "1")
        wait_until(lambda: leased(storage, first), timeout=60, what="the first one leased")
        w.send_signal(signal.SIGUSR1)
        if then_term:
            w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=30) == 0, c.log_of(w)
        log = c.log_of(w)
        assert c.show(first)["status"] == "completed"
        assert c.show(second)["status"] == "starting" and not c.show(second)["lease_owner"]
        assert "0 leases given back" in log
        assert "(quiet)" in log  # why it stopped: the first request
    finally:
        storage.close()
        c.cleanup()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_killed_supervisor_takes_its_workers_with_it(tmp_path: Path) -> None:
    c = Corral(tmp_path, APP)
    c.extra_env["E2E_RUNS"] = str(tmp_path / "runs")
    storage = open_storage(c.url)
    try:
        sup = c.start("--log-level", "INFO", "worker", "--processes", "2")
        wait_until(lambda: registered(storage) == 2, timeout=60, what="two workers")
        pids = [w.pid for w in storage.worker_list()]
        c.kill(sup)  # SIGKILL: no drain; each worker gets SIGTERM from the kernel instead
        wait_until(lambda: registered(storage) == 0, timeout=60, what="the workers to stop")
        wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=30, what="exits")
        log = c.log_of(sup)
        assert log.count("stopped: told to stop (signal)") == 2, log
    finally:
        storage.close()
        c.cleanup()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_drains_busy_workers_within_the_grace(tmp_path: Path) -> None:
    """An iteration longer than the grace: the supervisor forwards SIGTERM, the worker
    waits out its grace and gives the lease back (for another worker to continue at once),
    and the supervisor exits 0 once its workers have."""
    c = Corral(tmp_path, APP)
    c.extra_env["E2E_RUNS"] = str(tmp_path / "runs")
    c.extra_env["E2E_TICK_SECONDS"] = "60"
    storage = open_storage(c.url)
    try:
        long = c.submit("tick", "n=1")
        sup = c.start("--log-level", "INFO", "worker", "--processes", "1", "--grace", "1s")
        wait_until(lambda: leased(storage, long), timeout=60, what="the iteration")
        began = time.monotonic()
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=30) == 0, c.log_of(sup)
        assert time.monotonic() - began < 15
        log = c.log_of(sup)
        assert "draining 1 worker (the supervisor was told to stop)" in log
        assert "1 leases given back" in log and "killing worker" not in log
        shown = c.show(long)
        assert shown["status"] == "starting" and shown["lease_owner"] is None
    finally:
        storage.close()
        c.cleanup()
