"""SQLite commits of a process's outcome wait for the disk (synchronous=FULL); leases
alone (claims, renewals) do not (see SQLiteStorage._write)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import model
from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import Claim, IterationCommit, NewProcess
from corral.storage.sqlite import SQLiteStorage

T0 = 1_000.0


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = open_storage(f"sqlite:///{tmp_path / 'corral.db'}")
    assert isinstance(s, SQLiteStorage)
    yield s
    s.close()


def synchronous(storage: SQLiteStorage) -> int:
    return int(storage._conn.execute("PRAGMA synchronous").fetchone()[0])


def statements_of(storage: SQLiteStorage, action: object) -> list[str]:
    seen: list[str] = []
    storage._conn.set_trace_callback(seen.append)
    try:
        assert callable(action)
        action()
    finally:
        storage._conn.set_trace_callback(None)
    return seen


def durability_of_each_commit(statements: list[str]) -> list[str]:
    """FULL or NORMAL for each COMMIT, from the PRAGMAs traced before it."""
    level, out = "FULL", []
    for sql in statements:
        if sql.startswith("PRAGMA synchronous = "):
            level = sql.rsplit(" ", 1)[1]
        elif sql == "COMMIT":
            out.append(level)
    return out


def test_a_claim_commits_without_waiting_for_the_disk_and_leaves_full_behind(
    storage: SQLiteStorage,
) -> None:
    p = NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0, run_at=T0)
    assert durability_of_each_commit(
        statements_of(storage, lambda: storage.process_insert_many([p]))
    ) == ["FULL"]
    claimed: list[object] = []
    traced = statements_of(
        storage,
        lambda: claimed.extend(storage.process_claim(Claim("w", T0, 30, limit=1))),
    )
    assert len(claimed) == 1
    assert durability_of_each_commit(traced) == ["NORMAL"]
    assert synchronous(storage) == 2  # FULL again for whatever comes next


def test_an_exchange_with_commits_waits_for_the_disk(storage: SQLiteStorage) -> None:
    p = NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0, run_at=T0)
    storage.process_insert_many([p])
    [c] = storage.process_claim(Claim("w", T0, 30, limit=1))
    change = model.committed(c.process, T0 + 1, store={}, progress=(None, None),
                             to=Status.COMPLETED, result=None)  # fmt: skip
    commit = IterationCommit(p.id, c.token, change, T0 + 1)
    traced = statements_of(
        storage,
        lambda: storage.process_commit_and_claim([commit], Claim("w", T0 + 1, 30, limit=1)),
    )
    assert durability_of_each_commit(traced) == ["FULL"]
    assert storage.process_get(p.id).status is Status.COMPLETED  # type: ignore[union-attr]
    assert synchronous(storage) == 2


def test_a_file_system_without_flock_falls_back_to_sqlites_own_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import corral.storage.sqlite.turns as sqlite_turns

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(sqlite_turns.fcntl, "flock", no_flock)
    s = open_storage(f"sqlite:///{tmp_path / 'corral.db'}")
    try:
        assert isinstance(s, SQLiteStorage) and s._turn_fd is None
        p = NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0, run_at=T0)
        s.process_insert_many([p])
        assert len(s.process_claim(Claim("w", T0, 30, limit=1))) == 1
    finally:
        s.close()
