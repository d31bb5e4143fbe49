"""W6 memory: one worker process drains pre-enqueued no-op jobs; its resident memory (the
sum over its process tree, unless the system forks a short-lived child per job) is read
when the jobs it has run first reach each checkpoint (10k, 100k by default), in MB.
A system too slow to reach a checkpoint within the time budget is read when the budget
runs out, and the number of jobs it had run is reported with it."""

from __future__ import annotations

import time
from typing import Any

from workloads import record
from workloads.common import System, Workers

CHUNK = 10_000


def run(
    system: System, checkpoints: list[int], concurrency: int | None, timeout: float
) -> dict[str, Any]:
    system.start_fresh()
    total = max(checkpoints)
    system.enqueue_many([(i, 0.0) for i in range(total)])
    path = str(system.settings.record_file)
    out: dict[str, Any] = {}
    pending = sorted(checkpoints)
    started = time.monotonic()
    with Workers(system, 1, concurrency, "w6") as w:
        checked = started
        while pending:
            done = record.count(path)
            now = time.monotonic()
            while pending and done >= pending[0]:
                out[str(pending.pop(0))] = {"rss_mb": w.rss_mb(), "jobs": done}
            if not pending:
                break
            if now - started > timeout:  # the budget is spent: memory where it got to
                rss = w.rss_mb()
                for cp in pending:
                    out[str(cp)] = {"rss_mb": rss, "jobs": done, "timeout": timeout}
                break
            if now - checked > 1.0:
                w.check_alive()
                checked = now
            time.sleep(0.01)
    out["seconds"] = time.monotonic() - started
    return out
