"""The connection and its transactions: one SQLite file in WAL mode, or a private
in-memory database.

Within a process every thread shares one connection behind a lock: SQLite runs one writer
at a time anyway, and the worker's handlers never touch the database themselves. Several
processes on one machine coordinate through file locks: every write is a `BEGIN IMMEDIATE`
transaction, so a claim is atomic, queued for on the writers' lock file (turns.py) before
SQLite's own lock.

Nothing waits for ever: a write waits at most `busy_timeout` seconds in all for the lock,
then StorageLocked; no sqlite3 exception leaves a transaction (errors.py says what each
becomes), and a failed one is rolled back whole.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl

from corral.errors import StorageError, StorageLocked, UsageError
from corral.storage.sqlite.errors import DRIVER_ERRORS, ErrorTranslation
from corral.storage.sqlite.turns import TURN_SUFFIX, TurnWaiter, open_turn_file

log = logging.getLogger("corral.storage.sqlite")

#: How long a write (or a read behind one) waits for the database's write lock before it
#: gives up with StorageLocked, in seconds: `sqlite:///path.db?busy_timeout=30` sets it.
DEFAULT_BUSY_TIMEOUT = 10.0
#: Pages written to the WAL between checkpoints (see `_connect`): it grows to ~41 MB.
_WAL_AUTOCHECKPOINT = 10_000
#: The WAL is cut back to this many bytes when it starts over after a checkpoint (SQLite's
#: `journal_size_limit`). Above the ~41 MB a checkpoint cycle fills: a WAL cut shorter
#: than that grows again in every cycle, and a commit that grows a file also waits for
#: the file system's journal (draining 20,000 no-op jobs on ext4: ~13% slower with 4 MB).
#: So this only undoes a WAL that outgrew its cycle (a checkpoint held back by a long
#: reader); what cuts it for good is an idle waiter once the database is quiet
#: (wakeups.py), and the first write that works after a full disk.
_WAL_SIZE_LIMIT = 64 * 1024 * 1024


class SQLiteConnection(ErrorTranslation):
    """The connection of one storage object, its write and read transactions, and the
    checks that the file it opened is still the one at its path."""

    def __init__(self, url: str, path: str | None) -> None:
        super().__init__()
        self.url = url
        path, self.busy_timeout = _options(url, path)
        self.path = path  # None: a private in-memory database
        # Absolute, so that a later chdir() does not send a check or a connection elsewhere.
        self._abspath = None if path is None else os.path.abspath(path)
        self._name = (
            "the in-memory SQLite database" if path is None else f"the SQLite database {path}"
        )
        self._lock = threading.RLock()
        self._closed = False
        #: (st_dev, st_ino) of the file opened, compared with the path's before each write.
        self._identity: tuple[int, int] | None = None
        self._turn_fd: int | None = None
        self._turn_waiter: TurnWaiter | None = None
        self._check_directory()
        self._turn_fd = self._open_turn_file()
        try:
            self._conn = self._connect()
        except BaseException:
            if self._turn_fd is not None:
                os.close(self._turn_fd)
                self._turn_fd = None
            raise

    def notify_local(self) -> None:
        """Wake this process's waiters after a write that may create work (wakeups.py)."""

    def _check_directory(self) -> None:
        if self._abspath is not None:
            parent = Path(self._abspath).parent
            if not parent.is_dir():
                raise StorageError(f"cannot open {self._name}: directory {parent} does not exist")

    def _connect(self) -> sqlite3.Connection:
        """Connect and set the connection up in the writers' turn: two processes creating
        one database at once would otherwise both switch it to WAL while one of them
        migrates it, and SQLite's locks leave them waiting for each other until the busy
        timeout (a worker and a submit started together on a new file)."""
        turn = self._take_turn(time.monotonic())
        try:
            return self._setup_connection()
        finally:
            if turn is not None:
                fcntl.flock(turn, fcntl.LOCK_UN)

    def _setup_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self._abspath or ":memory:",
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout,
            )
            if self._abspath is not None:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
            # Durable by default: a commit survives power loss, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
            # Checkpoint every ~40 MB of WAL, not SQLite's 4 MB: the pages a worker rewrites
            # in every transaction (index roots, the newest leaves) are copied back once per
            # checkpoint, and a checkpoint runs inside a commit, holding the writers' lock.
            # Two workers draining no-op jobs: ~8,900 -> ~9,500 jobs/s.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self._abspath is not None:
                st = os.stat(self._abspath)
                self._identity = (st.st_dev, st.st_ino)
        except (*DRIVER_ERRORS, OSError) as exc:
            if conn is not None:
                conn.close()
            raise self._error(exc) from None
        return conn

    def _open_turn_file(self) -> int | None:
        if self._abspath is None:
            return None  # private in-memory database: one connection, self._lock suffices
        try:
            return open_turn_file(self._abspath)
        except OSError as exc:
            raise self._error(exc) from None

    @contextmanager
    def _write(self, *, wakes: bool = True, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first statement.
        `wakes`: the write may create work, so local waiters are woken after it.
        `durable=False`: commit without waiting for the disk (synchronous=NORMAL): for
        leases only (claims, renewals, the sweep's leadership). A power loss or an OS crash
        may then forget the newest of them, but it also stops every worker on this
        machine, the only ones a SQLite file has: a forgotten lease was held by a dead
        worker, and the process is claimed again, as after any crash. Every write of a
        process's outcome stays durable, and its fsync covers the leases before it.

        Waits at most `busy_timeout` seconds in all for the lock (StorageLocked after);
        every error of the driver becomes one of corral's (see `_error`), and a failed
        transaction is rolled back: nothing of it is written."""
        started = time.monotonic()
        self._enter()
        try:
            turn = self._take_turn(started)
            try:
                conn = self._conn
                try:
                    self._check_file()
                    # SQLite's own wait gets what is left of the busy timeout (a wait of
                    # less than 10 ms, most of them, leaves it as it is).
                    waited = time.monotonic() - started
                    waited = waited if waited >= 0.01 else 0.0
                    if waited:
                        conn.execute(f"PRAGMA busy_timeout = {_ms(self.busy_timeout - waited)}")
                    if not durable:
                        conn.execute("PRAGMA synchronous = NORMAL")
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                        try:
                            yield conn
                            conn.execute("COMMIT")
                        except BaseException:
                            _rollback(conn)
                            raise
                    finally:
                        if not durable:
                            conn.execute("PRAGMA synchronous = FULL")
                        if waited:
                            conn.execute(f"PRAGMA busy_timeout = {_ms(self.busy_timeout)}")
                except DRIVER_ERRORS as exc:
                    raise self._error(exc) from None
                if self._outage is not None:
                    log.warning("%s is writable again", self._name)
                    self._outage = None
                if self._shrink_wal:
                    self._truncate_wal()
            finally:
                if turn is not None:
                    fcntl.flock(turn, fcntl.LOCK_UN)
        finally:
            self._lock.release()
        if wakes:
            self.notify_local()

    def _enter(self) -> None:
        """Take this object's lock (one statement at a time on its connection), waiting at
        most the busy timeout for another thread of this process; then check that this
        storage may still be used."""
        lock = self._lock
        if not (lock.acquire(False) or lock.acquire(True, self.busy_timeout)):
            raise self._unavailable(
                StorageLocked(
                    f"{self._name} is locked: another thread of this process has held it for "
                    f"over {self.busy_timeout:g} s (stopped in a debugger?)"
                )
            )
        if self._gone is not None or self._closed:
            self._lock.release()
            raise StorageError(self._gone or f"the storage of {self._name} is closed")

    def _take_turn(self, started: float) -> int | None:
        """Queue for the write lock on the writers' lock file beside the database (see
        turns.py); returns the descriptor that holds it (None: none, on a file system
        without flock).

        The lock is free most of the time: one non-blocking try takes it. Else a thread
        of this storage (`TurnWaiter`) blocks in flock() for us, so that we can give up
        after the busy timeout: a holder stopped with Ctrl-Z or SIGSTOP, or in a debugger,
        never lets go, and a flock() cannot be interrupted.
        """
        fd = self._turn_fd
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        assert self._abspath is not None
        if self._turn_waiter is None:
            try:
                self._turn_waiter = TurnWaiter(fd, self._abspath + TURN_SUFFIX)
            except OSError as exc:
                raise self._error(exc) from None
        left = self.busy_timeout - (time.monotonic() - started)
        if self._turn_waiter.acquire(max(left, 0.0)):
            return self._turn_waiter.fd
        raise self._unavailable(StorageLocked(self._locked_message(TURN_SUFFIX)))

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        self._enter()
        try:
            self._check_file()
            try:
                yield self._conn
            except DRIVER_ERRORS as exc:
                raise self._error(exc) from None
        finally:
            self._lock.release()

    def _check_file(self) -> None:
        """StorageError, from now on, if the database file was deleted or replaced (a new
        file at its path): this connection would go on using the old one, which nobody
        else can see any more. One stat() call, about a microsecond."""
        if self._identity is None or self._abspath is None:
            return
        try:
            st = os.stat(self._abspath)
        except FileNotFoundError:
            pass
        except OSError:
            return  # e.g. a directory made unreadable: SQLite's own errors will say
        else:
            if (st.st_dev, st.st_ino) == self._identity:
                return
        self._gone = self._gone_message()
        raise StorageError(self._gone)

    def _truncate_wal(self) -> bool:
        """Copy the WAL into the database and cut it to nothing, without waiting for
        readers; False if some were in the way. The caller holds the writers' turn."""
        conn = self._conn
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {_ms(self.busy_timeout)}")
        except sqlite3.Error as exc:
            log.debug("WAL of %s not truncated: %s", self.path, exc)
            return False
        self._shrink_wal = bool(busy)  # after a full disk: the next write tries again
        return not busy

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._checkpoint_on_close()
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                log.debug("closing %s: %s", self._name, exc)
            if self._turn_waiter is not None:
                self._turn_waiter.close()
            if self._turn_fd is not None:
                os.close(self._turn_fd)
                self._turn_fd = None

    def _checkpoint_on_close(self) -> None:
        """Copy the WAL into the database file and empty it, so that after a clean exit
        the file alone holds the data (a copy of it is a backup). SQLite does this when
        the last connection to the file closes; this does it whatever the order of this
        storage's connections, and gives up at once, leaving it to SQLite, if another
        process is writing or reading (SQLITE_BUSY)."""
        if self._abspath is None or self._gone is not None:
            return
        try:
            self._check_file()
        except StorageError:
            return  # deleted or replaced: nothing of ours to tidy up there
        fd = self._turn_fd
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # a writer is at work
        try:
            self._truncate_wal()
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _options(url: str, path: str | None) -> tuple[str | None, float]:
    """The file's path without the URL's query, and the options the query sets."""
    if path is None:
        return None, DEFAULT_BUSY_TIMEOUT
    path, _, query = path.partition("?")
    busy_timeout = DEFAULT_BUSY_TIMEOUT
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "busy_timeout":
            raise UsageError(
                f"unknown option {name!r} in the database URL {url!r}; a SQLite URL takes "
                "busy_timeout=SECONDS"
            )
        try:
            busy_timeout = float(value)
        except ValueError:
            busy_timeout = -1.0
        if not 0 <= busy_timeout < 1e6:
            raise UsageError(
                f"busy_timeout={value!r} in the database URL {url!r} is not a number of "
                "seconds; e.g. busy_timeout=10"
            )
    return path, busy_timeout


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 0)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction: SQLite may have done it already
    (after a full disk, an I/O error), and a failing rollback must not hide the error."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.debug("rollback failed: %s", exc)
