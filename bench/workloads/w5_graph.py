"""W5 task graph: a graph of N processes in layers of `width`, each node of a layer after
the first depending on two nodes of the layer before (about 2N edges), submitted in one
batch; then W worker processes drain it. Reports the submit time and the drain rate
(nodes/s, from the workers' start, as W2) and checks the order: no node recorded before
a dependency of it."""

from __future__ import annotations

import time
from typing import Any

from workloads import record
from workloads.common import System, Workers, wait_for_records


def edges(nodes: int, width: int) -> list[tuple[int, int]]:
    """(dependent, dependency) pairs: node i of layer L >= 1 depends on nodes j and j+1
    (mod width) of layer L-1."""
    out = []
    for i in range(width, nodes):
        layer, j = divmod(i, width)
        below = (layer - 1) * width
        out.append((i, below + j))
        out.append((i, below + (j + 1) % width))
    return out


def run(
    system: System, nodes: int, width: int, workers: int, concurrency: int | None, timeout: float
) -> dict[str, Any]:
    system.start_fresh()
    pairs = edges(nodes, width)
    t0 = time.monotonic()
    system.submit_graph(nodes, pairs)
    submit_seconds = time.monotonic() - t0
    path = system.settings.record_file
    started = time.monotonic()
    with Workers(system, workers, concurrency, "w5") as w:
        done = wait_for_records(w, path, nodes, timeout)
    seconds = done - started
    recorded: dict[int, float] = {}
    for i, _t, at in record.read(str(path)):
        recorded.setdefault(int(i), at)
    out_of_order = sum(1 for a, b in pairs if recorded[a] < recorded[b])
    return {
        "rate": nodes / seconds,
        "seconds": seconds,
        "submit_seconds": submit_seconds,
        "nodes": nodes,
        "edges": len(pairs),
        "missing": nodes - len(recorded),
        "out_of_order": out_of_order,
    }
