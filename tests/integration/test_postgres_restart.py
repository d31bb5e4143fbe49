"""Connection loss: the PostgreSQL server restarts while two `corral worker` processes work
through a stream of processes. The workers are not restarted: they log the outage once,
back off, reconnect, and carry on. Every process completes; iterations may run more than
once, but every committed store write lands exactly once.

This restarts the shared server (pg_ctlcluster, as root), so it runs only where the
server is a local Debian cluster; it always leaves the server running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_until
from tests.integration.fleet import fleet, stop_line, wait_started

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLUSTERS = Path("/etc/postgresql")
NAPS = 2_000  # simple jobs of 5 ms
MULTI = 200  # processes of 3 to 5 steps of 5 ms
AFTER = 200  # simple jobs submitted once the server is back
SLEEP = 0.005
#: Short, so that a claim whose answer the restart swallowed is taken over soon.
LEASE = 5.0


def pg_ctl(action: str, *, check: bool = True) -> None:
    [version] = os.listdir(CLUSTERS)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=check,
        capture_output=True,
        timeout=120,
    )


def server_ready() -> bool:
    r = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False)
    return r.returncode == 0


def require_local_cluster() -> None:
    problem = None
    if shutil.which("pg_ctlcluster") is None or not CLUSTERS.is_dir():
        problem = "no local Debian PostgreSQL cluster to restart (pg_ctlcluster)"
    elif len(os.listdir(CLUSTERS)) != 1:
        problem = f"more than one PostgreSQL version in {CLUSTERS}"
    elif os.geteuid() != 0:
        problem = "restarting PostgreSQL needs root"
    if problem and os.environ.get("CI"):
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


@contextmanager
def server_left_running() -> Iterator[None]:
    """Whatever happens in the test, PostgreSQL is running afterwards: other tests need it."""
    try:
        yield
    finally:
        if not server_ready():
            pg_ctl("start", check=False)  # fails if it is starting already: then wait
            wait_until(server_ready, timeout=60, interval=0.5, what="PostgreSQL to start")


def outage_lines(log: str) -> tuple[list[str], list[str], list[str]]:
    """The storage's warnings that the server went away, the worker loop's own note, and
    psycopg_pool's warnings of failed reconnection attempts (its own backoff: 1, 2, 4 s…)."""
    lines = log.splitlines()
    storage = [x for x in lines if "corral.storage.postgres" in x and "is unavailable" in x]
    worker = [x for x in lines if "corral.worker" in x and "database unavailable" in x]
    pool = [x for x in lines if "psycopg.pool" in x and "error connecting" in x]
    return storage, worker, pool


def test_workers_carry_on_after_a_postgresql_restart(tmp_path: Path) -> None:
    require_local_cluster()
    with fleet(tmp_path, lease_seconds=LEASE) as f, server_left_running():
        workers = [f.corral.start_worker("--concurrency", "4") for _ in range(2)]
        wait_started(f.corral, workers)
        f.submit(range(NAPS), [3 + i % 3 for i in range(MULTI)], sleep=SLEEP)
        total = NAPS + MULTI
        # Mid-run: a fifth of the processes done, most still to come.
        wait_until(lambda: f.finished() >= total // 5, timeout=60, what="a fifth done")
        began = time.monotonic()
        pg_ctl("restart", check=False)  # returns once the server accepts connections again,
        if not server_ready():  # unless a restart of someone else's crossed ours
            pg_ctl("start", check=False)
            wait_until(server_ready, timeout=60, interval=0.5, what="PostgreSQL to start")
        restart = time.monotonic() - began
        done_after = f.finished()
        assert done_after < total, "the restart came too late to test anything"
        # New work after the restart: workers hear of it (LISTEN again, or poll).
        f.submit(range(NAPS, NAPS + AFTER), [], sleep=SLEEP)
        wait_until(lambda: f.unfinished() == 0, timeout=120, interval=0.5, what="the stream")
        elapsed = time.monotonic() - began
        # Still the same two processes, never restarted: SIGTERM stops each cleanly.
        assert all(w.poll() is None for w in workers)
        codes = [f.corral.stop(w) for w in workers]
        logs = [f.corral.log_of(w) for w in workers]
        assert codes == [0, 0], logs
        by_pid = f.check_exactly_once()
        assert set(by_pid) == {w.pid for w in workers}
        for w, log in zip(workers, logs, strict=True):
            storage, worker, pool = outage_lines(log)
            # The outage is logged once (twice at most: in a shutdown, a connection the
            # server has not closed yet may still answer between two that fail), not once
            # per try or per poll, though the loop claims and commits every few ms.
            assert 1 <= len(storage) <= 2, (w.pid, storage)
            assert len(worker) <= 2, (w.pid, worker)
            assert len(storage) + len(worker) + len(pool) <= 10, (w.pid, storage, worker, pool)
            assert "Traceback" not in log, log
            assert stop_line(log)[0] == "signal"
        print(
            f"\nrestart took {restart:.1f} s, {done_after}/{total} done just after; all "
            f"{total + AFTER} done {elapsed:.1f} s after it began"
        )
