"""A SQLite file deleted or replaced under a running storage: its connection would go on
writing to the old file, which nobody else can read. Every verb raises a permanent
StorageError instead, and so does an idle wait, so that an idle worker notices too."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import corral.storage.sqlite.wakeups as sqlite_wakeups
from corral.errors import StorageError, StorageUnavailable
from corral.storage import open_storage
from corral.storage.base import Claim, NewProcess, Storage
from corral.storage.sqlite import SQLiteStorage

T0 = 1_000.0


def new() -> NewProcess:
    return NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0, run_at=T0)


def delete(path: Path) -> None:
    path.unlink()


def replace(path: Path) -> None:
    """A new database at the same path, as a restore from a backup would leave."""
    other = path.with_name("other.db")
    open_storage(f"sqlite:///{other}").close()
    os.replace(other, path)


def move_away(path: Path) -> None:
    shutil.move(path, path.with_name("moved.db"))


CHANGES: dict[str, Callable[[Path], None]] = {
    "deleted": delete,
    "replaced": replace,
    "moved": move_away,
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "corral.db"


@pytest.fixture
def storage(db: Path) -> Iterator[SQLiteStorage]:
    s = open_storage(f"sqlite:///{db}")
    assert isinstance(s, SQLiteStorage)
    yield s
    s.close()


def assert_gone(error: StorageError, db: Path) -> None:
    message = str(error)
    assert not isinstance(error, StorageUnavailable)  # permanent: no point in retrying
    assert f"the SQLite database {db} was deleted or replaced while in use" in message
    assert "\n" not in message


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_verb_refuses_a_file_deleted_or_replaced(
    db: Path, storage: SQLiteStorage, change: str
) -> None:
    p = new()
    storage.process_insert_many([p])
    CHANGES[change](db)
    verbs: list[Callable[[Storage], object]] = [
        lambda s: s.process_insert_many([new()]),
        lambda s: s.process_claim(Claim(owner="w", now=T0, lease_seconds=30, limit=1)),
        lambda s: s.queue_pause("q", True),
        lambda s: s.process_get(p.id),
        lambda s: s.wait_for_change(s.change_epoch(), 0.01),
    ]
    for verb in verbs:
        with pytest.raises(StorageError) as caught:
            verb(storage)
        assert_gone(caught.value, db)
    # Permanent: a database at that path again does not make this storage write to it.
    if not db.exists():
        open_storage(f"sqlite:///{db}").close()
    with pytest.raises(StorageError):
        storage.process_insert_many([new()])


@pytest.mark.parametrize("watcher", ["inotify", "polling"])
def test_an_idle_wait_ends_when_the_file_goes(
    db: Path, monkeypatch: pytest.MonkeyPatch, watcher: str
) -> None:
    if watcher == "polling":  # no file watcher: the wait's own steps notice
        monkeypatch.setattr(sqlite_wakeups, "inotify_simple", None)
    storage = open_storage(f"sqlite:///{db}")
    try:
        storage.wait_for_change(
            storage.change_epoch(), 0.01
        )  # armed: watcher started, data_version read
        raised: list[BaseException] = []
        started = threading.Event()

        def idle() -> None:
            started.set()
            try:
                storage.wait_for_change(
                    storage.change_epoch(), 60.0
                )  # a worker's idle wait, far longer than the test
            except BaseException as exc:  # handed to the test's thread
                raised.append(exc)

        t = threading.Thread(target=idle, daemon=True)
        t.start()
        started.wait()
        delete(db)
        t.join(timeout=30.0)
        assert not t.is_alive(), "the idle wait did not notice that its file was deleted"
        [error] = raised
        assert isinstance(error, StorageError)
        assert_gone(error, db)
    finally:
        storage.close()


def test_a_relative_path_is_checked_where_it_was_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that changes its directory still uses, and checks, the file it opened."""
    monkeypatch.chdir(tmp_path)
    storage = open_storage("sqlite:///corral.db")
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        p = new()
        storage.process_insert_many([p])
        assert storage.process_get(p.id) is not None
        assert storage.wait_for_change(storage.change_epoch(), 0.01) is False
        assert not (elsewhere / "corral.db").exists()
    finally:
        storage.close()
