"""W1 enqueue: N no-op jobs one call at a time, then the same N in one bulk call (jobs/s).

No worker runs. The queue is emptied before each half.
"""

from __future__ import annotations

import time
from typing import Any

from workloads.common import NotApplicable, System


def run(system: System, jobs: int) -> dict[str, Any]:
    system.start_fresh()
    started = time.perf_counter()
    for i in range(jobs):
        system.enqueue_one(i, time.time())
    single = jobs / (time.perf_counter() - started)

    system.start_fresh()
    items = [(i, time.time()) for i in range(jobs)]
    bulk: float | str
    try:
        started = time.perf_counter()
        system.enqueue_bulk(items)
        bulk = jobs / (time.perf_counter() - started)
    except NotApplicable as exc:
        bulk = f"n/a: {exc}"
    return {"single": single, "bulk": bulk}
