"""Connection loss: the PostgreSQL server restarts while two `corral worker` processes work
through a stream of processes. The workers are not restarted: they log the outage once,
back off, reconnect, and carry on. Every process completes; iterations may run more than
once, but every committed store write lands exactly once.

This restarts the shared server (pg_ctlcluster, as root), so it runs only where the
server is a local Debian cluster; it always leaves the server running.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_until
from tests.integration.fleet import fleet, stop_line, wait_started
from tests.pg import postgres_left_running, require_restartable_postgres, restart_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NAPS = 2_000  # simple jobs of 5 ms
MULTI = 200  # processes of 3 to 5 steps of 5 ms
AFTER = 200  # simple jobs submitted once the server is back
SLEEP = 0.005
#: Short, so that a claim whose answer the restart swallowed is taken over soon.
LEASE = 5.0


def outage_lines(log: str) -> tuple[list[str], list[str], list[str]]:
    """The storage's warnings that the server went away, the worker loop's own note, and
    psycopg_pool's warnings of failed reconnection attempts (its own backoff: 1, 2, 4 s…)."""
    lines = log.splitlines()
    storage = [x for x in lines if "corral.storage.postgres" in x and "is unavailable" in x]
    worker = [x for x in lines if "corral.worker" in x and "database unavailable" in x]
    pool = [x for x in lines if "psycopg.pool" in x and "error connecting" in x]
    return storage, worker, pool


def test_workers_carry_on_after_a_postgresql_restart(tmp_path: Path) -> None:
    require_restartable_postgres()
    with fleet(tmp_path, lease_seconds=LEASE) as f, postgres_left_running():
        workers = [f.corral.start_worker("--concurrency", "4") for _ in range(2)]
        wait_started(f.corral, workers)
        f.submit(range(NAPS), [3 + i % 3 for i in range(MULTI)], sleep=SLEEP)
        total = NAPS + MULTI
        # Mid-run: a fifth of the processes done, most still to come.
        wait_until(lambda: f.finished() >= total // 5, timeout=60, what="a fifth done")
        began = time.monotonic()
        restart_postgres()  # returns once the server accepts connections again
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
