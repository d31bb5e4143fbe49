"""Transactional enqueue: `submit(..., connection=conn)` writes through the
caller's own psycopg connection, inside the caller's transaction, so that the process
exists, and wakes workers, if and only if the caller commits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from corral import App, Context, CustomIdConflict, Status, UsageError, Worker, WorkerOptions
from corral.storage.postgres import PostgresStorage
from tests.backends import backend_url


def make_app(url: str) -> App:
    app = App(url, lease_seconds=5)

    @app.job()
    def add(ctx: Context, a: int, b: int) -> int:
        return a + b

    return app


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with backend_url("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def app(pg_url: str) -> Iterator[App]:
    a = make_app(pg_url)
    a.storage  # noqa: B018 - create the schema before the tests' own connections use it
    yield a
    a.close()


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The caller's own connection: not autocommit, so every statement is in a transaction
    that the caller ends."""
    with psycopg.connect(pg_url) as c:
        yield c


def rows(url: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    """What a third party sees, on a connection of its own (committed data only)."""
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute(query, args).fetchall()


def counts(url: str, ids: list[str]) -> tuple[int, int]:
    [(processes,)] = rows(url, "SELECT count(*) FROM corral_process WHERE id = ANY(%s)", ids)
    [(history,)] = rows(url, "SELECT count(*) FROM corral_history WHERE process_id = ANY(%s)", ids)
    return processes, history


def drain(app: App) -> None:
    Worker(app, WorkerOptions(once=True, poll_interval=0.05)).run()


pg = pytest.mark.postgres


# --- commit: it exists; rollback: nothing at all -------------------------------------------


@pg
def test_a_process_submitted_in_a_committed_transaction_exists_and_runs(
    app: App, conn: psycopg.Connection[Any], pg_url: str
) -> None:
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    conn.execute("INSERT INTO orders VALUES (1)")
    p = app.submit("add", {"a": 1, "b": 2}, connection=conn)
    assert (p.outcome, p.status) == ("created", Status.STARTING)
    # Not committed yet: invisible to everybody else, workers included.
    assert counts(pg_url, [p.id]) == (0, 0)
    assert app.storage.process_get(p.id) is None
    drain(app)
    conn.commit()
    # Committed together with the caller's own row.
    assert rows(pg_url, "SELECT id FROM orders") == [(1,)]
    assert counts(pg_url, [p.id]) == (1, 1)
    drain(app)
    done = app.get(p.id)
    assert (done.status, done.result) == (Status.COMPLETED, 3)
    assert [e.kind for e in app.history(p.id)] == ["submitted", "transition"]


@pg
def test_a_rolled_back_transaction_leaves_no_process_and_no_history(
    app: App, conn: psycopg.Connection[Any], pg_url: str
) -> None:
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    conn.commit()
    conn.execute("INSERT INTO orders VALUES (1)")
    one = app.submit("add", {"a": 1, "b": 2}, connection=conn)
    many = app.submit_many("add", [{"a": i, "b": i} for i in range(50)], connection=conn)
    ids = [one.id, *(s.id for s in many)]
    # Inside the transaction, the caller sees what it wrote...
    [(seen,)] = conn.execute("SELECT count(*) FROM corral_process WHERE id = ANY(%s)", [ids])
    assert seen == 51
    conn.rollback()
    # ...and after the rollback, nobody sees anything: no process, no history row.
    assert counts(pg_url, ids) == (0, 0)
    assert rows(pg_url, "SELECT count(*) FROM orders") == [(0,)]
    drain(app)
    assert all(app.storage.process_get(i) is None for i in ids)
    assert app.storage.history_list(one.id) == []


@pg
def test_submit_many_in_a_committed_transaction_creates_every_process(
    app: App, conn: psycopg.Connection[Any], pg_url: str
) -> None:
    with conn.transaction():  # the caller's explicit transaction block
        many = app.submit_many("add", [{"a": i, "b": 1} for i in range(50)], connection=conn)
        assert counts(pg_url, [s.id for s in many]) == (0, 0)
    assert counts(pg_url, [s.id for s in many]) == (50, 50)
    drain(app)
    assert sorted(app.get(s.id).result for s in many) == [i + 1 for i in range(50)]


@pg
def test_the_callers_autocommit_transaction_block_and_row_factory_are_respected(
    app: App, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True, row_factory=dict_row) as conn:
        with conn.transaction():
            p = app.submit("add", {"a": 1, "b": 1}, connection=conn, tags={"k": "v"})
            assert p.process.tags == {"k": "v"}  # decoded as corral expects, not as a dict row
            assert counts(pg_url, [p.id]) == (0, 0)
        assert counts(pg_url, [p.id]) == (1, 1)
        # Outside a transaction block, autocommit commits at once, like a plain submit.
        q = app.submit("add", {"a": 2, "b": 2}, connection=conn)
        assert counts(pg_url, [q.id]) == (1, 1)


@pg
def test_a_custom_id_conflict_undoes_only_that_submit(
    app: App, conn: psycopg.Connection[Any], pg_url: str
) -> None:
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    conn.execute("INSERT INTO orders VALUES (1)")
    first = app.submit("add", {"a": 1, "b": 2}, custom_id="order-1", connection=conn)
    again = app.submit("add", {"a": 1, "b": 2}, custom_id="order-1", connection=conn)
    assert (again.outcome, again.id) == ("existing", first.id)
    with pytest.raises(CustomIdConflict):
        app.submit("add", {"a": 9, "b": 9}, custom_id="order-1", connection=conn)
    # The caller's transaction is still usable and still holds what it wrote before.
    conn.execute("INSERT INTO orders VALUES (2)")
    conn.commit()
    assert rows(pg_url, "SELECT id FROM orders ORDER BY id") == [(1,), (2,)]
    assert counts(pg_url, [first.id]) == (1, 1)


@pg
def test_a_connection_to_another_schema_or_of_another_kind_is_refused(
    app: App, conn: psycopg.Connection[Any], pg_url: str
) -> None:
    base = pg_url.split("?")[0]
    with (
        psycopg.connect(base, autocommit=True) as elsewhere,  # search_path: public
        pytest.raises(UsageError, match="another corral database or schema"),
    ):
        app.submit("add", {"a": 1, "b": 2}, connection=elsewhere)
    with pytest.raises(UsageError, match="psycopg"):
        app.submit("add", {"a": 1, "b": 2}, connection=object())


# --- wake-ups ---------------------------------------------------------------------------------


@pg
def test_the_notify_wakes_a_waiting_worker_only_when_the_caller_commits(
    app: App, pg_url: str
) -> None:
    # A worker elsewhere (its own storage, like another machine) whose idle wait is a
    # minute long: only a NOTIFY can make it run anything within the test's time.
    worker_app = make_app(pg_url)
    worker = Worker(worker_app, WorkerOptions(poll_interval=60, sweep_interval=60))
    thread = threading.Thread(target=worker.run, daemon=True)
    waiter = PostgresStorage(pg_url)
    try:
        thread.start()
        waiter.wait_for_change(waiter.change_epoch(), 0.01)  # listening from here on
        while waiter.wait_for_change(
            waiter.change_epoch(), 0.3
        ):  # let the worker's start-up writes pass
            pass
        with psycopg.connect(pg_url) as conn:
            p = app.submit("add", {"a": 2, "b": 3}, connection=conn)
            assert not waiter.wait_for_change(
                waiter.change_epoch(), 1.0
            )  # no wake-up before the commit
            conn.rollback()
            assert not waiter.wait_for_change(waiter.change_epoch(), 1.0)  # nor after a rollback
            q = app.submit("add", {"a": 4, "b": 5}, connection=conn)
            assert not waiter.wait_for_change(waiter.change_epoch(), 0.5)
            assert rows(pg_url, "SELECT count(*) FROM corral_process") == [(0,)]
            epoch = waiter.change_epoch()  # read before the commit it must see
            conn.commit()
        assert waiter.wait_for_change(epoch, 5.0)  # the commit delivers the NOTIFY
        done = app.wait(q.id, timeout=10)  # and the sleeping worker wakes and runs it
        assert (done.status, done.result) == (Status.COMPLETED, 9)
        assert app.storage.process_get(p.id) is None
    finally:
        worker.stop(immediately=True)
        thread.join(timeout=10)
        waiter.close()
        worker_app.close()
    assert not thread.is_alive()


# --- bulk submit is one statement -------------------------------------------------------------


@pg
@pytest.mark.parametrize("own_connection", [False, True])
def test_submit_many_inserts_a_whole_batch_in_one_statement(
    app: App, pg_url: str, monkeypatch: pytest.MonkeyPatch, own_connection: bool
) -> None:
    statements: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor[Any], query: Any, *args: Any, **kw: Any) -> Any:
        statements.append(str(query))
        return execute(self, query, *args, **kw)

    with psycopg.connect(pg_url) as conn:
        monkeypatch.setattr(psycopg.Cursor, "execute", counting)
        many = app.submit_many(
            "add",
            [{"a": i, "b": 0} for i in range(2000)],
            connection=conn if own_connection else None,
        )
        monkeypatch.undo()
        conn.commit()
    inserts = [s for s in statements if "INSERT INTO corral_process" in s]
    assert len(inserts) == 1, statements
    assert len(statements) <= 2  # the insert, and the schema check on a caller's connection
    assert counts(pg_url, [s.id for s in many]) == (2000, 2000)


