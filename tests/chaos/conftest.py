"""Helpers for the chaos tests: read the database behind the workers' backs, read the
workers' audit files, and restart the local PostgreSQL server (always leaving it running).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
CHAOS_APP = HERE / "apps" / "chaos_app.py"
CLUSTERS = Path("/etc/postgresql")


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read-only statement on the database of `url` (its own connection)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
            return conn.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def read_audit(directory: Path) -> list[tuple[str, str, int, int, int]]:
    """Every iteration that ran: (process id, phase, n, index, token), from all workers."""
    runs = []
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text().splitlines():
            pid, phase, n, index, token = line.split()
            runs.append((pid, phase, int(n), int(index), int(token)))
    return runs


# --- the PostgreSQL server -----------------------------------------------------------------


def _pg_ctl(action: str) -> str:
    """Run `pg_ctlcluster ACTION`; its exit code and output (empty when it succeeded)."""
    [version] = os.listdir(CLUSTERS)
    r = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "" if r.returncode == 0 else f"exit {r.returncode}: {r.stdout}{r.stderr}"


def postgres_ready() -> bool:
    r = subprocess.run(
        ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False, timeout=30
    )
    return r.returncode == 0


def require_restartable_postgres() -> None:
    """The test restarts the server: it needs the local Debian cluster, and root."""
    problem = None
    if shutil.which("pg_ctlcluster") is None or not CLUSTERS.is_dir():
        problem = "no local Debian PostgreSQL cluster to restart (pg_ctlcluster)"
    elif len(os.listdir(CLUSTERS)) != 1:
        problem = f"not exactly one PostgreSQL version in {CLUSTERS}"
    elif os.geteuid() != 0:
        problem = "restarting PostgreSQL needs root"
    if problem and os.environ.get("CI"):
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


def restart_postgres() -> None:
    """Restart the server; returns once it accepts connections again.

    The server is shared: another test may stop or start it at the same moment, and then
    one of the two starts fails ("lock file postmaster.pid already exists") although the
    server comes up. Only a server that stays down is an error."""
    failed = _pg_ctl("restart")
    if failed and not _ready_within(10):
        failed += _pg_ctl("start")
    assert _ready_within(60), f"PostgreSQL did not come back after a restart: {failed}"


def _ready_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not postgres_ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


@contextmanager
def postgres_left_running() -> Iterator[None]:
    """Whatever happens inside, PostgreSQL runs afterwards: other tests need it."""
    try:
        yield
    finally:
        if not _ready_within(5):
            failed = _pg_ctl("start")
            assert _ready_within(60), f"PostgreSQL did not start: {failed}"
