"""The PostgreSQL schema and its migrations.

An empty database gets schema.sql; an older one the numbered migrations it lacks. Whatever
path a database took (a fresh open, every migration in order, an upgrade from any earlier
version, several workers opening an empty schema at once), it ends with the same schema,
compared through information_schema, pg_indexes, pg_constraint and pg_proc.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from corral.errors import StorageError
from corral.model import ErrorInfo
from corral.storage import codec
from corral.storage.base import ProcessFilter
from corral.storage.postgres import PostgresStorage
from corral.storage.postgres.queries import Q
from corral.storage.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from tests.backends import POSTGRES_URL, require_postgres
from tests.pg import isolated_schema_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def empty_schema() -> Iterator[str]:
    require_postgres()
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def dump_schema(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything that defines the schema, with the schema's own name left out."""
    with psycopg.connect(url) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]

        def rows(query: str) -> list[tuple[Any, ...]]:
            found = conn.execute(query).fetchall()
            return [tuple(str(v).replace(f"{schema}.", "") for v in r) for r in found]

        return {
            "columns": rows(
                "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
                "column_default, is_identity, is_generated, generation_expression, "
                "collation_name "
                "FROM information_schema.columns WHERE table_schema = current_schema() "
                "ORDER BY table_name, ordinal_position"
            ),
            "indexes": rows(
                "SELECT tablename, indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() ORDER BY tablename, indexname"
            ),
            "constraints": rows(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace "
                "ORDER BY 1, 2"
            ),
            # The functions the claim calls (corral_key_free), their text included.
            "functions": rows(
                "SELECT proname, pg_get_functiondef(oid) FROM pg_proc "
                "WHERE pronamespace = current_schema()::regnamespace ORDER BY 1"
            ),
            # The triggers that keep the graph counters (corral_batch_count).
            "triggers": rows(
                "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(t.oid) "
                "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal "
                "ORDER BY 1, 2"
            ),
        }


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM corral_schema_version ORDER BY 1").fetchall()
    return [r[0] for r in rows]


#: The table of applied migrations as corral created it before version 4 (epoch seconds).
OLD_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS corral_schema_version (
    version integer PRIMARY KEY,
    applied_at double precision NOT NULL DEFAULT extract(epoch FROM now())
)
"""


def apply_by_hand(url: str, migrations: list[tuple[int, str]]) -> None:
    """What an older corral left: these migrations applied, and recorded."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(OLD_VERSION_TABLE)
        for version, script in migrations:
            conn.execute(script.encode())
            conn.execute(Q["schema_version_insert"], {"version": version})


@pytest.fixture
def fresh_schema() -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """The schema a first open builds from schema.sql, as the reference."""
    require_postgres()
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
        PostgresStorage(url).close()
        yield dump_schema(url)


def test_the_first_open_builds_the_schema_and_records_every_version(empty_schema: str) -> None:
    with PostgresStorage(empty_schema) as storage:
        assert storage.migrate() == SCHEMA_VERSION
    dump = dump_schema(empty_schema)
    assert {c[0] for c in dump["columns"]} >= {"corral_process", "corral_history"}
    assert any("corral_process_runnable" in i[1] for i in dump["indexes"])
    # Ids compare in byte order, whatever the database's collation.
    assert ("corral_process", "id", "C") in {(c[0], c[1], c[9]) for c in dump["columns"]}
    assert versions(empty_schema) == list(range(1, SCHEMA_VERSION + 1))


def test_migrate_again_changes_nothing(
    empty_schema: str, fresh_schema: dict[str, list[tuple[Any, ...]]]
) -> None:
    with PostgresStorage(empty_schema) as storage:
        before = dump_schema(empty_schema)
        assert storage.migrate() == SCHEMA_VERSION
        assert storage.migrate() == SCHEMA_VERSION
    with PostgresStorage(empty_schema):
        pass
    assert dump_schema(empty_schema) == before == fresh_schema
    assert versions(empty_schema) == list(range(1, SCHEMA_VERSION + 1))


def test_every_migration_in_order_builds_the_from_scratch_schema(
    empty_schema: str, fresh_schema: dict[str, list[tuple[Any, ...]]]
) -> None:
    apply_by_hand(empty_schema, MIGRATIONS)
    assert dump_schema(empty_schema) == fresh_schema


#: A process as a corral before version 4 wrote it (times as epoch seconds, documents as
#: canonical JSON text), with the columns version 1 has; and one line of its history.
OLD_PARAMS = {"b": [1.5, "é", None], "a": {"z": True, "y": -(2**70)}, "": 0.1}
OLD_STORE = {"step": 2, "seen": ["x", "y"]}
OLD_RESULT = [1, {"k": "v"}]
OLD_ERROR = ErrorInfo("ValueError", "bad", "Traceback...", "error")
#: A time to the microsecond reads back as it was; one finer, to the microsecond.
EXACT = 1_733_030_000.123457
FINE = 1_733_030_000.1234567


