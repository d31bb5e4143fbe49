"""Bulk submit takes shortcuts (multi-row statements, history rows made by SQL, batch-wide
values sent once, records built rather than read back): what it stores and returns is
exactly what submitting one process at a time stores and returns."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import App
from corral.model import Event, Status
from corral.storage.base import NewProcess
from tests.backends import backend_url


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url)

        @a.job()
        def add(a: int, b: int = 0) -> int:
            return a + b

        @a.job()
        def other(x: str) -> None: ...

        yield a
        a.close()


def submitted(job: str, at: float, pid: str, custom_id: str | None = None) -> Event:
    return Event(
        "submitted", at, None, Status.STARTING, 0, {"job": job, "custom_id": custom_id}, pid
    )


def test_a_bulk_submit_stores_and_returns_what_single_submits_do(app: App) -> None:
    one = app.submit("add", {"a": -1}, tags={"k": "v"}, priority=2, start_to_close=5)
    # 600: two whole multi-row statements of SQLite's and a remainder.
    many = app.submit_many("add", [{"a": i} for i in range(600)], tags={"k": "v"}, priority=2)
    assert [s.outcome for s in many] == ["created"] * 600
    for s in [one, *many]:
        stored = app.get(s.id)
        assert s.process == stored  # the record returned is the row as read back
        assert app.history(s.id) == [submitted("add", stored.created_at, s.id)]
    assert [s.process.params for s in many] == [{"a": i, "b": 0} for i in range(600)]
    assert {p.tags["k"] for p in app.list(limit=1000)} == {"v"}
    assert many[0].process.tags is not many[1].process.tags


def test_a_batch_of_several_jobs_and_custom_ids_keeps_every_history(app: App) -> None:
    now = app.clock()
    batch = [
        NewProcess(str(uuid.uuid4()), "add", {"a": 1, "b": 0}, now, now),
        NewProcess(str(uuid.uuid4()), "other", {"x": "y"}, now, now, custom_id="c1"),
        NewProcess(str(uuid.uuid4()), "add", {"a": 2, "b": 0}, now, now, queue="q"),
        NewProcess(str(uuid.uuid4()), "add", {"a": 3, "b": 0}, now, now, custom_id="c2"),
    ]
    inserted = app.storage.process_insert_many(batch)
    assert [i.outcome for i in inserted] == ["created"] * 4
    for new, ins in zip(batch, inserted, strict=True):
        assert ins.process == app.get(new.id)
        assert app.history(new.id) == [submitted(new.job, now, new.id, new.custom_id)]
    # The same custom ids again: the existing processes, nothing new written.
    again = app.storage.process_insert_many(
        [
            NewProcess(str(uuid.uuid4()), "other", {"x": "y"}, now + 1, now + 1, custom_id="c1"),
            NewProcess(str(uuid.uuid4()), "add", {"a": 9, "b": 0}, now + 1, now + 1),
        ]
    )
    assert [i.outcome for i in again] == ["existing", "created"]
    assert again[0].process.id == batch[1].id
    assert len(app.list(limit=100)) == 5


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_bulk_history_with_rowids_near_the_top(app: App, tmp_path: Path) -> None:
    """SQLite makes a bulk's history rows from the process rows above the largest rowid;
    near the top of the rowid range it builds them one by one instead."""
    app.storage  # noqa: B018 - create the schema
    with sqlite3.connect(tmp_path / "corral.db") as conn:
        conn.execute(
            "INSERT INTO corral_process (rowid, id, job, params, status, run_at, created_at, "
            "updated_at) VALUES (?, ?, 'add', '{}', 'completed', 0, 0, 0)",
            (2**62 + 5, str(uuid.uuid4())),
        )
    many = app.submit_many("add", [{"a": i} for i in range(300)])
    for s in many:
        assert app.history(s.id) == [submitted("add", s.process.created_at, s.id)]


def test_a_batch_the_database_refuses_writes_nothing_and_the_next_one_works(app: App) -> None:
    now = app.clock()
    pid = str(uuid.uuid4())
    twice = [NewProcess(pid, "add", {"a": i, "b": 0}, now, now) for i in range(3)]
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        app.storage.process_insert_many(twice)
    assert app.list() == []
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        app.storage.process_insert_many(twice[:1] * 2)
    assert app.list() == []
    after = app.submit_many("add", [{"a": 1}, {"a": 2}])
    assert sorted(p.id for p in app.list()) == sorted(s.id for s in after)
