"""Ending a process costs work proportional to its own edges, not to the size of its graph.

As in test_claim_cost.py, the work is counted, not timed: SQLite virtual-machine steps
of the commit that ends the process (the settling of its dependents included), and the
PostgreSQL buffers that settling touches (corral_settle, which the commit statement
calls). The graph: node i depends on nodes i-1 and i-2, so about two edges per node, and
ending node 0 promotes node 1 and counts node 2 down. A scan of the edges or of the
waiting processes would grow a hundredfold from the small graph to the big one. Reading
the graph's counts by status is measured the same way: it reads the batch's counter
rows, so it must not grow with the graph either.
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
from corral.storage.postgres.queries import Q as PG_Q
from corral.storage.sqlite import SQLiteStorage
from tests.backends import backend_url
from tests.integration.common import VmSteps

SMALL, BIG = 1_000, 100_000
#: Allowed growth of the work from SMALL to BIG (100x the processes and edges): an index
#: descent a level deeper, no more.
GROWTH = 2.0
T0 = 1_000.0


#: The batch every graph here is (its counters move with each status change).
BATCH = "batch-of-the-graph"


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
            batch_id=BATCH,
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


def _sqlite_steps(tmp_path: Path, size: int) -> tuple[int, int]:
    """VM steps (x10) of the commit that ends node 0, and of reading the graph's counts."""
    storage = open_storage(f"sqlite:///{tmp_path / f'graph-{size}.db'}")
    try:
        assert isinstance(storage, SQLiteStorage)
        ids = _graph(storage, size)
        commit = _end_first(storage, ids)
        with VmSteps(storage._conn, every=10) as steps:
            assert storage.process_commit_many([commit]) == []
        ending = steps.count
        with VmSteps(storage._conn, every=10) as steps:
            counts = storage.batch_counts(BATCH)
        reading = steps.count
        _check(storage, ids)
        expected = {Status.COMPLETED: 1, Status.STARTING: 1, Status.WAITING: size - 2}
        assert counts == expected
        return ending, reading
    finally:
        storage.close()


def test_sqlite_ending_a_process_does_not_cost_more_in_a_bigger_graph(tmp_path: Path) -> None:
    (small, small_read), (big, big_read) = (
        _sqlite_steps(tmp_path, SMALL),
        _sqlite_steps(tmp_path, BIG),
    )
    assert big <= small * GROWTH, (
        f"ending a process with 2 dependents in a graph of {BIG:,} took {big} x10 VM steps, "
        f"{big / small:.1f}x the {small} in a graph of {SMALL:,}"
    )
    # The graph's counts are read from its counter rows, not counted over its processes.
    assert small_read >= 1, "reading the counts took no VM steps: nothing was measured"
    assert big_read <= small_read * GROWTH, (
        f"reading the counts of a graph of {BIG:,} took {big_read} x10 VM steps, "
        f"{big_read / small_read:.1f}x the {small_read} for a graph of {SMALL:,}"
    )


def _pg_buffers(url: str, size: int) -> tuple[int, int]:
    """Buffers of settling node 0's dependents, and of reading the graph's counts."""
    import psycopg

    storage = open_storage(url)
    try:
        ids = _graph(storage, size)
        commit = _end_first(storage, ids)
        # The recovery sweep folds the moves its triggers recorded into the counter rows.
        while storage.batch_counts_fold(10_000):
            pass
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
        # Folded moves are dead rows until (auto)vacuum clears them, as it does after a
        # thousand; measured on the table as it is then.
        with psycopg.connect(url, autocommit=True) as vacuum:
            vacuum.execute("VACUUM corral_batch_delta")
        [(counts_plan,)] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + PG_Q["batch_counts"], {"id": BATCH}
        ).fetchall()
    with open_storage(url) as storage:
        # The claim above was rolled back; node 0's claim by _end_first was committed.
        assert storage.batch_counts(BATCH) == {Status.STARTING: 1, Status.WAITING: size - 1}
    return _buffers(plan), _buffers(counts_plan)


def _buffers(plan: Any) -> int:
    top = json.loads(plan) if isinstance(plan, str) else plan
    node = top[0]["Plan"]
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def test_postgres_ending_a_process_does_not_cost_more_in_a_bigger_graph(tmp_path: Path) -> None:
    def measure(size: int) -> tuple[int, int]:
        with backend_url("postgres", tmp_path) as url:
            return _pg_buffers(url, size)

    (small, small_read), (big, big_read) = measure(SMALL), measure(BIG)
    assert small >= 5, f"settling touched {small} buffers: nothing was measured"
    assert big <= small * GROWTH, (
        f"settling 2 dependents in a graph of {BIG:,} touched {big} buffers, "
        f"{big / small:.1f}x the {small} in a graph of {SMALL:,}"
    )
    # The graph's counts are read from its counter rows, not counted over its processes.
    assert small_read >= 1, f"reading the counts touched {small_read} buffers"
    assert big_read <= small_read * GROWTH, (
        f"reading the counts of a graph of {BIG:,} touched {big_read} buffers, "
        f"{big_read / small_read:.1f}x the {small_read} for a graph of {SMALL:,}"
    )