# --- the other backends -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_sqlite_and_memory_refuse_a_connection_and_write_nothing(
    backend: str, tmp_path: Path
) -> None:
    with backend_url(backend, tmp_path) as url:
        app = make_app(url)
        try:
            sentinel = object()
            with pytest.raises(UsageError, match="transactional enqueue needs the PostgreSQL"):
                app.submit("add", {"a": 1, "b": 2}, connection=sentinel)
            with pytest.raises(UsageError, match="transactional enqueue needs the PostgreSQL"):
                app.submit_many("add", [{"a": 1, "b": 2}], connection=sentinel)
            assert app.list() == []
        finally:
            app.close()


def test_a_keyed_process_enqueued_in_the_callers_transaction_keeps_its_key(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    @app.job(concurrency=1, concurrency_key="customer")
    def charge(ctx: Context, customer: str) -> None: ...

    with conn.transaction():
        submitted = app.submit("charge", {"customer": "acme"}, connection=conn)
    slots = app.storage.process_concurrency(submitted.id, app.clock())
    assert slots is not None and (slots.key, slots.limit) == ("charge:acme", 1)


def test_a_dependent_submitted_in_the_callers_transaction_exists_only_if_it_commits(
    app: App, conn: psycopg.Connection[Any], pg_url: str
) -> None:
    first = app.submit("add", {"a": 1, "b": 2})
    rolled_back = app.submit("add", {"a": 3, "b": 4}, depends_on=[first.id], connection=conn)
    assert rolled_back.status is Status.WAITING
    conn.rollback()
    assert rows(pg_url, "SELECT count(*) FROM corral_process WHERE id = %s", rolled_back.id) == [
        (0,)
    ]
    assert rows(pg_url, "SELECT count(*) FROM corral_dependency") == [(0,)]
    kept = app.submit("add", {"a": 5, "b": 6}, depends_on=[first.id], connection=conn)
    conn.commit()
    assert app.get(kept.id).status is Status.WAITING
    assert app.dependencies(kept.id) == ([first.id], [])
    Worker(app, WorkerOptions(once=True, poll_interval=0.05)).run()
    assert app.get(kept.id).result == 11
