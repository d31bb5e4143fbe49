"""Dramatiq (Redis broker): the actor its workers load, and the harness's adapter.

Workers: `dramatiq peers.dramatiq_peer --processes 1 --threads N` (default middleware,
acknowledgement after the actor returns).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from workloads.common import REDIS_BASE, System, redis_unavailable
from workloads.record import record

URL = os.environ.get("BENCH_DRAMATIQ_URL", f"{REDIS_BASE}/13")

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop")
def noop(i: int, t: float = 0.0) -> None:
    record(i, t)


class Dramatiq(System):
    name = "dramatiq"
    bulk_api = "group(messages).run() (no batch call: one enqueue per message)"
    depth_na = "finished jobs leave the queue"

    def unavailable(self) -> str | None:
        return redis_unavailable(URL)

    def reset(self) -> None:
        redis.Redis.from_url(URL).flushdb()

    def close(self) -> None:
        broker.close()

    def enqueue_one(self, i: int, t: float) -> None:
        noop.send(i, t)

    def enqueue_bulk(self, items: Sequence[tuple[int, float]]) -> None:
        dramatiq.group([noop.message(i, t) for i, t in items]).run()

    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        given = [] if concurrency is None else ["--threads", str(concurrency)]
        return [sys.executable, "-m", "dramatiq", "peers.dramatiq_peer", "--processes", "1", *given]