def write_old_process(url: str, version: int) -> None:
    """The process as the corral of that schema version wrote it."""
    # Before version 4, times were epoch seconds and documents canonical JSON text.
    doc, time = ("%s::jsonb", "to_timestamp(%s)") if version >= 4 else ("%s", "%s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO corral_process (id, job, params, status, store, result, error, "
            "run_at, lease_expires_at, created_at, updated_at, finished_at, tags) "
            f"VALUES ('old', 'add', {doc}, 'failed', {doc}, {doc}, {doc}, {time}, {time}, "
            f'{time}, {time}, {time}, \'{{"k": "v"}}\')',
            (
                codec.dumps(OLD_PARAMS),
                codec.dumps(OLD_STORE),
                codec.dumps(OLD_RESULT),
                codec.error_dumps(OLD_ERROR),
                EXACT,
                None,
                FINE,
                EXACT + 1,
                EXACT + 2,
            ),
        )
        conn.execute(
            "INSERT INTO corral_history (process_id, at, kind, to_status, attempt, detail) "
            f"VALUES ('old', {time}, 'submitted', 'starting', 0, {doc})",
            (EXACT, codec.dumps({"job": "add", "custom_id": None})),
        )


@pytest.mark.parametrize("applied", range(1, len(MIGRATIONS)))
def test_upgrading_from_any_earlier_version_gives_the_from_scratch_schema(
    empty_schema: str, fresh_schema: dict[str, list[tuple[Any, ...]]], applied: int
) -> None:
    # Given a database left at an earlier version, holding a process...
    apply_by_hand(empty_schema, MIGRATIONS[:applied])
    write_old_process(empty_schema, applied)
    if applied >= 6:  # version 6 added batches; the graph counters come later
        with psycopg.connect(empty_schema) as conn:
            conn.execute("UPDATE corral_process SET batch_id = 'b-1'")
    # ...opening it with this corral applies the rest, and the process reads back as it was
    # written: its documents equal, its times to the microsecond.
    with PostgresStorage(empty_schema) as storage:
        old = storage.process_get("old")
        history = storage.history_list("old")
        # Its tags find it, through the index version 11 built over the rows there were.
        tagged = storage.process_list(ProcessFilter(tags={"k": "v"}))
        # Version 12 counted the batch's processes into its counter rows.
        counts = storage.batch_counts("b-1")
    assert old is not None
    if applied < 12:  # rows written by hand at version 12 or later have no counts
        assert counts == ({old.status: 1} if applied >= 6 else {})
    assert (old.params, old.store, old.result) == (OLD_PARAMS, OLD_STORE, OLD_RESULT)
    assert codec.dumps(old.params) == codec.dumps(OLD_PARAMS)
    assert old.error == OLD_ERROR and old.tags == {"k": "v"}
    assert [p.id for p in tagged] == ["old"]
    assert (old.run_at, old.updated_at, old.finished_at) == (EXACT, EXACT + 1, EXACT + 2)
    assert old.lease_expires_at is None
    assert old.created_at == round(FINE, 6) and abs(old.created_at - FINE) < 1e-6
    assert [(e.at, e.kind, e.detail) for e in history] == [
        (EXACT, "submitted", {"job": "add", "custom_id": None})
    ]
    assert dump_schema(empty_schema) == fresh_schema
    assert versions(empty_schema) == list(range(1, SCHEMA_VERSION + 1))


def test_concurrent_openers_of_an_empty_schema_all_succeed_and_migrate_once(
    empty_schema: str, fresh_schema: dict[str, list[tuple[Any, ...]]]
) -> None:
    storages = [PostgresStorage(empty_schema, migrate=False) for _ in range(6)]
    start = threading.Barrier(len(storages))
    results: list[object] = []

    def open_one(storage: PostgresStorage) -> None:
        start.wait()
        try:
            results.append(storage.migrate())
        except Exception as exc:  # reported below, with the others' results
            results.append(exc)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in storages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in storages:
        s.close()
    assert results == [SCHEMA_VERSION] * len(storages)
    assert versions(empty_schema) == list(range(1, SCHEMA_VERSION + 1))
    assert dump_schema(empty_schema) == fresh_schema


def test_a_schema_newer_than_this_corral_is_refused(empty_schema: str) -> None:
    PostgresStorage(empty_schema).close()
    with psycopg.connect(empty_schema, autocommit=True) as conn:
        conn.execute("INSERT INTO corral_schema_version (version) VALUES (%s)", (999,))
    with pytest.raises(StorageError, match=r"schema version 999.*upgrade corral"):
        PostgresStorage(empty_schema)
