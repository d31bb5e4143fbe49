"""PostgreSQL inserts skip the pool's connection check for a connection used in the last
second, and insert again when that connection turns out dead: a submit after the server
dropped its connections still succeeds, and one whose commit landed before its connection
broke is reported created, once, not inserted twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from corral.errors import StorageError
from corral.storage.base import NewProcess
from corral.storage.postgres import PostgresStorage
from tests.backends import POSTGRES_URL, require_postgres
from tests.pg import isolated_schema_url

pytestmark = pytest.mark.postgres

T0 = 1_000.0


@pytest.fixture
def storage() -> Iterator[PostgresStorage]:
    require_postgres()
    app = f"corral_retry_{uuid.uuid4().hex[:8]}"
    with (
        isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url,
        PostgresStorage(f"{url}&application_name={app}") as storage,
    ):
        storage.application = app  # type: ignore[attr-defined]
        yield storage


def new(custom_id: str | None = None, a: int = 1, at: float = T0) -> NewProcess:
    return NewProcess(str(uuid.uuid4()), "add", {"a": a}, at, at, custom_id=custom_id)


def drop_connections(storage: PostgresStorage) -> int:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        return len(
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (storage.application,),  # type: ignore[attr-defined]
            ).fetchall()
        )


def count(storage: PostgresStorage) -> tuple[int, int]:
    with storage._connection() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM corral_process), (SELECT count(*) FROM corral_history)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize(
    "batch",
    [
        lambda: [new()],  # a plain submit
        lambda: [new(a=i) for i in range(50)],  # a submit_many
        lambda: [new("k1"), new()],  # custom ids: the general statement
    ],
    ids=["one", "many", "custom-id"],
)
def test_an_insert_on_a_connection_the_server_dropped_goes_through(
    storage: PostgresStorage, batch: Any
) -> None:
    storage.process_insert_many([new()])  # a pooled connection, used just now
    assert drop_connections(storage) >= 1
    processes = batch()
    inserted = storage.process_insert_many(processes)
    assert [i.outcome for i in inserted] == ["created"] * len(processes)
    assert count(storage) == (1 + len(processes),) * 2


@pytest.mark.parametrize("custom_id", [None, "k"])
@pytest.mark.parametrize("size", [1, 20])
def test_a_commit_that_landed_before_its_connection_broke_is_not_inserted_twice(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch, custom_id: str | None, size: int
) -> None:
    real = PostgresStorage._insert_on
    calls = []

    def commit_then_lose(self: PostgresStorage, conn: Any, *args: Any) -> Any:
        calls.append(1)
        result = real(self, conn, *args)
        if len(calls) == 1:  # the first try commits, then its connection breaks
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return result

    monkeypatch.setattr(PostgresStorage, "_insert_on", commit_then_lose)
    processes = [new(custom_id if i == 0 else None, a=i) for i in range(size)]
    inserted = storage.process_insert_many(processes)
    assert len(calls) == 2
    assert [i.outcome for i in inserted] == ["created"] * size
    assert [i.process.id for i in inserted] == [n.id for n in processes]
    assert count(storage) == (size, size)


def test_a_duplicate_id_after_a_lost_connection_is_still_an_error(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = new()
    storage.process_insert_many([taken])
    assert drop_connections(storage) >= 1
    other = new(a=2)
    clash = NewProcess(taken.id, "add", {"a": 99}, T0 + 1, T0 + 1)  # same id, another process
    with pytest.raises(StorageError, match=r"SQLSTATE 23505") as caught:
        storage.process_insert_many([other, clash])
    # corral's error, not the driver's, and one line.
    assert type(caught.value) is StorageError and "\n" not in str(caught.value)
    assert count(storage) == (1, 1)
