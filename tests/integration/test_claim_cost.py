"""What a worker runs over and over, a claim and the timeout sweep, must not cost more
with the number of queued or finished processes.

Timing would be noisy here, so the work is counted instead: SQLite virtual-machine
steps (a progress handler) and PostgreSQL buffer accesses (EXPLAIN ANALYZE BUFFERS).
Both are the same for the same plan and data, whatever else the machine is doing. A
query that walks every runnable row, or every finished one, multiplies them by the
ratio of the two depths below; one that follows its partial indexes does not.
PostgreSQL is measured before any ANALYZE, as in a fresh database under load: the plans
must not depend on statistics to stay off the table.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import Claim, IterationCommit, NewProcess, Storage
from corral.storage.sqlite import SQLiteStorage
from tests.backends import backend_url
from tests.integration.common import VmSteps

SHALLOW, DEEP = 200, 20_000
#: Allowed growth of a claim's work from SHALLOW to DEEP rows (100x more rows): each
#: index descent of the claimed rows' updates is a level deeper (PostgreSQL: 173 -> 271
#: buffers); a walk of the rows would be ~100x (SQLite before its fix: ~100x the steps).
GROWTH = 2.0
#: Every process has each timeout, none of them near: the sweep has candidates to skip.
FAR_TIMEOUTS = {"schedule_to_close": 1e6, "start_to_close": 1e6, "heartbeat_timeout": 1e6}


def _fill(storage: Storage, runnable: int, finished: int) -> None:
    """`runnable` queued processes and `finished` completed ones, in batches."""
    now = 1_000.0
    for start in range(0, runnable + finished, 5_000):
        batch = [
            NewProcess(id=str(uuid.uuid4()), job="noop", params={"i": i}, created_at=now,
                       run_at=now, **FAR_TIMEOUTS)
            for i in range(start, min(start + 5_000, runnable + finished))
        ]  # fmt: skip
        storage.process_insert_many(batch)
    done = finished
    while done > 0:
        # Claim and complete the oldest: what a worker leaves behind.
        claimed = storage.process_claim(
            Claim(owner="fill", now=now + 1, lease_seconds=60, limit=min(done, 1_000))
        )
        commits = []
        for c in claimed:
            change = _completed(c.process)
            commits.append(IterationCommit(c.process.id, c.token, change, now + 1))
        assert not storage.process_commit_many(commits)
        done -= len(claimed)


def _completed(process: Any) -> Any:
    from corral.model import Change

    return Change.of(process).with_(status=Status.COMPLETED, finished_at=1_001.0, result=None)


def _one_claim_with_leases(storage: Storage) -> Claim:
    """Hold a few leases (some expired), so that both halves of the claim have rows to
    look at, and return the claim to measure."""
    storage.process_claim(Claim(owner="other", now=1_002.0, lease_seconds=1.0, limit=8))
    return Claim(owner="measured", now=1_010.0, lease_seconds=60.0, limit=16)


#: What is measured: the claim a worker makes, and the recovery sweep's timeout query.
OPERATIONS = ["claim", "sweep"]
DEPTHS = ["runnable", "finished"]


def _sizes(depth: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(runnable, finished) for the shallow and the deep table."""
    if depth == "runnable":
        return (SHALLOW, 0), (DEEP, 0)
    return (SHALLOW, SHALLOW), (SHALLOW, DEEP)


def _run(storage: Storage, operation: str, claim: Claim) -> None:
    if operation == "claim":
        assert len(storage.process_claim(claim)) == claim.limit
    else:
        assert storage.process_timed_out(claim.now, 100) == []


def _sqlite_steps(tmp_path: Path, operation: str, runnable: int, finished: int) -> int:
    storage = open_storage(f"sqlite:///{tmp_path / f'cost-{runnable}-{finished}.db'}")
    try:
        assert isinstance(storage, SQLiteStorage)
        _fill(storage, runnable, finished)
        claim = _one_claim_with_leases(storage)
        with VmSteps(storage._conn) as steps:
            _run(storage, operation, claim)
        return steps.count
    finally:
        storage.close()


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_sqlite_work_does_not_grow_with_depth(tmp_path: Path, operation: str, depth: str) -> None:
    (a, b), (c, d) = _sizes(depth)
    shallow = _sqlite_steps(tmp_path, operation, a, b)
    deep = _sqlite_steps(tmp_path, operation, c, d)
    assert deep <= shallow * GROWTH, (
        f"a {operation} with {DEEP:,} {depth} rows took {deep} x100 VM steps, "
        f"{deep / shallow:.1f}x the {shallow} with {SHALLOW}"
    )


def _pg_buffers(url: str, operation: str, runnable: int, finished: int) -> int:
    import psycopg

    from corral.storage.postgres import PostgresStorage
    from corral.storage.postgres.queries import Q

    storage = open_storage(url)
    try:
        assert isinstance(storage, PostgresStorage)
        _fill(storage, runnable, finished)
        claim = _one_claim_with_leases(storage)
    finally:
        storage.close()
    if operation == "claim":
        query = Q["process_claim"].replace("/* filters */", "")
        args: dict[str, Any] = {
            "owner": claim.owner,
            "now": claim.now,
            "expires": claim.now + claim.lease_seconds,
            "limit": claim.limit,
        }
    else:
        query, args = Q["process_timed_out"], {"now": claim.now, "limit": 100}
    with psycopg.connect(url, autocommit=False) as conn:
        # The statement itself, as the worker sends it, rolled back after measuring.
        [(plan,)] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, args
        ).fetchall()
        conn.rollback()
    top = json.loads(plan) if isinstance(plan, str) else plan
    assert top[0]["Plan"]["Actual Rows"] == (claim.limit if operation == "claim" else 0)
    return _buffers(top[0]["Plan"])


def _buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_postgres_work_does_not_grow_with_depth(tmp_path: Path, operation: str, depth: str) -> None:
    def measure(runnable: int, finished: int) -> int:
        with backend_url("postgres", tmp_path) as url:
            return _pg_buffers(url, operation, runnable, finished)

    (a, b), (c, d) = _sizes(depth)
    shallow, deep = measure(a, b), measure(c, d)
    # A few buffers at least: an empty index or table is one page read, so a ratio of
    # tiny numbers says nothing; below 20 buffers nothing was walked.
    assert deep <= max(shallow * GROWTH, 20), (
        f"a {operation} with {DEEP:,} {depth} rows touched {deep} buffers, "
        f"{deep / max(shallow, 1):.1f}x the {shallow} with {SHALLOW}"
    )
