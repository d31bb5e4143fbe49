"""W2 drain: N pre-enqueued no-op jobs, W worker processes, from the workers' start until
every job has recorded itself (jobs/s). Worker start-up (imports, connections) is included."""

from __future__ import annotations

import time
from typing import Any

from workloads import record
from workloads.common import System, Workers, wait_for_records


def run(
    system: System, jobs: int, workers: int, concurrency: int | None, timeout: float
) -> dict[str, Any]:
    system.start_fresh()
    system.enqueue_many([(i, 0.0) for i in range(jobs)])
    path = system.settings.record_file
    started = time.monotonic()
    started_wall = time.time()
    with Workers(system, workers, concurrency, "w2") as w:
        done = wait_for_records(w, path, jobs, timeout)
    seconds = done - started
    records = record.read(str(path))
    ids = [r[0] for r in records]
    missing = jobs - len(set(ids))
    first = min(r[2] for r in records)
    last = max(r[2] for r in records)
    return {
        "rate": jobs / seconds,
        "seconds": seconds,
        # Not in the table; they tell start-up cost from the pace once running.
        "first_job_s": first - started_wall,
        "steady_rate": (jobs - 1) / (last - first) if last > first else None,
        "duplicates": len(ids) - len(set(ids)),
        "missing": missing,
    }
