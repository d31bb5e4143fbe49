"""W3 latency: idle workers, N jobs enqueued one every `interval` seconds; enqueue-to-start
p50 and p99 in ms, from the enqueue time passed as a parameter and the start time each job
records. The workers first run a few warm-up jobs, then sit idle (a second by default)."""

from __future__ import annotations

import time
from typing import Any

from workloads import record
from workloads.common import System, Workers, percentile, wait_for_records

WARMUP_BASE = 2 * 10**9


def run(
    system: System,
    jobs: int,
    interval: float,
    workers: int,
    concurrency: int,
    timeout: float,
    idle: float = 1.0,
) -> dict[str, Any]:
    system.start_fresh()
    path = system.settings.record_file
    with Workers(system, workers, concurrency, "w3") as w:
        warmups = 2 * workers
        for k in range(warmups):
            system.enqueue_one(WARMUP_BASE + k, time.time())
        wait_for_records(w, path, warmups, timeout)
        time.sleep(idle)
        begin = time.monotonic()
        for i in range(jobs):
            pause = begin + i * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            system.enqueue_one(i, time.time())
        wait_for_records(w, path, warmups + jobs, timeout)
    latencies = [(s - t) * 1000 for i, t, s in record.read(str(path)) if i < WARMUP_BASE]
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "jobs": len(latencies),
    }
