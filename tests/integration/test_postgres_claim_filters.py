"""The PostgreSQL claim with its filters: a worker names its jobs (`Claim.jobs`) and bounds
the expired leases it takes (`Claim.max_recovered`), and the claim stays as cheap as the
unfiltered one: its work does not grow with the backlog of the jobs it names.

Work is counted, not timed: buffers touched (EXPLAIN ANALYZE BUFFERS), the same for the same
plan and data whatever else the machine is doing; measured before any ANALYZE, as in a fresh
database under load (see test_claim_cost.py for the unfiltered claim)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from corral.storage.base import Claim, NewProcess
from corral.storage.postgres import PostgresStorage
from corral.storage.postgres.claims import _claim_statement
from tests.backends import POSTGRES_URL, require_postgres
from tests.pg import isolated_schema_url

pytestmark = pytest.mark.postgres

SHALLOW, DEEP = 200, 20_000
GROWTH = 2.0
T0 = 1_000.0
#: Processes of another job, older than every process of "mine": a claim that ignored its
#: jobs would take them first. Their number does not change with the depth measured.
OTHERS = 20
#: Leases taken at T0 + 2 for one second, expired when the measured claims look, per job.
EXPIRED = 8

CLAIMS = {
    "jobs": Claim("measured", T0 + 10, 60.0, limit=16, jobs=["mine"]),
    "jobs, max_recovered=1": Claim(
        "measured", T0 + 10, 60.0, limit=16, jobs=["mine", "absent"], max_recovered=1
    ),
    "max_recovered=0": Claim("measured", T0 + 10, 60.0, limit=16, max_recovered=0),
}


@pytest.fixture
def url() -> Iterator[str]:
    require_postgres()
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def _new(job: str, at: float, i: int) -> NewProcess:
    return NewProcess(id=str(uuid.uuid4()), job=job, params={"i": i}, created_at=at, run_at=at)


def _fill(storage: PostgresStorage, mine: int) -> None:
    """OTHERS queued processes of another job, older than `mine` queued ones of "mine";
    then EXPIRED leases of each job that expire before the measured claims."""
    storage.process_insert_many([_new("other", T0 - 100, i) for i in range(OTHERS + EXPIRED)])
    for start in range(0, mine + EXPIRED, 5_000):
        batch = range(start, min(start + 5_000, mine + EXPIRED))
        storage.process_insert_many([_new("mine", T0, i) for i in batch])
    for job in ("other", "mine"):
        taken = storage.process_claim(
            Claim("dead", T0 + 2, 1.0, limit=EXPIRED, jobs=[job], max_recovered=0)
        )
        assert [c.process.job for c in taken] == [job] * EXPIRED


def _plan(url: str, claim: Claim) -> dict[str, Any]:
    """The claim's statement, as the storage sends it, run under EXPLAIN and rolled back."""
    query, args = _claim_statement(claim)
    with psycopg.connect(url, autocommit=False) as conn:
        [(plan,)] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, args | {"notify": None}
        ).fetchall()
        conn.rollback()
    top = json.loads(plan) if isinstance(plan, str) else plan
    result: dict[str, Any] = top[0]["Plan"]
    return result


def _buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def _measure(mine: int) -> dict[str, int]:
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as schema:
        with PostgresStorage(schema) as storage:
            _fill(storage, mine)
        buffers = {}
        for name, claim in CLAIMS.items():
            plan = _plan(schema, claim)
            assert plan["Actual Rows"] == claim.limit, name
            buffers[name] = _buffers(plan)
        # What the measured statements would have claimed, claimed for real.
        with PostgresStorage(schema) as storage:
            for name, claim in CLAIMS.items():
                got = storage.process_claim(claim)
                if claim.jobs is not None:
                    assert {c.process.job for c in got} == {"mine"}, name
                recovered = [c for c in got if c.recovered]
                assert len(recovered) <= (claim.max_recovered or EXPIRED), name
                assert all(c.previous_owner == "dead" for c in recovered), name
                storage.lease_release_many({c.process.id: c.token for c in got}, claim.now)
        return buffers


def test_a_filtered_claim_does_not_grow_with_the_backlog_of_its_jobs() -> None:
    require_postgres()
    shallow, deep = _measure(SHALLOW), _measure(DEEP)
    for name in CLAIMS:
        assert deep[name] <= max(shallow[name] * GROWTH, 20), (
            f"a claim ({name}) with {DEEP:,} runnable processes touched {deep[name]} "
            f"buffers, {deep[name] / max(shallow[name], 1):.1f}x the {shallow[name]} with "
            f"{SHALLOW}"
        )


def _node(plan: dict[str, Any], subplan: str) -> dict[str, Any]:
    if plan.get("Subplan Name") == subplan:
        return plan
    for child in plan.get("Plans", []):
        found = _node(child, subplan)
        if found:
            return found
    return {}


def test_a_claim_that_may_recover_nothing_does_not_look_at_expired_leases(url: str) -> None:
    with PostgresStorage(url) as storage:
        _fill(storage, 20)
    # LIMIT 0: the scan under it never runs, however many leases have expired.
    expired = _node(_plan(url, CLAIMS["max_recovered=0"]), "CTE expired")
    assert expired, "the claim has an `expired` CTE"
    assert [child["Actual Loops"] for child in expired["Plans"]] == [0] * len(expired["Plans"])
    assert "LockRows" in [child["Node Type"] for child in expired["Plans"]]
    # ...and a claim that may takes them (one here).
    expired = _node(_plan(url, CLAIMS["jobs, max_recovered=1"]), "CTE expired")
    assert expired["Actual Rows"] == 1


def test_the_unfiltered_claim_is_the_statement_of_queries_sql() -> None:
    from corral.storage.postgres.queries import Q

    query, _ = _claim_statement(Claim("w", T0, 30.0, limit=4))
    assert query == Q["process_claim"].replace("/* filters */", "")
    query, _ = _claim_statement(Claim("w", T0, 30.0, limit=4, jobs=["a"], max_recovered=2))
    assert "job = ANY(%(jobs)b::text[])" in query
    assert "least(%(limit)b , %(max_recovered)b)" in query
