"""A writer never waits for the SQLite write lock longer than its busy timeout.

A process stopped mid-transaction (Ctrl-Z, SIGSTOP, a debugger, a paused container) holds
the lock for as long as it stays stopped. Every other writer then gives up after
`busy_timeout` seconds with StorageLocked, one line naming that process, and writes again
once it is continued or killed. These tests stop real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from corral.errors import StorageLocked, UsageError
from corral.storage import open_storage
from corral.storage.base import NewProcess, Storage
from corral.storage.sqlite import DEFAULT_BUSY_TIMEOUT, SQLiteStorage

HOLDER = Path(__file__).parent / "apps" / "sqlite_lock_holder.py"
BUSY = 0.5  # seconds: the busy timeout of the writer under test
T0 = 1_000.0

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/locks")


def new() -> NewProcess:
    return NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0, run_at=T0)


@contextmanager
def holder(target: str, kind: str) -> Iterator[subprocess.Popen[str]]:
    """A process holding the write lock (see apps/sqlite_lock_holder.py); killed at the end."""
    with subprocess.Popen(
        [sys.executable, str(HOLDER), target, kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "held\n"
            yield child
        finally:
            child.kill()


def let_go(child: subprocess.Popen[str]) -> None:
    """Continue a stopped holder and let it commit."""
    os.kill(child.pid, signal.SIGCONT)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline() == "done\n"


def locked_write(storage: Storage) -> tuple[StorageLocked, float]:
    """Insert a process, expecting StorageLocked: the error and the seconds waited. Runs in
    a thread, so that a write that waits forever fails the test instead of hanging it."""
    outcome: list[BaseException | None] = []
    p = new()

    def write() -> None:
        try:
            storage.process_insert_many([p])
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    started = time.monotonic()
    t = threading.Thread(target=write, daemon=True)
    t.start()
    t.join(timeout=BUSY + 60)
    waited = time.monotonic() - started
    assert outcome, f"the write was still waiting after {waited:.0f} s"
    [exc] = outcome
    assert isinstance(exc, StorageLocked), exc
    assert storage.process_get(p.id) is None  # nothing written
    return exc, waited


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "corral.db"
    open_storage(f"sqlite:///{path}").close()  # the schema, before any holder starts
    return path


@pytest.fixture
def storage(db: Path) -> Iterator[SQLiteStorage]:
    s = open_storage(f"sqlite:///{db}?busy_timeout={BUSY}")
    assert isinstance(s, SQLiteStorage)
    yield s
    s.close()


@pytest.mark.parametrize("end", ["continued", "killed"])
def test_a_writer_stopped_mid_transaction_makes_others_give_up_naming_it(
    db: Path, storage: SQLiteStorage, end: str
) -> None:
    with holder(f"sqlite:///{db}", "corral") as child:
        os.kill(child.pid, signal.SIGSTOP)
        exc, waited = locked_write(storage)
        message = str(exc)
        assert waited >= BUSY  # it did wait its busy timeout first
        assert f"process {child.pid}" in message and "stopped" in message, message
        assert str(db) in message and "\n" not in message
        # Still stopped: the next write gives up too (its wait adopts the first one's).
        locked_write(storage)
        if end == "continued":
            let_go(child)
        else:
            child.kill()
            child.wait()
        p = new()
        storage.process_insert_many([p])
        assert storage.process_get(p.id) is not None


def test_another_program_holding_sqlites_own_lock_is_named(
    db: Path, storage: SQLiteStorage
) -> None:
    """A program that writes the file without corral's lock file (the sqlite3 shell, a
    script): SQLite's own busy timeout runs out, and its lock is found in the -shm file."""
    with holder(str(db), "sqlite") as child:
        exc, waited = locked_write(storage)
        assert waited >= BUSY
        assert f"process {child.pid}" in str(exc), exc
        assert "\n" not in str(exc)
        let_go(child)
    p = new()
    storage.process_insert_many([p])
    assert storage.process_get(p.id) is not None


def test_a_free_lock_is_taken_without_waiting_even_with_no_busy_timeout(db: Path) -> None:
    s = open_storage(f"sqlite:///{db}?busy_timeout=0")
    try:
        assert isinstance(s, SQLiteStorage) and s.busy_timeout == 0
        s.process_insert_many([new()])
        assert s._turn_waiter is None  # never needed a thread to wait
    finally:
        s.close()


def test_the_busy_timeout_comes_from_the_url(tmp_path: Path) -> None:
    s = open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert isinstance(s, SQLiteStorage) and s.busy_timeout == DEFAULT_BUSY_TIMEOUT
        assert s.path == str(tmp_path / "a.db")
    finally:
        s.close()
    s = open_storage(f"sqlite:///{tmp_path / 'a.db'}?busy_timeout=2.5")
    try:
        assert isinstance(s, SQLiteStorage) and s.busy_timeout == 2.5
        assert s.path == str(tmp_path / "a.db")  # the option is not part of the file's name
        assert s._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    finally:
        s.close()
    assert not (tmp_path / "a.db?busy_timeout=2.5").exists()
    for bad in ("busy_timeout=soon", "busy_timeout=-1", "timeout=3"):
        with pytest.raises(UsageError, match="busy_timeout"):
            open_storage(f"sqlite:///{tmp_path / 'a.db'}?{bad}")
