"""W4 depth: the cost of one claim (take one runnable job and record it finished, as a
worker does, one transaction each) with 10k, 100k, 1M finished jobs kept in the table.

Finished jobs are inserted directly in the system's own tables (the fastest way to get a
million rows), then `claims` fresh jobs are enqueued and claimed one by one; the median
time of a claim is reported in ms. Depths grow in one table: 10k, then 90k more, ...
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from workloads.common import System

WARMUP = 20


def run(system: System, depths: list[int], claims: int) -> dict[str, Any]:
    system.start_fresh()
    out: dict[str, Any] = {}
    for depth in sorted(depths):
        filled = time.perf_counter()
        system.depth_fill(depth)
        fill_s = time.perf_counter() - filled
        system.depth_runnable(claims + WARMUP)
        times = []
        for k in range(claims + WARMUP):
            started = time.perf_counter()
            system.depth_claim()
            if k >= WARMUP:
                times.append((time.perf_counter() - started) * 1000)
        out[str(depth)] = {
            "p50": statistics.median(times),
            "mean": statistics.fmean(times),
            "fill_s": fill_s,
        }
    return out
