"""What the PostgreSQL backend promises beyond the conformance suite: many submitters and
workers at once, query plans that ignore finished work, wake-ups, and a server that goes
away and comes back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from corral import model
from corral.errors import StorageUnavailable, UsageError
from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import Claim, Inserted, IterationCommit, NewProcess, ProcessFilter
from corral.storage.postgres import PostgresStorage
from tests.backends import POSTGRES_URL, require_postgres
from tests.e2e.conftest import wait_until
from tests.pg import isolated_schema_url

pytestmark = pytest.mark.postgres

T0 = 1_000_000.0


@pytest.fixture
def url() -> Iterator[str]:
    require_postgres()
    with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
        PostgresStorage(url).close()  # the schema, made once before any race
        yield url


@pytest.fixture
def storage(url: str) -> Iterator[PostgresStorage]:
    storage = PostgresStorage(url)
    try:
        yield storage
    finally:
        storage.close()


def new(custom_id: str | None = None, **kw: Any) -> NewProcess:
    fields: dict[str, Any] = {"params": {"a": 1}, "created_at": T0, "run_at": T0}
    fields.update(kw)
    return NewProcess(id=str(uuid.uuid4()), job="add", custom_id=custom_id, **fields)


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run `work(i)` in `count` threads released at the same moment; results or exceptions."""
    start = threading.Barrier(count)
    results: list[object] = [None] * count

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # returned, so that the test shows it
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# --- idempotent submit under contention ------------------------------------------------------


def test_concurrent_submitters_of_one_custom_id_in_threads_create_one_process(url: str) -> None:
    storages = [PostgresStorage(url) for _ in range(8)]
    try:
        for round_ in range(5):
            key = f"k{round_}"

            def submit(i: int, key: str = key) -> Inserted:
                return storages[i].process_insert_many([new(key)])[0]

            results = run_together(len(storages), submit)
            assert all(isinstance(r, Inserted) for r in results), results
            inserted = [r for r in results if isinstance(r, Inserted)]
            assert sorted(r.outcome for r in inserted) == ["created"] + ["existing"] * 7
            assert len({r.process.id for r in inserted}) == 1
        assert len(storages[0].process_list(ProcessFilter(limit=100))) == 5
    finally:
        for s in storages:
            s.close()


def test_batches_taking_the_same_custom_ids_in_opposite_orders_all_succeed(url: str) -> None:
    storages = [PostgresStorage(url) for _ in range(2)]
    try:
        for round_ in range(10):
            keys = [f"a{round_}", f"b{round_}", f"c{round_}"]

            def submit(i: int, keys: list[str] = keys) -> list[Inserted]:
                order = keys if i == 0 else keys[::-1]
                return storages[i].process_insert_many([new(k) for k in order])

            results = run_together(2, submit)
            assert all(isinstance(r, list) for r in results), results
        assert len(storages[0].process_list(ProcessFilter(limit=100))) == 30
    finally:
        for s in storages:
            s.close()


_SUBMIT_SCRIPT = """
import json, sys, time, uuid
from corral.storage.base import NewProcess
from corral.storage.postgres import PostgresStorage
url, key, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
with PostgresStorage(url, migrate=False) as storage:
    time.sleep(max(0.0, start - time.time()))
    new = NewProcess(id=str(uuid.uuid4()), job="add", params={"a": 1}, created_at=0.0,
                     run_at=0.0, custom_id=key)
    [inserted] = storage.process_insert_many([new])
print(json.dumps([inserted.outcome, inserted.process.id]))
"""


def test_concurrent_submitters_of_one_custom_id_in_processes_create_one_process(
    url: str,
) -> None:
    start = time.time() + 3.0  # every interpreter is up by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SUBMIT_SCRIPT, url, "shared", str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert sorted(outcome for outcome, _ in results) == ["created"] + ["existing"] * 5
    assert len({pid for _, pid in results}) == 1


