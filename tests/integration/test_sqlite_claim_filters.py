"""A claim that names its jobs and bounds its recovered processes (what a worker sends)
costs what a claim without them costs: the filters ride the same ordered index walk.

Work is counted in SQLite virtual-machine steps (a progress handler), not timed."""

from __future__ import annotations

import uuid
from pathlib import Path

from corral.storage import open_storage
from corral.storage.base import Claim, NewProcess
from corral.storage.sqlite import SQLiteStorage, claims
from tests.integration.common import VmSteps

T0 = 1_000.0


def _steps(storage: SQLiteStorage, claim: Claim) -> tuple[int, int]:
    """(x100 VM steps, processes claimed) of one claim, rolled back afterwards."""
    conn = storage._conn
    conn.execute("SAVEPOINT measure")  # keep the rows for the next measurement
    try:
        with VmSteps(conn) as steps:
            got = claims.claim(conn, claim)
    finally:
        conn.execute("ROLLBACK TO measure")
        conn.execute("RELEASE measure")
    return steps.count, len(got[0])


def _queue(storage: SQLiteStorage, job: str, count: int, at: float) -> None:
    for start in range(0, count, 5_000):
        storage.process_insert_many([
            NewProcess(id=str(uuid.uuid4()), job=job, params={}, created_at=at, run_at=at)
            for _ in range(min(5_000, count - start))
        ])  # fmt: skip


def test_naming_the_jobs_walks_no_more_rows_when_all_are_of_those_jobs(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'corral.db'}")
    assert isinstance(storage, SQLiteStorage)
    try:
        _queue(storage, "mine", 20_000, T0)
        # A few expired leases, so that both halves of the claim have rows to look at.
        storage.process_claim(Claim(owner="dead", now=T0, lease_seconds=1, limit=4))
        plain = Claim(owner="w", now=T0 + 10, lease_seconds=30, limit=16)
        filtered = Claim(owner="w", now=T0 + 10, lease_seconds=30, limit=16,
                         jobs=["other", "mine"], max_recovered=1)  # fmt: skip
        plain_steps, plain_count = _steps(storage, plain)
        filtered_steps, filtered_count = _steps(storage, filtered)
    finally:
        storage.close()
    assert plain_count == filtered_count == 16
    # The same walk plus a comparison per row: a plan that sorted or scanned the 20,000
    # queued rows would cost a hundred times more.
    assert filtered_steps <= plain_steps * 1.5 + 2, (filtered_steps, plain_steps)
