"""Ending a process costs work proportional to its own edges, not to the size of its graph.

As in test_claim_cost.py, the work is counted, not timed: SQLite virtual-machine steps
of the commit that ends the process (the settling of its dependents included), and the
PostgreSQL buffers that settling touches (corral_settle, which the commit statement
calls). The graph: node i depends on nodes i-1 and i-2, so about two edges per node, and
ending node 0 promotes node 1 and counts node 2 down. A scan of the edges or of the
waiting processes would grow a hundredfold from the small graph to the big one.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from corral import model
from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import Claim, IterationCommit, NewProcess, Storage
from corral.storage.sqlite import SQLiteStorage
from tests.backends import backend_url

SMALL, BIG = 1_000, 100_000
#: Allowed growth of the work from SMALL to BIG (100x the processes and edges): an index
#: descent a level deeper, no more.
GROWTH = 2.0
T0 = 1_000.0


def _graph(storage: Storage, size: int) -> list[str]:
    """A graph of `size` processes, node i depending on i-1 and i-2, in one batch."""
    ids = [str(uuid.uuid4()) for _ in range(size)]
    nodes = [
        NewProcess(
            id=pid,
            job="node",
            params={"i": i},
            created_at=T0,
            run_at=T0,
            depends_on=tuple(ids[max(i - 2, 0) : i]),
        )
        for i, pid in enumerate(ids)
    ]
    storage.process_insert_many(nodes)
    return ids


def _end_first(storage: Storage, ids: list[str]) -> IterationCommit:
    """Claim node 0 (the only runnable one) and the commit that completes it."""
    [c] = storage.process_claim(Claim(owner="w", now=T0 + 1, lease_seconds=60, limit=1))
    assert c.process.id == ids[0]
    change = model.committed(
        c.process, T0 + 2, store={}, progress=(None, None), to=Status.COMPLETED
    )
    return IterationCommit(c.process.id, c.token, change, T0 + 2)


def _check(storage: Storage, ids: list[str]) -> None:
    """Node 1 was promoted and node 2 counted down: the work measured did the job."""
    one, two = storage.process_get(ids[1]), storage.process_get(ids[2])
    assert one is not None and one.status is Status.STARTING
    assert two is not None and two.status is Status.WAITING


def _sqlite_steps(tmp_path: Path, size: int) -> int:
    storage = open_storage(f"sqlite:///{tmp_path / f'graph-{size}.db'}")
    try:
        assert isinstance(storage, SQLiteStorage)
        ids = _graph(storage, size)
        commit = _end_first(storage, ids)
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        storage._conn.set_progress_handler(count, 100)
        try:
            assert storage.process_commit_many([commit]) == []
        finally:
            storage._conn.set_progress_handler(None, 0)
        _check(storage, ids)
        return steps
    finally:
        storage.close()


def test_sqlite_ending_a_process_does_not_cost_more_in_a_bigger_graph(tmp_path: Path) -> None:
    small, big = _sqlite_steps(tmp_path, SMALL), _sqlite_steps(tmp_path, BIG)
    assert big <= small * GROWTH, (
        f"ending a process with 2 dependents in a graph of {BIG:,} took {big} x100 VM steps, "
        f"{big / small:.1f}x the {small} in a graph of {SMALL:,}"
    )


def _pg_buffers(url: str, size: int) -> int:
    import psycopg

    storage = open_storage(url)
    try:
        ids = _graph(storage, size)
        commit = _end_first(storage, ids)
    finally:
        storage.close()
    settle = (
        "SELECT corral_settle(ARRAY[%(id)s], ARRAY['completed'], ARRAY[NULL::text], "
        "to_timestamp(%(at)s), NULL)"
    )
    with psycopg.connect(url, autocommit=False) as conn:
        # The process ends as the commit writes it, then its dependents are settled as the
        # commit's statement settles them; measured, checked, rolled back.
        conn.execute(
            "UPDATE corral_process SET status = 'completed', lease_expires_at = NULL "
            "WHERE id = %(id)s",
            {"id": commit.process_id},
        )
        args: dict[str, Any] = {"id": commit.process_id, "at": T0 + 2}
        [(plan,)] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + settle, args
        ).fetchall()
        [(one,), (two,)] = conn.execute(
            "SELECT status FROM corral_process WHERE id = ANY(%(ids)s) ORDER BY "
            "array_position(%(ids)s, id)",
            {"ids": ids[1:3]},
        ).fetchall()
        assert (one, two) == ("starting", "waiting")
        conn.rollback()
    top = json.loads(plan) if isinstance(plan, str) else plan
    node = top[0]["Plan"]
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def test_postgres_ending_a_process_does_not_cost_more_in_a_bigger_graph(tmp_path: Path) -> None:
    def measure(size: int) -> int:
        with backend_url("postgres", tmp_path) as url:
            return _pg_buffers(url, size)

    small, big = measure(SMALL), measure(BIG)
    assert small >= 5, f"settling touched {small} buffers: nothing was measured"
    assert big <= small * GROWTH, (
        f"settling 2 dependents in a graph of {BIG:,} touched {big} buffers, "
        f"{big / small:.1f}x the {small} in a graph of {SMALL:,}"
    )
