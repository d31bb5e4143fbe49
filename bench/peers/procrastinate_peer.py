"""Procrastinate (PostgreSQL): the app its workers load, and the harness's adapter.

Workers: `procrastinate --app peers.procrastinate_peer.app worker --concurrency N`
(asynchronous jobs, LISTEN/NOTIFY on, finished jobs kept: the defaults).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

import procrastinate
from procrastinate import jobs as procrastinate_jobs
from workloads.common import PG_BASE, Settings, System, pg_recreate, pg_unavailable
from workloads.record import record

DATABASE = "procrastinate_bench"
DSN_ENV = "BENCH_PROCRASTINATE_DSN"

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get(DSN_ENV, f"{PG_BASE}/{DATABASE}")
    )
)


@app.task(name="noop")
async def noop(i: int, t: float = 0.0) -> None:
    record(i, t)


class Procrastinate(System):
    name = "procrastinate"
    bulk_api = "task.batch_defer(*kwargs)"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.dsn = f"{PG_BASE}/{DATABASE}"
        self._open = False
        self._finished = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_open = False
        self._worker_id: int | None = None

    def unavailable(self) -> str | None:
        return pg_unavailable()

    def reset(self) -> None:
        self.close()
        pg_recreate(DATABASE)
        app.open()
        self._open = True
        app.schema_manager.apply_schema()
        self._finished = 0

    def close(self) -> None:
        if self._loop is not None:
            if self._async_open:
                self._loop.run_until_complete(app.close_async())
            self._loop.close()
            self._loop = None
            self._async_open = False
        if self._open:
            app.close()
            self._open = False

    def enqueue_one(self, i: int, t: float) -> None:
        noop.defer(i=i, t=t)

    def enqueue_bulk(self, items: Sequence[tuple[int, float]]) -> None:
        noop.batch_defer(*({"i": i, "t": t} for i, t in items))

    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        given = [] if concurrency is None else ["--concurrency", str(concurrency)]
        return [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "peers.procrastinate_peer.app",
            "--log-level",
            "warning",
            "worker",
            *given,
        ]

    def worker_env(self) -> dict[str, str]:
        return {DSN_ENV: self.dsn}

    # --- W4 ------------------------------------------------------------------------------
    def depth_fill(self, finished: int) -> None:
        """Succeeded jobs (kept by default) with their three events, inserted in SQL."""
        import psycopg

        add = finished - self._finished
        if add <= 0:
            return
        with psycopg.connect(self.dsn) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute(
                """
                WITH rows AS (
                    INSERT INTO procrastinate_jobs (queue_name, task_name, args, status,
                        attempts)
                    SELECT 'default', 'noop', jsonb_build_object('i', k, 't', 0.0),
                           'succeeded', 1
                    FROM generate_series(1, %(n)s) AS k
                    RETURNING id
                )
                INSERT INTO procrastinate_events (job_id, type, at)
                SELECT id, e.type::procrastinate_job_event_type, now() FROM rows,
                    (VALUES ('deferred'), ('started'), ('succeeded')) AS e (type)
                """,
                {"n": add},
            )
            conn.commit()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE procrastinate_jobs")
            conn.execute("VACUUM ANALYZE procrastinate_events")
            # Flush the load now, not during the timed claims (a checkpoint slows commits).
            conn.execute("CHECKPOINT")
        self._finished = finished

    def depth_claim(self) -> None:
        """`JobManager.fetch_job` then `finish_job(succeeded)`: what its worker does."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        if not self._async_open:
            self._loop.run_until_complete(app.open_async())
            self._async_open = True
            self._worker_id = self._loop.run_until_complete(app.job_manager.register_worker())
        assert self._worker_id is not None
        self._loop.run_until_complete(self._claim(self._worker_id))

    async def _claim(self, worker_id: int) -> None:
        job = await app.job_manager.fetch_job(queues=None, worker_id=worker_id)
        if job is None:
            raise RuntimeError("W4: no job to fetch")
        await app.job_manager.finish_job(
            job, status=procrastinate_jobs.Status.SUCCEEDED, delete_job=False
        )