# --- claims, commits and leases --------------------------------------------------------------


def test_claim_takes_only_the_queues_asked_for(storage: PostgresStorage) -> None:
    fast, slow = new(queue="fast"), new(queue="slow")
    storage.process_insert_many([fast, slow])
    got = storage.process_claim(Claim("w", T0, 30, limit=10, queues=["slow"]))
    assert [c.process.id for c in got] == [slow.id]


def test_a_second_commit_of_one_process_in_a_batch_is_lost(storage: PostgresStorage) -> None:
    p = new()
    storage.process_insert_many([p])
    [c] = storage.process_claim(Claim("w", T0, 30))
    change = model.committed(c.process, T0 + 1, store={}, progress=(None, None), to=Status.RUNNING)
    twice = [IterationCommit(p.id, c.token, change, T0 + 1)] * 2
    assert storage.process_commit_many(twice) == [p.id]
    kinds = [e.kind for e in storage.history_list(p.id)]
    assert kinds == ["submitted", "transition"]


def test_batches_over_the_same_leases_in_opposite_orders_do_not_deadlock(
    storage: PostgresStorage, url: str
) -> None:
    storage.process_insert_many([new() for _ in range(40)])
    claimed = storage.process_claim(Claim("w", T0, 30, limit=40))
    tokens = {c.process.id: c.token for c in claimed}
    orders = [dict(sorted(tokens.items())), dict(sorted(tokens.items(), reverse=True))]
    storages = [PostgresStorage(url) for _ in orders]
    try:

        def renew(i: int) -> None:
            for n in range(30):
                renewal = storages[i].lease_renew_many("w", orders[i], T0 + n, 30)
                assert renewal.lost == frozenset()

        assert run_together(2, renew) == [None, None]
    finally:
        for s in storages:
            s.close()


class ExplainingConnection:
    """A pooled connection that records the plan of every statement before running it."""

    def __init__(self, conn: psycopg.Connection[Any], plans: list[str]) -> None:
        self._conn = conn
        self._plans = plans

    def execute(self, query: Any, params: Any = None) -> Any:
        explain = sql.SQL("EXPLAIN ") + (sql.SQL(query) if isinstance(query, str) else query)
        rows = self._conn.execute(explain, params).fetchall()
        self._plans.append("\n".join(r[0] for r in rows))
        return self._conn.execute(query, params)

    def transaction(self) -> Any:
        return self._conn.transaction()

    def pipeline(self) -> Any:
        return self._conn.pipeline()


