"""PgQueuer (PostgreSQL): the consumer factory its workers load, and the harness's adapter.

Workers: `python -m peers.pgqueuer_peer N`, which is `pgq run peers.pgqueuer_peer:main
--max-concurrent-tasks N --batch-size min(10, N/2)` through `pgqueuer.run`, the CLI's own
code path (the CLI of pgqueuer 1.6.0 fails to parse --log-level under typer 0.29); asyncpg,
LISTEN/NOTIFY, uvloop as the CLI does. Enqueueing uses the synchronous psycopg
`SyncQueries`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import psycopg
from pgqueuer import PgQueuer as PgQueuerApp
from pgqueuer.db import AsyncpgDriver, SyncPsycopgDriver
from pgqueuer.models import Job
from pgqueuer.queries import EntrypointExecutionParameter, Queries, SyncQueries
from workloads.common import PG_BASE, Settings, System, pg_recreate, pg_unavailable
from workloads.record import record

DATABASE = "pgqueuer_bench"
DSN_ENV = "BENCH_PGQUEUER_DSN"


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuerApp]:
    """The factory `pgq run` calls in each worker process."""
    connection = await asyncpg.connect(os.environ.get(DSN_ENV, f"{PG_BASE}/{DATABASE}"))
    pgq = PgQueuerApp(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        i, t = (job.payload or b"0 0").split()
        record(int(i), float(t))

    try:
        yield pgq
    finally:
        await connection.close()


def payload(i: int, t: float) -> bytes:
    return b"%d %.6f" % (i, t)


class PgQueuer(System):
    name = "pgqueuer"
    bulk_api = "queries.enqueue([entrypoints], [payloads], [priorities])"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.dsn = f"{PG_BASE}/{DATABASE}"
        self._conn: psycopg.Connection | None = None
        self._queries: SyncQueries | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aconn: asyncpg.Connection | None = None
        self._finished = 0

    def unavailable(self) -> str | None:
        return pg_unavailable()

    def reset(self) -> None:
        self.close()
        pg_recreate(DATABASE)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._install())
        finally:
            loop.close()
        self._conn = psycopg.connect(self.dsn, autocommit=True)
        self._queries = SyncQueries(SyncPsycopgDriver(self._conn))
        self._finished = 0

    async def _install(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    def close(self) -> None:
        if self._loop is not None:
            if self._aconn is not None:
                self._loop.run_until_complete(self._aconn.close())
                self._aconn = None
            self._loop.close()
            self._loop = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def enqueue_one(self, i: int, t: float) -> None:
        assert self._queries is not None
        self._queries.enqueue("noop", payload(i, t))

    def enqueue_bulk(self, items: Sequence[tuple[int, float]]) -> None:
        assert self._queries is not None
        self._queries.enqueue(
            ["noop"] * len(items), [payload(i, t) for i, t in items], [0] * len(items)
        )

    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        given = [] if concurrency is None else [str(concurrency)]
        return [sys.executable, "-m", "peers.pgqueuer_peer", *given]

    def worker_env(self) -> dict[str, str]:
        return {DSN_ENV: self.dsn}

    # --- W4 ------------------------------------------------------------------------------
    def depth_fill(self, finished: int) -> None:
        """Finished jobs live in pgqueuer_log (the queue table deletes them)."""
        add = finished - self._finished
        if add <= 0:
            return
        with psycopg.connect(self.dsn) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute(
                """
                INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, aggregated)
                SELECT %(base)s + k, 'successful', 0, 'noop', true
                FROM generate_series(1, %(n)s) AS k
                """,
                {"base": 10**12 + self._finished, "n": add},
            )
            conn.commit()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE pgqueuer_log")
            # Flush the load now, not during the timed claims (a checkpoint slows commits).
            conn.execute("CHECKPOINT")
        self._finished = finished

    def depth_claim(self) -> None:
        """`Queries.dequeue(batch_size=1)` then `log_jobs(successful)`: what its worker does."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._aconn = self._loop.run_until_complete(asyncpg.connect(self.dsn))
            self._qm_id = uuid.uuid4()
        self._loop.run_until_complete(self._claim())

    async def _claim(self) -> None:
        assert self._aconn is not None
        queries = Queries(AsyncpgDriver(self._aconn))
        jobs = await queries.dequeue(
            batch_size=1,
            entrypoints={"noop": EntrypointExecutionParameter(concurrency_limit=0)},
            queue_manager_id=self._qm_id,
            global_concurrency_limit=None,
            heartbeat_timeout=timedelta(seconds=30),
        )
        if not jobs:
            raise RuntimeError("W4: no job to dequeue")
        await queries.log_jobs([(jobs[0], "successful", None)])


def run_worker(concurrency: int | None) -> None:
    """What `pgq run peers.pgqueuer_peer:main --max-concurrent-tasks N` does (None: what
    `pgq run peers.pgqueuer_peer:main` does, at PgQueuer's defaults)."""
    import logging

    import pgqueuer

    logging.basicConfig(level=logging.WARNING)
    options: dict[str, int] = {}
    if concurrency is not None:
        # It insists on max_concurrent_tasks >= 2 * batch_size (10 by default).
        options = {
            "max_concurrent_tasks": concurrency,
            "batch_size": min(10, max(concurrency // 2, 1)),
        }
    worker = pgqueuer.run("peers.pgqueuer_peer:main", **options)
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker)
    else:
        uvloop.run(worker)


if __name__ == "__main__":
    run_worker(int(sys.argv[1]) if len(sys.argv) > 1 else None)
