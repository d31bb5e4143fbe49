"""corral under benchmark: the app its workers load, and the harness's adapter.

Workers: `corral --app bench/apps/corral_app.py --database URL worker --concurrency N`.
The job `noop` appends its record (see bench/workloads/record.py) and returns nothing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workloads.common import (
    Settings,
    System,
    pg_recreate,
    pg_unavailable,
)
from workloads.record import record

from corral import App, Context
from corral.storage.base import NewProcess


def make_app(url: str | None = None) -> App:
    app = App(url)

    @app.job()
    def noop(ctx: Context, i: int, t: float = 0.0) -> None:
        record(i, t)

    @app.job()
    def nothing(ctx: Context) -> None:
        """W4's job: claimed and completed by the harness itself, records nothing."""

    return app


app = make_app()


class Corral(System):
    url = ""
    bulk_api = "app.submit_many(job, [params, ...]) (one transaction)"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.app: App | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> App:
        if self.app is None:
            self.app = make_app(self.url)
            self.app.storage  # noqa: B018 - open and migrate now, not inside a timing
        return self.app

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None
        if self._loop is not None:
            self._loop.close()

    def enqueue_one(self, i: int, t: float) -> None:
        self._open().submit("noop", {"i": i, "t": t})

    def enqueue_bulk(self, items: Sequence[tuple[int, float]]) -> None:
        self._submit_many("noop", [{"i": i, "t": t} for i, t in items])

    def _submit_many(self, job: str, params: list[dict[str, Any]]) -> None:
        """`App.submit_many` (one transaction); on a corral without it, the storage verb
        it wraps, `process_insert_many`."""
        app = self._open()
        if hasattr(app, "submit_many"):
            app.submit_many(job, params)
            return
        now = app.clock()
        app.storage.process_insert_many(
            [NewProcess(str(uuid.uuid4()), job, p, now, now) for p in params]
        )

    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        given = [] if concurrency is None else ["--concurrency", str(concurrency)]
        return [
            sys.executable,
            "-c",
            "from corral.cli import main; main()",
            "--app",
            str(Path(__file__).resolve()),
            "--database",
            self.url,
            "--log-level",
            "WARNING",
            "worker",
            *given,
            "--grace",
            "5",
        ]

    # --- W5 ------------------------------------------------------------------------------
    def submit_graph(self, nodes: int, edges: Sequence[tuple[int, int]]) -> None:
        """One `app.batch()`: the whole graph in one transaction."""
        deps: dict[int, list[int]] = {}
        for dependent, dependency in edges:
            deps.setdefault(dependent, []).append(dependency)
        app = self._open()
        with app.batch() as b:
            made = []
            for i in range(nodes):
                made.append(
                    b.submit("noop", {"i": i}, depends_on=[made[d] for d in deps.get(i, ())])
                )

    # --- W4 ------------------------------------------------------------------------------
    def depth_runnable(self, count: int) -> None:
        self._submit_many("nothing", [{}] * count)

    def depth_claim(self) -> None:
        """One claim of one process and the commit of its (no-op) iteration, as a worker
        does them: `process_claim(limit=1)`, the handler, `process_commit_many`."""
        from corral.context import IterationSignals
        from corral.iteration import run_iteration
        from corral.settle import settle
        from corral.storage.base import Claim, IterationCommit

        app = self._open()
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        [claimed] = app.storage.process_claim(
            Claim(owner="bench-w4", now=app.clock(), lease_seconds=30.0, limit=1)
        )
        process = claimed.process
        job = app.registry.jobs[process.job]
        outcome = run_iteration(app.registry, job, process, IterationSignals(), self._loop)
        change = settle(process, app.registry.policy(job), outcome, app.clock())
        lost = app.storage.process_commit_many(
            [IterationCommit(process.id, claimed.token, change, app.clock())]
        )
        if lost:
            raise RuntimeError("W4: lease lost on an uncontended claim")


