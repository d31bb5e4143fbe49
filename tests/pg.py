"""PostgreSQL for tests: a private schema per test, and the local server for the tests
that restart it (always leaving it running)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with its connections' search_path set to `schema`."""
    parts = urlsplit(base_url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


@contextmanager
def isolated_schema_url(base_url: str, schema: str) -> Iterator[str]:
    """Create schema `schema`, yield a URL whose connections use it, then drop it."""
    name = sql.Identifier(schema)
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
    try:
        yield schema_url(base_url, schema)
    finally:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))


# --- the local PostgreSQL server, for tests that restart it ---------------------------

CLUSTERS = Path("/etc/postgresql")


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
