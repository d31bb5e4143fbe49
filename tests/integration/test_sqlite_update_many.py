"""SQLite applies process_update_many in one transaction: one commit (one fsync) for the
recovery sweep's whole batch, and nothing of it lands if one of its updates fails."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import model
from corral.errors import NotStorable
from corral.model import Process, Status
from corral.storage import open_storage
from corral.storage.base import NewProcess, Update
from corral.storage.sqlite import SQLiteStorage

T0 = 1_000.0


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = open_storage(f"sqlite:///{tmp_path / 'corral.db'}")
    assert isinstance(s, SQLiteStorage)
    yield s
    s.close()


def queued(storage: SQLiteStorage, count: int) -> list[Process]:
    news = [
        NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0, run_at=T0)
        for _ in range(count)
    ]
    storage.process_insert_many(news)
    got = [storage.process_get(n.id) for n in news]
    return [p for p in got if p is not None]


def test_a_batch_of_updates_is_one_durable_transaction(storage: SQLiteStorage) -> None:
    ps = queued(storage, 3)
    updates = [Update(p.id, p.version, model.cancel(p, T0 + 1), T0 + 1) for p in ps]
    seen: list[str] = []
    storage._conn.set_trace_callback(seen.append)
    try:
        assert storage.process_update_many(updates) == [p.id for p in ps]
    finally:
        storage._conn.set_trace_callback(None)
    assert seen.count("BEGIN IMMEDIATE") == 1 and seen.count("COMMIT") == 1
    assert not any(s.startswith("PRAGMA synchronous") for s in seen)  # FULL throughout
    for p in ps:
        got = storage.process_get(p.id)
        assert got is not None and got.status is Status.CANCELED


def test_an_update_that_fails_takes_the_whole_batch_back(storage: SQLiteStorage) -> None:
    good, bad = queued(storage, 2)
    unstorable = model.Change.of(bad).with_(store={"x": float("nan")})
    updates = [
        Update(good.id, good.version, model.cancel(good, T0 + 1), T0 + 1),
        Update(bad.id, bad.version, unstorable, T0 + 1),
    ]
    with pytest.raises(NotStorable):
        storage.process_update_many(updates)
    after = storage.process_get(good.id)
    assert after is not None and after.version == good.version
    assert after.status is Status.STARTING
    assert [e.kind for e in storage.history_list(good.id)] == ["submitted"]
