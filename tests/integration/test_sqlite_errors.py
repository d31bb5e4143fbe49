"""No sqlite3 exception leaves the SQLite storage: each becomes one of corral's errors, in
one line naming the file. Permanent ones (a read-only or corrupt file) are StorageError;
a value the database cannot store is ValueRejected, raised by the verb that wrote it,
with nothing of that write landed. (Locks: test_sqlite_lock.py; a full disk:
test_sqlite_full_disk.py; a deleted or replaced file: test_sqlite_replaced_file.py.)"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from corral import model
from corral.errors import NotStorable, StorageError, StorageUnavailable, ValueRejected
from corral.model import Change, Status
from corral.storage import open_storage
from corral.storage.base import Claim, IterationCommit, NewProcess, ProcessFilter
from corral.storage.sqlite import SQLiteStorage

T0 = 1_000.0


def new(**kw: Any) -> NewProcess:
    fields: dict[str, Any] = {"params": {}, "created_at": T0, "run_at": T0}
    fields.update(kw)
    return NewProcess(id=str(uuid.uuid4()), job="j", **fields)


def assert_one_line(error: BaseException, db: Path, *words: str) -> None:
    message = str(error)
    assert "\n" not in message and str(db) in message, message
    for word in words:
        assert word in message, message


def permanent(error: BaseException) -> bool:
    return isinstance(error, StorageError) and not isinstance(error, StorageUnavailable)


def mount(*args: str) -> None:
    """Run mount(8); fail in CI, skip elsewhere, when it cannot (not root, a container)."""
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = f"cannot mount {' '.join(args)}: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A small file system of its own at `where` (tmpfs: root may mount one)."""
    where.mkdir()
    mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corral.db"


@pytest.fixture
def storage(db: Path) -> Iterator[SQLiteStorage]:
    s = open_storage(f"sqlite:///{db}")
    assert isinstance(s, SQLiteStorage)
    yield s
    s.close()


# --- corrupt files ----------------------------------------------------------------------


def test_a_file_that_is_not_a_database(db: Path) -> None:
    db.write_bytes(b"these are not the pages you are looking for\n" * 200)
    with pytest.raises(StorageError) as caught:
        open_storage(f"sqlite:///{db}").close()
    assert permanent(caught.value)
    assert_one_line(caught.value, db, "corrupt or not a SQLite database")


def test_a_malformed_database(db: Path) -> None:
    s = open_storage(f"sqlite:///{db}")
    s.process_insert_many([new(params={"pad": "x" * 500}) for _ in range(500)])
    s.close()
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    data[page:] = b"\xa5" * (len(data) - page)  # every page but the first: the schema's
    db.write_bytes(bytes(data))
    with pytest.raises(StorageError) as caught:
        s = open_storage(f"sqlite:///{db}")
        try:
            s.process_list(ProcessFilter(limit=1_000))
        finally:
            s.close()
    assert permanent(caught.value)
    assert_one_line(caught.value, db, "corrupt", "malformed")


# --- read-only files --------------------------------------------------------------------


def test_a_read_only_file_system(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "ro") as where:
        db = where / "corral.db"
        open_storage(f"sqlite:///{db}").close()
        mount("-o", "remount,ro", str(where))
        with pytest.raises(StorageError) as caught:
            open_storage(f"sqlite:///{db}").close()
    assert permanent(caught.value)
    assert_one_line(caught.value, db, "cannot be written", "read-only")


def test_a_read_only_database_file(tmp_path: Path) -> None:
    """The file alone read-only, its directory writable: SQLite opens it read-only and
    refuses the first write."""
    with small_tmpfs(tmp_path / "rw") as where:
        db = where / "corral.db"
        open_storage(f"sqlite:///{db}").close()
        mount("--bind", str(db), str(db))
        try:
            mount("-o", "remount,ro,bind", str(db))
            with pytest.raises(StorageError) as caught:
                s = open_storage(f"sqlite:///{db}")
                try:
                    s.process_insert_many([new()])
                finally:
                    s.close()
        finally:
            subprocess.run(["umount", str(db)], check=True)
    assert permanent(caught.value)
    assert_one_line(caught.value, db, "cannot be written", "read-only")


def test_a_missing_directory(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "corral.db"
    with pytest.raises(StorageError) as caught:
        open_storage(f"sqlite:///{db}")
    assert permanent(caught.value)
    assert_one_line(caught.value, db, "does not exist")


# --- values the database cannot store ---------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("priority", 2**63, ["64 bits"]),
        ("queue", "bad \udc80 queue", ["lone surrogate"]),
        ("custom_id", "\ud800", ["lone surrogate"]),
        ("tags", {"k": "\udfff"}, ["lone surrogate"]),
    ],
)
def test_a_value_sqlite_cannot_bind_is_rejected_by_the_insert(
    db: Path, storage: SQLiteStorage, field: str, value: object, words: list[str]
) -> None:
    good, bad = new(), new(**{field: value})
    # JSON documents (tags) go through the encoding every backend shares, which refuses
    # what no backend can store before SQLite sees it (NotStorable); plain columns reach
    # SQLite, which refuses to bind them (ValueRejected). Nothing is written either way.
    with pytest.raises((ValueRejected, NotStorable)) as caught:
        storage.process_insert_many([good, bad])
    if isinstance(caught.value, NotStorable):
        assert field == "tags" and "\n" not in str(caught.value)
        assert all(word in str(caught.value) for word in words), caught.value
    else:
        assert_one_line(caught.value, db, *words)
    # Nothing of the batch landed, and the storage goes on.
    assert storage.process_get(good.id) is None
    storage.process_insert_many([good])
    assert storage.process_get(good.id) is not None


def test_a_value_too_big_is_rejected_by_the_commit_with_nothing_written(
    db: Path, storage: SQLiteStorage
) -> None:
    storage.process_insert_many([new(), new()])
    a, b = storage.process_claim(Claim(owner="w", now=T0, lease_seconds=30, limit=2))
    storage._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)  # SQLite's 1 GB, made small

    def done(claimed: Any, store: dict[str, Any]) -> IterationCommit:
        change = model.committed(claimed.process, T0 + 1, store=store, progress=(None, None),
                                 to=Status.COMPLETED, result=None)  # fmt: skip
        return IterationCommit(claimed.process.id, claimed.token, change, T0 + 1)

    commits = [done(a, {"small": 1}), done(b, {"big": "x" * 20_000})]
    with pytest.raises(ValueRejected) as caught:
        storage.process_commit_many(commits)
    assert_one_line(caught.value, db, "too big")
    # All or nothing: the small commit did not land either; each alone, the small one does.
    for c in (a, b):
        left = storage.process_get(c.process.id)
        assert left is not None and left.leased and left.status is Status.STARTING
    assert storage.process_commit_many(commits[:1]) == []
    with pytest.raises(ValueRejected):
        storage.process_commit_and_claim(commits[1:], Claim("w", T0 + 1, 30, limit=1))
    assert storage.process_get(b.process.id).leased  # type: ignore[union-attr]


def test_a_value_sqlite_cannot_bind_is_rejected_by_an_update(
    db: Path, storage: SQLiteStorage
) -> None:
    p = new()
    storage.process_insert_many([p])
    process = storage.process_get(p.id)
    assert process is not None
    change = Change.of(process).with_(progress_done=2**64)
    with pytest.raises(ValueRejected) as caught:
        storage.process_update(p.id, process.version, change, T0 + 1)
    assert_one_line(caught.value, db, "64 bits")
    assert storage.process_get(p.id) == process  # unchanged