def test_worker_verbs_never_scan_the_process_or_history_table(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given many finished processes with their history, many scheduled for much later, and
    # a little work due now...
    with psycopg.connect(storage.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO corral_process (id, job, params, status, run_at, created_at, "
            "updated_at, finished_at) SELECT 'done-' || g, 'add', '{}', 'completed', 'epoch', "
            "'epoch', 'epoch', to_timestamp(g) FROM generate_series(1, 20000) g"
        )
        conn.execute(
            "INSERT INTO corral_process (id, job, params, status, run_at, created_at, "
            "updated_at) SELECT 'later-' || g, 'add', '{}', 'starting', to_timestamp(1e12), "
            "'epoch', 'epoch' "
            "FROM generate_series(1, 20000) g"
        )
        conn.execute(
            "INSERT INTO corral_history (process_id, at, kind) "
            "SELECT 'done-' || (g % 20000), to_timestamp(g), 'transition' "
            "FROM generate_series(1, 60000) g"
        )
    storage.process_insert_many([new(priority=i % 3) for i in range(50)])
    with psycopg.connect(storage.url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    # ...when a worker goes through its verbs...
    plans: list[str] = []
    original = storage._connection

    @contextmanager
    def explaining() -> Iterator[ExplainingConnection]:
        with original() as conn:
            yield ExplainingConnection(conn, plans)

    monkeypatch.setattr(storage, "_connection", explaining)
    storage.process_insert_many([new("k"), new("k")])
    claimed = storage.process_claim(Claim("w", T0, 30, limit=5))
    storage.process_claim(Claim("w", T0, 30, limit=5, process_ids=[claimed[0].process.id]))
    tokens = {c.process.id: c.token for c in claimed}
    storage.lease_renew_many("w", tokens, T0 + 1, 30)
    storage.lease_release_many(dict(list(tokens.items())[:1]), T0 + 1)
    commits = [
        IterationCommit(
            c.process.id,
            c.token,
            model.committed(c.process, T0 + 2, store={}, progress=(None, None), to=Status.RUNNING),
            T0 + 2,
        )
        for c in claimed[1:]
    ]
    storage.process_commit_many(commits[1:])
    storage.process_commit_and_claim(commits[:1], Claim("w", T0 + 2, 30, limit=2))
    p = storage.process_get(claimed[1].process.id)
    assert p is not None
    storage.process_update(p.id, p.version, model.cancel(p, T0 + 3), T0 + 3)
    storage.history_list(p.id)
    storage.process_prune(0.5)
    # ...none of them reads every row.
    assert len(plans) >= 10
    scans = [plan for plan in plans if "Seq Scan on corral_process" in plan]
    scans += [plan for plan in plans if "Seq Scan on corral_history" in plan]
    assert scans == []
    claims = [plan for plan in plans if "corral_process_runnable" in plan]
    assert claims, "claims walk the partial index of runnable processes"


# --- errors and wake-ups ---------------------------------------------------------------------


def test_an_unreachable_server_is_one_clear_error_quickly() -> None:
    began = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        open_storage("postgres://postgres:secret@127.0.0.1:1/test")
    assert time.monotonic() - began < 5
    message = str(caught.value)
    assert "cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/test" in message
    assert "secret" not in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_bad_url_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="invalid PostgreSQL URL"):
        PostgresStorage("postgresql://postgres@127.0.0.1/test?no_such_option=1")


def test_without_notify_waiting_polls(url: str) -> None:
    storage = PostgresStorage(url + "&notify=false")
    with storage:
        epoch = storage.change_epoch()  # read before the write it must see
        p = new()
        storage.process_insert_many([p])
        assert storage.process_get(p.id) is not None
        began = time.monotonic()
        assert storage.wait_for_change(epoch, 5.0)
        assert time.monotonic() - began < 0.5
        assert storage._listener is None


def test_wake_ups_survive_the_server_dropping_every_connection(url: str) -> None:
    app = f"corral_test_{uuid.uuid4().hex[:8]}"
    with PostgresStorage(f"{url}&application_name={app}") as waiter, PostgresStorage(url) as writer:
        waiter.wait_for_change(waiter.change_epoch(), 0.01)  # listening
        waiter.process_insert_many([new()])
        # Given PostgreSQL drops every connection of the waiter (as a restart would)...
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (app,),
            ).fetchall()
            assert len(ended) >= 2  # a pooled one and the listener
            # pg_terminate_backend only signals: wait until the backends have exited (and so
            # closed their sockets), as after a restart.
            alive = "SELECT FROM pg_stat_activity WHERE pid = ANY(%s)"
            pids = [pid for pid, _ in ended]
            wait_until(
                lambda: not admin.execute(alive, (pids,)).fetchall(),
                timeout=30,
                what="the terminated backends to exit",
            )
        # ...its pooled connections are replaced on the next use...
        assert len(waiter.process_list(ProcessFilter())) == 1
        # ...and once its listener is back (which it reports as a change), a write of
        # another worker still wakes it.
        deadline = time.monotonic() + 20
        while waiter.wait_for_change(waiter.change_epoch(), 0.5):
            assert time.monotonic() < deadline
        epoch = waiter.change_epoch()  # read before the write it must see
        writer.process_insert_many([new()])
        assert waiter.wait_for_change(epoch, 5.0)
