"""RQ (Redis): the job function its workers import, and the harness's adapter.

Workers: `rq worker --url URL default` (the default Worker class: it forks a work horse
for every job, one job at a time; RQ has no in-process concurrency setting).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import redis
from rq import Queue
from workloads.common import REDIS_BASE, Settings, System, redis_unavailable
from workloads.record import record

URL = os.environ.get("BENCH_RQ_URL", f"{REDIS_BASE}/12")
#: SimpleWorker runs jobs in the worker process. RQ's default Worker forks a work horse per
#: job: about 35 jobs/s for two workers on the reference machine, too slow for the run's
#: time budget (set BENCH_RQ_WORKER_CLASS=rq.worker.Worker to measure it anyway).
WORKER_CLASS = os.environ.get("BENCH_RQ_WORKER_CLASS", "rq.worker.SimpleWorker")


def noop(i: int, t: float = 0.0) -> None:
    record(i, t)


class RQ(System):
    name = "rq"
    bulk_api = "queue.enqueue_many([Queue.prepare_data(...)]) (one pipeline)"
    depth_na = "finished jobs leave the queue"
    memory_main_only = True  # the work horse is a fork per job

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.redis = redis.Redis.from_url(URL)
        self.queue = Queue("default", connection=self.redis)

    def unavailable(self) -> str | None:
        return redis_unavailable(URL)

    def reset(self) -> None:
        self.redis.flushdb()

    def close(self) -> None:
        self.redis.close()

    def enqueue_one(self, i: int, t: float) -> None:
        self.queue.enqueue(noop, i, t)

    def enqueue_bulk(self, items: Sequence[tuple[int, float]]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop, (i, t)) for i, t in items])

    def worker_command(self, concurrency: int | None, index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--url",
            URL,
            "--logging_level",
            "WARNING",
            "--worker-class",
            WORKER_CLASS,
            "--name",
            f"bench-{os.getpid()}-{index}",
            "default",
        ]
