"""Celery (Redis broker): the app its workers load, and the harness's adapter.

Workers: `celery -A peers.celery_peer worker --pool threads --concurrency N` (results
ignored, JSON, early acknowledgement, prefetch multiplier 4: the defaults).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import redis
from celery import Celery as CeleryApp
from celery import group
from workloads.common import REDIS_BASE, System, redis_unavailable
from workloads.record import record

BROKER_ENV = "BENCH_CELERY_BROKER"
BROKER = os.environ.get(BROKER_ENV, f"{REDIS_BASE}/11")

app = CeleryApp("bench", broker=BROKER)
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop(i: int, t: float = 0.0) -> None:
    record(i, t)


class Celery(System):
    name = "celery"
    bulk_api = "group(signatures).apply_async()"
    depth_na = "finished jobs leave the queue"

    def unavailable(self) -> str | None:
        return redis_unavailable(BROKER)

    def reset(self) -> None:
        redis.Redis.from_url(BROKER).flushdb()

    def close(self) -> None:
        app.close()

    def enqueue_one(self, i: int, t: float) -> None:
        noop.delay(i, t)

    def enqueue_bulk(self, items: Sequence[tuple[int, float]]) -> None:
        group(noop.s(i, t) for i, t in items).apply_async()

    def enqueue_many(self, items: Sequence[tuple[int, float]], chunk: int = 5000) -> None:
        """Pre-enqueueing: one producer for all messages, faster here than `group`."""
        with app.producer_or_acquire() as producer:
            for i, t in items:
                noop.apply_async((i, t), producer=producer)

    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        given = [] if concurrency is None else ["--concurrency", str(concurrency)]
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "peers.celery_peer",
            "worker",
            "--pool",
            "threads",
            *given,
            "--hostname",
            f"bench{index}@%h",
            "--loglevel",
            "WARNING",
        ]

    def worker_env(self) -> dict[str, str]:
        return {BROKER_ENV: BROKER}
