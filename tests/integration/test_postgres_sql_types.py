"""On PostgreSQL, times are timestamptz and JSON documents jsonb, so that corral's tables can
be queried with SQL as they are; corral itself still sees seconds since the epoch and the
documents it stored (docs/storage-postgres.md)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from corral import model
from corral.errors import CustomIdConflict
from corral.storage.base import Claim, IterationCommit, NewProcess, ProcessFilter
from corral.storage.postgres import PostgresStorage
from corral.storage.postgres.reads import list_statement
from tests.backends import POSTGRES_URL, require_postgres
from tests.pg import isolated_schema_url

pytestmark = pytest.mark.postgres

#: A time as time.time() gives it: finer than the microsecond that timestamptz keeps.
NOW = 1_764_561_600.1234567
#: Keys in an order jsonb does not keep (it orders them by length), unicode, numbers of
#: every kind, nesting.
PARAMS: dict[str, Any] = {
    "zeta": [1, 2.5, -0.001, 10**30, None, True],
    "a": {"b": {"c": "é ☃ \\ \" '"}, "": []},
    "mid": 1e-7,
}


@pytest.fixture
def storage() -> Iterator[PostgresStorage]:
    require_postgres()
    with (
        isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url,
        PostgresStorage(url) as storage,
    ):
        yield storage


def new(params: dict[str, Any] | None = None, **kw: Any) -> NewProcess:
    fields: dict[str, Any] = {"created_at": NOW, "run_at": NOW, "tags": {"team": "data"}}
    fields.update(kw)
    return NewProcess(id=str(uuid.uuid4()), job="add", params=params or PARAMS, **fields)


def sql(storage: PostgresStorage, query: str, *args: object) -> list[tuple[Any, ...]]:
    """A user's query, on a connection of their own (psycopg's defaults: datetimes, dicts)."""
    with psycopg.connect(storage.url, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()


def test_a_user_queries_times_and_documents_with_sql(storage: PostgresStorage) -> None:
    # Given a process submitted, claimed and completed with a store and a result...
    [inserted] = storage.process_insert_many([new(deadline_at=NOW + 3600)])
    [claimed] = storage.process_claim(Claim("w1", NOW + 1, 30.0, limit=1))
    change = model.committed(
        claimed.process, NOW + 2, store={"rows": 7}, result={"ok": 1}, progress=(1, 1)
    )
    assert (
        storage.process_commit_many(
            [IterationCommit(claimed.process.id, claimed.token, change, NOW + 2)]
        )
        == []
    )
    # ...a user's SQL sees times as timestamptz and documents as jsonb, operators and all.
    [row] = sql(
        storage,
        "SELECT created_at, deadline_at - created_at, params -> 'a' -> 'b' ->> 'c', "
        "store ->> 'rows', result, tags @> '{\"team\": \"data\"}' "
        "FROM corral_process WHERE params ->> 'mid' IS NOT NULL "
        "AND created_at < now() + interval '100 years'",
    )
    created_at, deadline, text, rows, result, tagged = row
    assert created_at == datetime.fromtimestamp(round(NOW, 6), UTC)
    assert deadline.total_seconds() == 3600
    assert (text, rows, result, tagged) == ("é ☃ \\ \" '", "7", {"ok": 1}, True)
    [(kinds,)] = sql(
        storage,
        "SELECT array_agg(kind ORDER BY id) FROM corral_history "
        "WHERE process_id = %s AND at >= to_timestamp(%s) AND detail ? 'job'",
        inserted.process.id,
        NOW,
    )
    assert kinds == ["submitted"]


def test_documents_read_back_as_stored_and_times_as_stored_to_the_microsecond(
    storage: PostgresStorage,
) -> None:
    [inserted] = storage.process_insert_many([new()])
    got = storage.process_get(inserted.process.id)
    # The record an insert returns is the one a read gives: times to the microsecond.
    assert got is not None and got == inserted.process and got.params == PARAMS
    assert got.created_at == round(NOW, 6) and abs(got.created_at - NOW) < 1e-6
    assert [e.at for e in storage.history_list(got.id)] == [got.created_at]


def test_a_resubmit_with_the_same_parameters_finds_the_process_whatever_jsonb_did(
    storage: PostgresStorage,
) -> None:
    # jsonb reorders keys and writes a float such as 1e20 as 100000000000000000000: the
    # parameters are still the same, compared as jsonb values.
    params = {**PARAMS, "big": 1e20}
    [first] = storage.process_insert_many([new(params, custom_id="nightly")])
    reordered = dict(reversed(list(params.items())))
    [again] = storage.process_insert_many([new(reordered, custom_id="nightly")])
    assert (first.outcome, again.outcome) == ("created", "existing")
    assert again.process.id == first.process.id
    with pytest.raises(CustomIdConflict, match="nightly"):
        storage.process_insert_many([new({**params, "big": 1e21}, custom_id="nightly")])


def test_the_queries_of_the_doc_run(storage: PostgresStorage) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "storage-postgres.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)\n```", doc, re.DOTALL)
    statements = [s.strip() for block in blocks for s in block.split(";") if s.strip()]
    assert len(statements) >= 3
    storage.process_insert_many([new({"customer": "acme"})])
    for statement in statements:
        # Queries, and the tags' index built beforehand (there already: nothing to do).
        with psycopg.connect(storage.url, autocommit=True) as conn:
            conn.execute(statement)


def test_a_short_id_is_a_range_of_the_primary_key(storage: PostgresStorage) -> None:
    # Given many processes, and statistics that say so...
    for _ in range(4):
        storage.process_insert_many([new() for _ in range(2_500)])
    with psycopg.connect(storage.url, autocommit=True) as conn:
        conn.execute("ANALYZE corral_process")
    target = storage.process_list(ProcessFilter(limit=1))[0]
    # ...a list or count by an id prefix of 8 characters walks the primary key, no table.
    for where in (ProcessFilter(id_prefix=target.id[:8]), ProcessFilter(id_prefix=target.id)):
        query, args = list_statement(where)
        with psycopg.connect(storage.url, autocommit=True) as conn:
            plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + query.as_bytes(conn), args))
        assert "corral_process_pkey" in plan and "Seq Scan" not in plan, plan
        assert target.id in [p.id for p in storage.process_list(where)]
    # Byte order, whatever the database's collation: ids sort as Python sorts them.
    ids = [p.id for p in storage.process_list(ProcessFilter(limit=10_000))]
    first, *_, last = sorted(ids)
    assert storage.process_id_neighbors([first, last]) == {
        first: (None, sorted(ids)[1]),
        last: (sorted(ids)[-2], None),
    }