class CorralSQLite(Corral):
    name = "corral-sqlite"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.path = settings.workdir / "corral-bench.db"
        self.url = f"sqlite:///{self.path}"
        self._finished = 0

    def reset(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._finished = 0
        self._open()

    def depth_fill(self, finished: int) -> None:
        """Insert finished processes and their two history events directly, on a
        connection of its own with synchronous=OFF (loading is not what W4 measures)."""
        add = finished - self._finished
        if add <= 0:
            return
        self._open()
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        try:
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            conn.execute(
                """
                WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?)
                INSERT INTO corral_process (id, job, params, status, store, result, run_at,
                    attempt, lease_token, created_at, updated_at, finished_at, version)
                SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
                       substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2)
                       || '-' || hex(randomblob(6))),
                       'noop', '{"i":' || k || ',"t":0.0}', 'completed', '{}', 'null',
                       ? - 3600 + k * 1e-3, 0, 1, ? - 3600 + k * 1e-3, ? - 3600 + k * 1e-3,
                       ? - 3600 + k * 1e-3, 2
                FROM n
                """,
                (add, now, now, now, now),
            )
            conn.execute(
                """
                INSERT INTO corral_history (process_id, at, kind, from_status, to_status,
                    attempt, detail)
                SELECT id, created_at, 'submitted', NULL, 'starting', 0,
                       '{"custom_id":null,"job":"noop"}'
                FROM corral_process WHERE rowid > (SELECT coalesce(max(rowid), 0) - ?
                                                   FROM corral_process)
                UNION ALL
                SELECT id, finished_at, 'transition', 'starting', 'completed', 1, '{}'
                FROM corral_process WHERE rowid > (SELECT coalesce(max(rowid), 0) - ?
                                                   FROM corral_process)
                """,
                (add, add),
            )
            conn.execute("COMMIT")
            # Leave no loading behind in the WAL for the timed claims to checkpoint.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        self._finished = finished


class CorralPostgres(Corral):
    name = "corral-pg"
    database = os.environ.get("BENCH_CORRAL_DATABASE", "corral_bench")

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._finished = 0

    def unavailable(self) -> str | None:
        reason = pg_unavailable()
        if reason:
            return reason
        try:
            from corral.storage.postgres import PostgresStorage  # noqa: F401
        except ImportError as exc:
            return f"backend not available ({exc})"
        return None

    def reset(self) -> None:
        self.close()
        self.url = pg_recreate(self.database)
        self._finished = 0
        self._open()

    def depth_fill(self, finished: int) -> None:
        import psycopg

        add = finished - self._finished
        if add <= 0:
            return
        self._open()
        now = time.time()
        with psycopg.connect(self.url, autocommit=False) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute(
                """
                WITH rows AS (
                    INSERT INTO corral_process (id, job, params, status, store, result, run_at,
                        attempt, lease_token, created_at, updated_at, finished_at, version)
                    SELECT gen_random_uuid()::text, 'noop', ('{"i":' || k || ',"t":0.0}')::jsonb,
                           'completed', '{}', 'null', to_timestamp(%(t)s + k * 1e-3), 0, 1,
                           to_timestamp(%(t)s + k * 1e-3), to_timestamp(%(t)s + k * 1e-3),
                           to_timestamp(%(t)s + k * 1e-3), 2
                    FROM generate_series(1, %(n)s) AS k
                    RETURNING id, created_at, finished_at
                )
                INSERT INTO corral_history (process_id, at, kind, from_status, to_status,
                    attempt, detail)
                SELECT id, created_at, 'submitted', NULL, 'starting', 0,
                       '{"custom_id":null,"job":"noop"}'::jsonb FROM rows
                UNION ALL
                SELECT id, finished_at, 'transition', 'starting', 'completed', 1, '{}'::jsonb
                FROM rows
                """,
                {"t": now - 3600, "n": add},
            )
            conn.commit()
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE corral_process")
            conn.execute("VACUUM ANALYZE corral_history")
            # Flush the load now, not during the timed claims (a checkpoint slows commits).
            conn.execute("CHECKPOINT")
        self._finished = finished
