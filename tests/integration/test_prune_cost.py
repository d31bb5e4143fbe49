"""The recovery sweep's retention chunk (docs/timeouts.md, "Retention") costs the work of
what it deletes, not of what the table keeps.

As in test_claim_cost.py the work is counted, not timed: SQLite virtual-machine steps of
process_prune_expired, and the PostgreSQL buffers its two statements touch (measured
before any ANALYZE, then rolled back). The table holds, beside the few expired processes
deleted, old completed processes of a job kept until `corral prune`, old failed ones of the
pruned job, and its completed ones not yet expired: a query that walked finished processes
by age (the corral_process_finished index) or the table would grow with them a hundredfold
from the small table to the big one.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from corral.storage import open_storage
from corral.storage.base import NewProcess, Storage
from corral.storage.sqlite import SQLiteStorage
from tests.backends import backend_url
from tests.integration.common import VmSteps

SMALL, BIG = 200, 20_000
#: Allowed growth of the work from SMALL to BIG background rows: an index descent a level
#: deeper, no more.
GROWTH = 2.0
#: The expired processes each measured chunk deletes.
EXPIRED = 10
T0 = 1_000.0
#: The pruned job's cut-off: processes of it that completed before are expired.
CUTOFF = T0 + 100
CUTOFFS = {"brief": CUTOFF, "also": CUTOFF}

#: (job, status, finished_at) of each kind of row; the background kinds come `size` times.
BACKGROUND: list[tuple[str, str, float | None]] = [
    ("kept", "completed", T0),  # a job without keep_for, older than any cut-off
    ("brief", "failed", T0),  # failed processes are kept until `corral prune`
    ("brief", "completed", CUTOFF + 50),  # not expired yet
    ("brief", "starting", None),  # unfinished: what the dependents guard looks for
]
#: The expired processes have dependents (none unfinished): the guard looks for them.
MARK_EXPIRED = (
    "UPDATE corral_process SET has_dependents = true WHERE job = 'brief' "
    "AND status = 'completed' AND finished_at < (%(cutoff)s)"
)


def _fill(storage: Storage, size: int) -> list[tuple[str, str, str, float | None]]:
    """Insert the processes; return (id, job, status, finished_at) for each, to end them."""
    rows = [(kind, i) for kind in BACKGROUND for i in range(size)]
    rows += [(("brief", "completed", T0 + 1 + i), i) for i in range(EXPIRED)]
    ended = []
    for start in range(0, len(rows), 5_000):
        batch = []
        for (job, status, at), i in rows[start : start + 5_000]:
            pid = str(uuid.uuid4())
            batch.append(NewProcess(id=pid, job=job, params={"i": i}, created_at=T0, run_at=T0))
            ended.append((pid, job, status, at))
        storage.process_insert_many(batch)
    return ended


def _sqlite_steps(tmp_path: Path, size: int) -> int:
    storage = open_storage(f"sqlite:///{tmp_path / f'prune-{size}.db'}")
    try:
        assert isinstance(storage, SQLiteStorage)
        ended = _fill(storage, size)
        conn = storage._conn
        with conn:
            conn.executemany(
                "UPDATE corral_process SET status = ?, finished_at = ? WHERE id = ?",
                [(status, at, pid) for pid, _, status, at in ended],
            )
            conn.execute(MARK_EXPIRED.replace("%(cutoff)s", "?"), (CUTOFF,))
        with VmSteps(conn) as steps:
            assert storage.process_prune_expired(CUTOFFS, 1_000) == EXPIRED
        return steps.count
    finally:
        storage.close()


def test_sqlite_a_retention_chunk_does_not_cost_more_in_a_bigger_table(tmp_path: Path) -> None:
    small, big = _sqlite_steps(tmp_path, SMALL), _sqlite_steps(tmp_path, BIG)
    assert big <= small * GROWTH, (
        f"deleting {EXPIRED} expired processes beside {3 * BIG:,} others took {big} x100 VM "
        f"steps, {big / small:.1f}x the {small} beside {3 * SMALL:,}"
    )


def _pg_buffers(url: str, size: int) -> int:
    import psycopg

    from corral.storage.postgres.queries import Q

    storage = open_storage(url)
    try:
        ended = _fill(storage, size)
    finally:
        storage.close()
    with psycopg.connect(url, autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE corral_process SET status = %s, finished_at = to_timestamp(%s) "
                "WHERE id = %s",
                [(status, at, pid) for pid, _, status, at in ended],
            )
            cur.execute(MARK_EXPIRED.replace("finished_at <", "finished_at < to_timestamp"),
                        {"cutoff": CUTOFF})  # fmt: skip
        conn.commit()
        args: dict[str, Any] = {
            "jobs": list(CUTOFFS),
            "before": list(CUTOFFS.values()),
            "limit": 1_000,
        }
        total = 0
        # The statements of the verb, as it sends them, measured, then rolled back.
        conn.execute(Q["process_expired_plan"])
        [(plan,)] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + Q["process_expired_lock"], args
        ).fetchall()
        top = _plan(plan)
        assert top["Actual Rows"] == EXPIRED
        total += _buffers(top)
        ids = [r[0] for r in conn.execute(Q["process_expired_lock"], args).fetchall()]
        [(plan,)] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + Q["process_expired_delete"],
            {"ids": ids},
        ).fetchall()
        total += _buffers(_plan(plan))
        [(left,)] = conn.execute(
            "SELECT count(*) FROM corral_process WHERE id = ANY(%(ids)s)", {"ids": ids}
        ).fetchall()
        assert left == 0
        conn.rollback()
    return total


def _plan(plan: Any) -> dict[str, Any]:
    top = json.loads(plan) if isinstance(plan, str) else plan
    node: dict[str, Any] = top[0]["Plan"]
    return node


def _buffers(node: dict[str, Any]) -> int:
    """A statement's buffers: its plan's, or, for one made of CTEs (the delete and its
    history and edges: those not read by the main query are not counted in it), the sum
    of its CTEs'."""
    ctes = [c for c in node.get("Plans", []) if str(c.get("Subplan Name", "")).startswith("CTE ")]
    return sum(_own(c) for c in ctes) if ctes else _own(node)


def _own(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def test_postgres_a_retention_chunk_does_not_cost_more_in_a_bigger_table(
    tmp_path: Path,
) -> None:
    def measure(size: int) -> int:
        with backend_url("postgres", tmp_path) as url:
            return _pg_buffers(url, size)

    small, big = measure(SMALL), measure(BIG)
    assert small >= 5, f"the chunk touched {small} buffers: nothing was measured"
    assert big <= small * GROWTH, (
        f"deleting {EXPIRED} expired processes beside {3 * BIG:,} others touched {big} "
        f"buffers, {big / small:.1f}x the {small} beside {3 * SMALL:,}"
    )
