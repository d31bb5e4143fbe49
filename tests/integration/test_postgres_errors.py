"""Errors at the PostgreSQL storage's boundary: no exception of psycopg's or psycopg_pool's
leaves a verb. An unreachable or overwhelmed server is `StorageUnavailable` (transient); a
value the server refuses is `ValueRejected`, raised by the verb that wrote it, with nothing
written; anything else is a one-line `StorageError`."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.errors as E
import pytest
from psycopg import sql
from psycopg_pool import PoolTimeout

from corral import model
from corral.errors import NotStorable, StorageError, StorageUnavailable, ValueRejected
from corral.model import Event, Status
from corral.rates import Rate
from corral.storage import open_storage
from corral.storage.base import (
    Claim,
    Claimed,
    IterationCommit,
    NewProcess,
    ProcessFilter,
    ScheduleFiring,
    Storage,
    TokenInfo,
    Update,
    WorkerInfo,
)
from corral.storage.postgres import PostgresStorage
from tests.backends import POSTGRES_URL, require_postgres
from tests.e2e.conftest import wait_until
from tests.pg import isolated_schema_url

pytestmark = pytest.mark.postgres

T0 = 1_000.0


@pytest.fixture
def url() -> Iterator[str]:
    require_postgres()
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture
def storage(url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(url) as storage:
        yield storage


def new(**kw: Any) -> NewProcess:
    fields: dict[str, Any] = {"params": {"a": 1}, "created_at": T0, "run_at": T0}
    fields.update(kw)
    return NewProcess(id=str(uuid.uuid4()), job="add", **fields)


def claim(storage: Storage, limit: int = 1, owner: str = "w1") -> list[Claimed]:
    return storage.process_claim(Claim(owner=owner, now=T0, lease_seconds=60.0, limit=limit))


def commit(c: Claimed, store: dict[str, Any]) -> IterationCommit:
    change = model.committed(
        c.process, T0 + 1, store=store, progress=(None, None), to=Status.COMPLETED, result=1
    )
    return IterationCommit(c.process.id, c.token, change, T0 + 1)


def rows(storage: PostgresStorage) -> tuple[int, int]:
    """Processes and history events stored."""
    with storage._connection() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM corral_process), (SELECT count(*) FROM corral_history)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def assert_one_line(error: BaseException) -> None:
    text = str(error)
    assert text and "\n" not in text, text
    assert "psycopg" not in text and "Traceback" not in text, text
    assert error.__cause__ is None and error.__suppress_context__


# --- every driver error, through every verb ----------------------------------------------------

DRIVER_ERRORS: list[tuple[BaseException, type[StorageError]]] = [
    # The server is away, or cannot serve now: try again.
    (psycopg.OperationalError("connection failed: Connection refused"), StorageUnavailable),
    (psycopg.OperationalError("server closed the connection unexpectedly"), StorageUnavailable),
    (PoolTimeout("couldn't get a connection after 10.00 sec"), StorageUnavailable),
    (E.AdminShutdown("terminating connection due to administrator command"), StorageUnavailable),
    (E.CrashShutdown("terminating connection because of crash"), StorageUnavailable),
    (E.CannotConnectNow("the database system is starting up"), StorageUnavailable),
    (
        E.IdleSessionTimeout("terminating connection due to idle-session timeout"),
        StorageUnavailable,
    ),
    (E.TooManyConnections("sorry, too many clients already"), StorageUnavailable),
    (E.DiskFull('could not extend file "base/1/2"'), StorageUnavailable),
    (E.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only"), StorageUnavailable),
    (E.ConnectionFailure("server conn crashed?"), StorageUnavailable),
    # The statement lost a race, and was rolled back: try again.
    (E.DeadlockDetected("deadlock detected"), StorageUnavailable),
    (E.SerializationFailure("could not serialize access"), StorageUnavailable),
    (E.QueryCanceled("canceling statement due to statement timeout"), StorageUnavailable),
    (E.LockNotAvailable("could not obtain lock on row"), StorageUnavailable),
    # A value the server, or the driver, refuses.
    (E.UntranslatableCharacter('no equivalent in encoding "LATIN1"'), ValueRejected),
    (E.CharacterNotInRepertoire('invalid byte sequence for encoding "UTF8": 0x00'), ValueRejected),
    (E.NumericValueOutOfRange("integer out of range"), ValueRejected),
    (E.StringDataRightTruncation("value too long for type character varying(8)"), ValueRejected),
    (E.ProgramLimitExceeded("index row size 3016 exceeds btree maximum 2704"), ValueRejected),
    (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), ValueRejected),
    (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), ValueRejected),
    # Anything else.
    (E.UniqueViolation('duplicate key value violates unique constraint "pkey"'), StorageError),
    (E.UndefinedTable('relation "corral_process" does not exist'), StorageError),
    (E.StatementTooComplex("stack depth limit exceeded"), StorageError),
    (E.InsufficientPrivilege("permission denied for table corral_process"), StorageError),
    (psycopg.InterfaceError("the cursor is closed"), StorageError),
    (psycopg.ProgrammingError("query parameter missing: x"), StorageError),
]

Verb = Callable[[PostgresStorage, Claimed], object]

#: Every verb of the storage interface that reaches the database, called as a worker or the
#: App would. `wait_for_change` has no error to report (see its own test below).
VERBS: dict[str, Verb] = {
    "migrate": lambda s, c: s.migrate(),
    "process_insert_many": lambda s, c: s.process_insert_many([new()]),
    "process_get": lambda s, c: s.process_get(c.process.id),
    "process_list": lambda s, c: s.process_list(ProcessFilter()),
    "process_claim": lambda s, c: claim(s),
    "process_commit_many": lambda s, c: s.process_commit_many([commit(c, {})]),
    "process_commit_and_claim": lambda s, c: s.process_commit_and_claim(
        [commit(c, {})], Claim("w1", T0, 60.0)
    ),
    "process_update": lambda s, c: s.process_update(
        c.process.id, c.process.version, model.Change.of(c.process), T0
    ),
    "process_update_many": lambda s, c: s.process_update_many(
        [Update(c.process.id, c.process.version, model.Change.of(c.process), T0)]
    ),
    "process_timed_out": lambda s, c: s.process_timed_out(T0, 10),
    "process_prune": lambda s, c: s.process_prune(T0),
    "process_prunable": lambda s, c: s.process_prunable(T0),
    "process_concurrency": lambda s, c: s.process_concurrency(c.process.id, T0),
    "process_prune_expired": lambda s, c: s.process_prune_expired({"add": T0}, 10),
    "lease_renew_many": lambda s, c: s.lease_renew_many("w1", {c.process.id: c.token}, T0, 60),
    "lease_release_many": lambda s, c: s.lease_release_many({c.process.id: c.token}, T0),
    "leader_acquire": lambda s, c: s.leader_acquire("recovery", "w1", T0, 3.0),
    "history_list": lambda s, c: s.history_list(c.process.id),
    "history_append": lambda s, c: s.history_append(
        [Event("lease_lost", T0, None, None, 0, {}, c.process.id)]
    ),
    "queue_pause": lambda s, c: s.queue_pause("q", True),
    "queue_paused": lambda s, c: s.queue_paused(),
    "process_count": lambda s, c: s.process_count(ProcessFilter(id_prefix="0")),
    "process_id_neighbors": lambda s, c: s.process_id_neighbors([c.process.id]),
    "queue_counts": lambda s, c: s.queue_counts(),
    "worker_register": lambda s, c: s.worker_register(
        WorkerInfo("w1", "box", 1, "app.py", ["add"], None, 4, T0, T0)
    ),
    "worker_seen": lambda s, c: s.worker_seen("w1", T0, [c.process.id]),
    "worker_remove": lambda s, c: s.worker_remove("w1"),
    "worker_list": lambda s, c: s.worker_list(),
    "worker_prune": lambda s, c: s.worker_prune(T0),
    "dependencies_of": lambda s, c: s.dependencies_of([c.process.id]),
    "process_edges": lambda s, c: s.process_edges(c.process.id),
    "rate_take": lambda s, c: s.rate_take("rate:add", Rate(1, 1.0), T0),
    "process_resume_dependents": lambda s, c: s.process_resume_dependents(c.process.id, T0),
    "batch_get": lambda s, c: s.batch_get(c.process.id),
    "batch_by_custom_id": lambda s, c: s.batch_by_custom_id("", "nightly"),
    "batch_counts": lambda s, c: s.batch_counts(c.process.id),
    "batch_graph": lambda s, c: s.batch_graph(c.process.id),
    "schedule_list": lambda s, c: s.schedule_list(),
    "schedule_fire": lambda s, c: s.schedule_fire(ScheduleFiring("nightly", 0, T0, T0)),
    "batch_counts_fold": lambda s, c: s.batch_counts_fold(10),
    "runnable_backlog": lambda s, c: s.runnable_backlog(["add"], None, T0),
    "connection_budget": lambda s, c: s.connection_budget(),
    "process_stats": lambda s, c: s.process_stats(T0 - 3600),
    "token_insert": lambda s, c: s.token_insert(
        TokenInfo("t1", "shop", False, False, None, T0), "hash-of-t1"
    ),
    "token_by_hash": lambda s, c: s.token_by_hash("hash-of-t1"),
    "token_list": lambda s, c: s.token_list(),
    "token_revoke": lambda s, c: s.token_revoke("t1", T0),
    "worker_claim_get": lambda s, c: s.worker_claim_get("w", "c1"),
    "worker_claim_put": lambda s, c: s.worker_claim_put("w", "c1", "{}", T0, 60.0),
}


def test_the_table_names_every_verb_of_the_interface() -> None:
    public = {n for n in dir(Storage) if not n.startswith("_")}
    # Not verbs on the database: the URL, closing, the clock and wake-ups.
    public -= {"url", "close", "now", "notify_local", "change_epoch", "wait_for_change"}
    assert set(VERBS) == public


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_no_driver_error_leaves_a_verb(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    storage.process_insert_many([new()])
    [claimed] = claim(storage)
    raised: list[BaseException] = []

    @contextmanager
    def failing(*args: object, **kwargs: object) -> Iterator[Any]:
        raise raised[-1]
        yield  # pragma: no cover

    monkeypatch.setattr(storage._pool, "connection", failing)
    for driver_error, expected in DRIVER_ERRORS:
        raised.append(driver_error)
        with pytest.raises(StorageError) as caught:
            VERBS[verb](storage, claimed)
        if verb == "migrate" and expected is not StorageUnavailable:
            expected = StorageError  # it writes no value of the caller's
        assert type(caught.value) is expected, (verb, driver_error, caught.value)
        assert_one_line(caught.value)


def test_waiting_for_a_change_meets_no_driver_error(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused() -> None:
        raise psycopg.OperationalError("connection failed: Connection refused")

    monkeypatch.setattr(storage, "_listen_connect", refused)
    # Polls instead, and says to look again.
    assert storage.wait_for_change(storage.change_epoch(), 0.01)


# --- StorageUnavailable, for real ---------------------------------------------------------------


def test_a_backend_terminated_mid_statement_makes_the_verb_unavailable(url: str) -> None:
    """The server shutting down (57P01) under a commit that waits for a row lock."""
    app = f"corral_err_{uuid.uuid4().hex[:8]}"
    with PostgresStorage(f"{url}&application_name={app}") as storage:
        storage.process_insert_many([new()])
        [claimed] = claim(storage)
        with psycopg.connect(url) as holder:  # a transaction that holds the row
            holder.execute("SELECT 1 FROM corral_process FOR UPDATE")
            result: list[BaseException | object] = []

            def committing() -> None:
                try:
                    result.append(storage.process_commit_many([commit(claimed, {"n": 1})]))
                except BaseException as exc:  # shown by the assertion below
                    result.append(exc)

            thread = threading.Thread(target=committing)
            thread.start()
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                waiting = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"  # noqa: E501
                [(pid,)] = wait_until(
                    lambda: admin.execute(waiting, (app,)).fetchall(),
                    timeout=30,
                    what="the commit to wait for the row lock",
                )
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            thread.join(timeout=30)
            holder.rollback()
        [error] = result
        assert type(error) is StorageUnavailable, error
        assert_one_line(error)
        assert "terminating connection" in str(error)
        # Nothing landed, and the storage carries on.
        got = storage.process_get(claimed.process.id)
        assert got is not None and got.status is Status.STARTING and got.leased
        assert storage.process_commit_many([commit(claimed, {"n": 1})]) == []


def test_no_free_connection_in_the_pool_is_unavailable(storage: PostgresStorage) -> None:
    storage._pool.timeout = 0.2
    held = [storage._pool.getconn() for _ in range(storage._pool.max_size)]
    try:
        with pytest.raises(StorageUnavailable) as caught:
            storage.process_get("x")
        assert_one_line(caught.value)
    finally:
        for conn in held:
            storage._pool.putconn(conn)
    assert storage.process_get("x") is None


@contextmanager
def role(connection_limit: int) -> Iterator[str]:
    """A login role of its own, with a connection limit."""
    name = f"corral_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {}").format(
                sql.Identifier(name), sql.Literal(connection_limit)
            )
        )
        try:
            yield name
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_too_many_connections_is_unavailable() -> None:
    require_postgres()
    with role(connection_limit=0) as name:
        parts = urlsplit(POSTGRES_URL)
        netloc = f"{name}@{parts.hostname}:{parts.port or 5432}"
        with pytest.raises(StorageUnavailable, match="too many connections") as caught:
            open_storage(urlunsplit(parts._replace(netloc=netloc)), migrate=False)
        assert_one_line(caught.value)


# --- ValueRejected, for real: nothing written ----------------------------------------------------


def _unique_long_text() -> str:
    """Text no compression shortens: too large for a btree index row (54000)."""
    return secrets.token_hex(2_000)


REFUSED_INSERTS: dict[str, Callable[[], NewProcess]] = {
    "22003 integer out of range": lambda: new(priority=2**40),
    "22P05 jsonb refuses \\u0000": lambda: new(tags={"team": "a\x00b"}),
    "22021 NUL in text": lambda: new(custom_id="a\x00b"),
    "54000 index row too large": lambda: new(custom_id=_unique_long_text()),
    "lone surrogate": lambda: new(custom_id="\ud800"),
}


@pytest.mark.parametrize("refused", sorted(REFUSED_INSERTS))
@pytest.mark.parametrize("size", [1, 3])
def test_an_insert_of_a_refused_value_writes_nothing(
    storage: PostgresStorage, refused: str, size: int
) -> None:
    storage.process_insert_many([new()])
    batch = [new(custom_id=f"ok-{i}" if i % 2 else None) for i in range(size - 1)]
    batch.append(REFUSED_INSERTS[refused]())
    # Refused by the server (ValueRejected), or before it by the encoding every backend
    # shares (NotStorable, for text no backend can store): either way, nothing written.
    with pytest.raises((ValueRejected, NotStorable)) as caught:
        storage.process_insert_many(batch)
    assert_one_line(caught.value)
    assert rows(storage) == (1, 1)
    # The storage carries on, and the good processes go in on their own.
    if batch[:-1]:
        assert len(storage.process_insert_many(batch[:-1])) == size - 1


def test_a_claim_by_an_owner_the_server_refuses_takes_nothing(storage: PostgresStorage) -> None:
    storage.process_insert_many([new()])
    with pytest.raises(ValueRejected):
        claim(storage, owner="w\x00")
    assert len(claim(storage)) == 1


@contextmanager
def latin1_database() -> Iterator[str]:
    """A database whose encoding lacks most of Unicode: it refuses "日本" in a store."""
    require_postgres()
    name = f"corral_latin1_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
        try:
            yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    "encoding",
    [
        "",  # the client speaks LATIN1 too: the driver cannot encode the value
        "?client_encoding=UTF8",  # the server cannot convert it (22P05)
    ],
    ids=["driver", "server"],
)
def test_a_batch_commit_with_a_refused_value_writes_nothing(encoding: str) -> None:
    with latin1_database() as url, PostgresStorage(url + encoding) as storage:
        storage.process_insert_many([new() for _ in range(3)])
        good, bad = claim(storage, limit=2)
        commits = [commit(good, {"city": "Zürich"}), commit(bad, {"city": "日本"})]
        before = rows(storage)
        with pytest.raises(ValueRejected) as caught:
            storage.process_commit_many(commits)
        assert_one_line(caught.value)
        # A commit and a claim together: neither lands.
        with pytest.raises(ValueRejected):
            storage.process_commit_and_claim(commits, Claim("w2", T0, 60.0, limit=5))
        assert rows(storage) == before
        for c in (good, bad):
            got = storage.process_get(c.process.id)
            assert got is not None and got.status is Status.STARTING
            assert got.leased and got.lease_owner == "w1" and got.lease_token == c.token
        [third] = [p for p in storage.process_list(ProcessFilter()) if not p.leased]
        # One by one, as the worker then settles them: only the refused one is refused.
        assert storage.process_commit_many(commits[:1]) == []
        with pytest.raises(ValueRejected):
            storage.process_commit_many(commits[1:])
        done = storage.process_get(good.process.id)
        assert done is not None and done.status is Status.COMPLETED
        assert done.store == {"city": "Zürich"}
        assert [c.process.id for c in claim(storage, limit=5)] == [third.id]


# --- anything else: StorageError -----------------------------------------------------------------


def test_a_table_dropped_under_the_storage_is_a_storage_error(storage: PostgresStorage) -> None:
    storage.process_insert_many([new()])
    with storage._connection() as conn:
        conn.execute("DROP TABLE corral_history")
    with pytest.raises(StorageError, match=r"SQLSTATE 42P01") as caught:
        storage.history_list("x")
    assert type(caught.value) is StorageError
    assert_one_line(caught.value)
