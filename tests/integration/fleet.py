"""Helpers for the PostgreSQL fleet tests: `corral worker` subprocesses (each its own
Python process and connection pool, as on separate machines) on one isolated schema, the
jobs of apps/pg_fleet.py, and the checks that every process ran to its end exactly once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from corral.app import App
from corral.loader import load_app
from tests.backends import backend_url
from tests.e2e.conftest import Corral

FLEET_APP = Path(__file__).resolve().parent / "apps" / "pg_fleet.py"
STOPPED = re.compile(
    r"stopped: [^()]*\(([\w -]+)\); (\d+) iterations?: (\d+) completed, (\d+) failed or "
    r"canceled, (\d+) leases lost, (\d+) leases given back"
)


@dataclass
class Fleet:
    """The command line on one PostgreSQL schema, and the test's own app on it."""

    corral: Corral
    app: App
    url: str
    simple: dict[str, int] = field(default_factory=dict)  # id -> x
    multi: dict[str, int] = field(default_factory=dict)  # id -> steps

    def submit(self, xs: range, steps: list[int], sleep: float = 0.0) -> None:
        """Bulk-submit simple jobs (one per x) and multi-step processes (one per count)."""
        if xs:
            params = [{"x": x, "sleep": sleep} for x in xs]
            for s, x in zip(self.app.submit_many("square", params), xs, strict=True):
                self.simple[s.id] = x
        if steps:
            params_m = [{"steps": n, "sleep": sleep} for n in steps]
            for s, n in zip(self.app.submit_many("steps", params_m), steps, strict=True):
                self.multi[s.id] = n

    @property
    def expected_iterations(self) -> int:
        return len(self.simple) + sum(n + 2 for n in self.multi.values())

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """A read on a connection of its own; retried while the server restarts."""
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    return conn.execute(sql, args).fetchall()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def unfinished(self) -> int:
        [(n,)] = self.query(
            "SELECT count(*) FROM corral_process "
            "WHERE status NOT IN ('completed', 'failed', 'canceled')"
        )
        return int(n)

    def finished(self) -> int:
        [(n,)] = self.query("SELECT count(*) FROM corral_process WHERE finished_at IS NOT NULL")
        return int(n)

    def check_exactly_once(self) -> dict[int, int]:
        """Every submitted process, and nothing else, completed with the right result, and
        its store holds each of its iterations exactly once. Returns iterations per pid."""
        rows = self.query(
            "SELECT id, job, status, store::text, result::text, error::text FROM corral_process"
        )
        assert len(rows) == len(self.simple) + len(self.multi), "processes appeared or vanished"
        assert {r[0] for r in rows} == set(self.simple) | set(self.multi)
        not_done = [(r[0], r[2], r[5]) for r in rows if r[2] != "completed"]
        assert not_done == [], f"{len(not_done)} not completed, e.g. {not_done[:3]}"
        by_pid: dict[int, int] = {}
        for pid, job, _, store_text, result_text, _ in rows:
            store, result = json.loads(store_text), json.loads(result_text)
            audit = store["audit"]
            for entry in audit:
                by_pid[entry[3]] = by_pid.get(entry[3], 0) + 1
            phases = [(phase, step) for phase, step, _, _ in audit]
            if job == "square":
                x = self.simple[pid]
                assert result == x * x, (pid, result)
                assert phases == [("run", 0)], (pid, audit)
            else:
                n = self.multi[pid]
                assert (store["n"], result) == (n, n), (pid, store)
                want = [("start", 0), *(("step", i) for i in range(1, n + 1)), ("finish", 0)]
                assert phases == want, (pid, audit)
        assert sum(by_pid.values()) == self.expected_iterations
        return by_pid


@contextmanager
def fleet(tmp_path: Path, lease_seconds: float | None = None) -> Iterator[Fleet]:
    """A private PostgreSQL schema with corral's tables, the command line on it, and the
    test's own app; worker subprocesses left running are killed at the end."""
    with backend_url("postgres", tmp_path) as url:
        corral = Corral(tmp_path, FLEET_APP)
        corral.url = url
        if lease_seconds is not None:
            corral.extra_env["CORRAL_TEST_LEASE_SECONDS"] = str(lease_seconds)
        app = load_app(str(FLEET_APP))
        app.use_database(url)
        if lease_seconds is not None:
            app.lease_seconds = lease_seconds
        app.storage.migrate()  # the schema exists before the workers race to open it
        try:
            yield Fleet(corral, app, url)
        finally:
            corral.cleanup()
            app.close()


def wait_started(corral: Corral, workers: list[Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for w in workers:
        while " started (concurrency" not in corral.log_of(w):
            assert w.poll() is None, f"worker exited {w.returncode}:\n{corral.log_of(w)}"
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)


def stop_line(log: str) -> tuple[str, int, int, int, int]:
    """(stopped_by, iterations, completed, failed, lost) from a worker's last words."""
    match = STOPPED.search(log)
    assert match, log[-2000:]
    by, iterations, completed, failed, lost, _ = match.groups()
    return by, int(iterations), int(completed), int(failed), int(lost)
