"""The embedded backend: one SQLite file in WAL mode, or a private in-memory database.

Within a process every thread shares one connection behind a lock: SQLite runs one
writer at a time anyway, and the worker's handlers never touch the database
themselves. Several processes on one machine coordinate through SQLite's own file
locks: every write is a `BEGIN IMMEDIATE` transaction, so a claim is atomic.

Idle workers wait on `PRAGMA data_version` of a second connection: it changes when
any other connection commits, and reading it costs no disk I/O.

Nothing waits for ever, and no sqlite3 exception leaves this module: a write waits at
most `busy_timeout` seconds for the lock (StorageLocked, naming the holder), a full disk
or an I/O error is StorageUnavailable (transient), a read-only, corrupt, deleted or
replaced file is StorageError, and a value SQLite cannot store is ValueRejected, with
nothing of that write landed (see `SQLiteStorage._error`).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from corral.errors import (
    StorageError,
    StorageLocked,
    StorageUnavailable,
    UsageError,
    ValueRejected,
)
from corral.model import CLAIMABLE, Change, Event, Process, Status
from corral.storage import codec, columns
from corral.storage.base import (
    Claim,
    Claimed,
    Inserted,
    IterationCommit,
    NewProcess,
    ProcessFilter,
    Renewal,
    Storage,
    SubmitShared,
    TimedOut,
)
from corral.storage.shared import Wakeups, same_submit
from corral.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

try:  # Linux only: elsewhere idle workers poll
    import inotify_simple
except ImportError:  # pragma: no cover - not Linux
    inotify_simple = None

#: A Process from a row of columns.SELECT_LIST.
_decode_process = columns.row_decoder()
log = logging.getLogger("corral.storage.sqlite")

_CLAIMABLE_SQL = ", ".join(f"'{s.value}'" for s in CLAIMABLE)
_COLS = columns.SELECT_LIST

# Expired leases first (DESIGN §3 class 1): few rows, found by the lease index. Named,
# because SQLite's planner otherwise prefers corral_process_status and walks every
# runnable row (milliseconds per claim with 20,000 queued).
_SELECT_EXPIRED = f"""
SELECT id, lease_owner FROM corral_process {{leased}}
WHERE lease_expires_at IS NOT NULL AND lease_expires_at < ?
  AND status IN ({_CLAIMABLE_SQL}) {{queues}}
ORDER BY priority DESC, run_at LIMIT ?
"""
# Then unleased runnable rows by claim_rank (classes 2 to 6), priority, run_at: one
# ordered walk of the partial index `corral_process_runnable`.
_SELECT_RUNNABLE = f"""
SELECT id, NULL FROM corral_process {{indexed}}
WHERE status IN ({_CLAIMABLE_SQL}) AND lease_expires_at IS NULL
  AND run_at <= ? {{queues}}
ORDER BY claim_rank, priority DESC, run_at LIMIT ?
"""


_INSERT_PROCESS = (
    f"INSERT INTO corral_process ({_COLS}) VALUES "
    "(?, ?, ?, ?, '{}', NULL, NULL, NULL, NULL, ?, ?, ?, 0, NULL, 0, NULL, 0, "
    "NULL, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, ?, NULL, NULL)"
)
_INSERT_HISTORY = (
    f"INSERT INTO corral_history ({codec.HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# A worker's commit: fenced by the lease token, and it gives the lease back.
_COMMIT = (
    "UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?, "
    "progress_done = ?, progress_total = ?, run_at = ?, attempt = ?, "
    "stopped_status = ?, finished_at = ?, iteration_since = ?, "
    "lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL, "
    "heartbeat_at = NULL, updated_at = ?, version = version + 1 "
    "WHERE id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL"
)

# Each timeout of DESIGN §6 by the index that finds it; the sweep runs this now and then.
# schedule_to_close names its index: the planner preferred corral_process_status, i.e. a
# walk of every queued process on each sweep.
_SELECT_TIMED_OUT = f"""
SELECT * FROM (
  SELECT {_COLS}, 'process_timeout' FROM corral_process
  WHERE deadline_at IS NOT NULL AND finished_at IS NULL AND deadline_at < :now
    AND status NOT IN ('failing', 'completed', 'failed', 'canceled')
  UNION ALL
  SELECT {_COLS}, 'schedule_to_close' FROM corral_process
  INDEXED BY corral_process_schedule_to_close
  WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL
    AND status IN ({_CLAIMABLE_SQL}) AND iteration_since + schedule_to_close < :now
  UNION ALL
  SELECT {_COLS}, 'start_to_close' FROM corral_process
  WHERE lease_expires_at IS NOT NULL AND start_to_close IS NOT NULL
    AND claimed_at + start_to_close < :now
  UNION ALL
  SELECT {_COLS}, 'heartbeat_timeout' FROM corral_process
  WHERE lease_expires_at IS NOT NULL AND heartbeat_timeout IS NOT NULL
    AND heartbeat_at + heartbeat_timeout < :now
) LIMIT :limit
"""


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
#: reader); what cuts it for good is an idle waiter once the database is quiet (`_QUIET`),
#: and the first write that works after a full disk.
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: Seconds without a commit after which an idle waiter cuts the WAL to nothing (once).
_QUIET = 5.0
#: The writers' queue (see `_take_turn`): a file beside the database.
_TURN_SUFFIX = "-corral-lock"

# Errors of the driver that may come out of a statement. OverflowError (an int beyond 64
# bits) and UnicodeEncodeError (a lone surrogate) are raised by sqlite3 as it binds a value.
_DRIVER_ERRORS = (sqlite3.Error, OverflowError, UnicodeEncodeError)


class SQLiteStorage(Storage):
    def __init__(self, url: str, path: str | None, *, migrate: bool = True) -> None:
        self.url = url
        path, self.busy_timeout = _options(url, path)
        self.path = path  # None: a private in-memory database
        # Absolute, so that a later chdir() does not send a check or a connection elsewhere.
        self._abspath = None if path is None else os.path.abspath(path)
        self._name = (
            "the in-memory SQLite database" if path is None else f"the SQLite database {path}"
        )
        self._lock = threading.RLock()
        self._wakeups = Wakeups()
        self._seeing = threading.Lock()  # data_version, read by several threads
        self._closed = False
        #: Why this storage can no longer be used: its file was deleted or replaced.
        self._gone: str | None = None
        #: (st_dev, st_ino) of the file opened, compared with the path's before each write.
        self._identity: tuple[int, int] | None = None
        #: The transient failure logged last (a full disk, a held lock); None: none since.
        self._outage: str | None = None
        #: A write failed for a full disk: cut the WAL back once writes work again.
        self._shrink_wal = False
        self._turn_fd: int | None = None
        self._turn_waiter: _TurnWaiter | None = None
        self._watch: sqlite3.Connection | None = None
        self._watcher: _WalWatcher | Literal[False] | None = None
        self._data_version = -1
        #: When the idle wait last saw a commit; whether the WAL was cut since.
        self._last_change = time.monotonic()
        self._wal_cut = False
        self._conn = self._connect()
        try:
            self._turn_fd = self._open_turn_file()
            if migrate:
                self.migrate()
        except BaseException:
            self.close()
            raise

    # --- connections ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._abspath is not None:
            parent = Path(self._abspath).parent
            if not parent.is_dir():
                raise StorageError(f"cannot open {self._name}: directory {parent} does not exist")
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
        except (*_DRIVER_ERRORS, OSError) as exc:
            if conn is not None:
                conn.close()
            raise self._error(exc) from None
        return conn

    def _open_turn_file(self) -> int | None:
        if self._abspath is None:
            return None  # private in-memory database: one connection, self._lock suffices
        try:
            fd = os.open(self._abspath + _TURN_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._error(exc) from None
        try:  # a file system without flock(): SQLite's own lock and busy timeout suffice
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            pass  # a writer holds it right now: flock works
        except OSError as exc:
            log.debug("no flock() on %s (%s): writers use SQLite's busy timeout", self.path, exc)
            os.close(fd)
            return None
        return fd

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
                except _DRIVER_ERRORS as exc:
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
        """Queue for the write lock on a kernel file lock beside the database; returns the
        descriptor that holds it (None: none, on a file system without flock).

        Two corral processes writing one file would otherwise meet SQLite's busy handler,
        which sleeps 1, 2, 5, 10... ms between tries: with a worker's short transactions
        most of a waiting writer's time was sleep. A blocked flock() wakes the moment the
        holder lets go, and the kernel drops it if the holder dies. Other programs writing
        the database still coordinate through SQLite's own lock and busy timeout.

        The lock is free most of the time: one non-blocking try takes it. Else a thread
        of this storage (`_TurnWaiter`) blocks in flock() for us, so that we can give up
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
                self._turn_waiter = _TurnWaiter(fd, self._abspath + _TURN_SUFFIX)
            except OSError as exc:
                raise self._error(exc) from None
        left = self.busy_timeout - (time.monotonic() - started)
        if self._turn_waiter.acquire(max(left, 0.0)):
            return self._turn_waiter.fd
        raise self._unavailable(StorageLocked(self._locked_message(_TURN_SUFFIX)))

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        self._enter()
        try:
            self._check_file()
            try:
                yield self._conn
            except _DRIVER_ERRORS as exc:
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

    def _gone_message(self) -> str:
        message = (
            f"{self._name} was deleted or replaced while in use; corral stopped using it: "
            "put the file back in place if it was a mistake, then restart every corral "
            "process that uses it"
        )
        return message

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

    def _cut_idle_wal(self) -> None:
        """Cut the WAL to nothing once the database has been quiet for `_QUIET` seconds:
        between checkpoints it holds up to ~41 MB that a quiet database does not need, and
        on a small disk that may be the room it lacks. Called by idle waiters, which give
        up at once if anything else is writing; a reader in the way: again after `_QUIET`."""
        if self._wal_cut or self._abspath is None:
            return
        if time.monotonic() - self._last_change < _QUIET:
            return
        try:
            if os.stat(self._abspath + "-wal").st_size == 0:
                self._wal_cut = True
                return
        except OSError:
            self._wal_cut = True  # no WAL file
            return
        if not self._lock.acquire(False):
            return
        try:
            fd = self._turn_fd
            if self._closed or self._gone is not None:
                return
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return  # a writer is at work: not quiet after all
            try:
                if self._truncate_wal():
                    self._wal_cut = True
                else:
                    self._last_change = time.monotonic()
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    # --- errors --------------------------------------------------------------------------
    def _error(self, exc: BaseException) -> StorageError:
        """The corral error for an error of the driver (or of the file system under it):
        every one that leaves this storage goes through here. One line, naming the file."""
        name = self._name
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, OverflowError):
            return ValueRejected(
                f"{name} cannot store an integer beyond 64 bits (-2**63 to 2**63 - 1); "
                "nothing was written"
            )
        if isinstance(exc, UnicodeEncodeError):
            bad = exc.object[exc.start : exc.end]
            return ValueRejected(
                f"{name} cannot store a string holding a lone surrogate ({bad!r}), which is "
                "not UTF-8; nothing was written"
            )
        if isinstance(exc, OSError):
            return self._os_error(exc)
        text = _one_line(exc)
        if isinstance(exc, (sqlite3.InterfaceError, sqlite3.ProgrammingError)):
            if "closed" in text:
                return StorageError(f"the storage of {name} is closed")
            if "binding" in text:  # a value of a type it cannot store
                return ValueRejected(f"{name} cannot store a value ({text}); nothing was written")
            return StorageError(f"{name}: {text}")
        return self._sqlite_error(exc, text)

    def _sqlite_error(self, exc: BaseException, text: str) -> StorageError:
        """`_error` for an error that SQLite itself reported, by its code."""
        name = self._name
        code = getattr(exc, "sqlite_errorcode", None)
        primary = -1 if code is None else code & 0xFF
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return self._unavailable(StorageLocked(self._locked_message("-shm")))
        if primary == sqlite3.SQLITE_FULL:
            self._shrink_wal = True
            return self._unavailable(
                StorageUnavailable(
                    f"{name} cannot grow, its disk is full ({text}): free some space; "
                    "writes resume by themselves then"
                )
            )
        if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOMEM):
            return self._unavailable(
                StorageUnavailable(f"{name} failed to read or write ({text}): check the disk")
            )
        if code == sqlite3.SQLITE_READONLY_DBMOVED:  # SQLite noticed before _check_file
            self._gone = self._gone_message()
            return StorageError(self._gone)
        if primary == sqlite3.SQLITE_READONLY:
            return self._cannot_write(text, self._read_only() or "")
        if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            return StorageError(
                f"{name} is corrupt or not a SQLite database ({text}): restore it from a "
                "backup, or give corral another file"
            )
        if primary in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
            return self._cannot_write(text, self._read_only())
        if primary == sqlite3.SQLITE_TOOBIG:
            return ValueRejected(
                f"{name} cannot store a value this large ({text}); nothing was written"
            )
        return StorageError(f"{name} failed: {text}")

    def _os_error(self, exc: OSError) -> StorageError:
        """The corral error for a failure of the file system, e.g. at the lock file."""
        text = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._shrink_wal = True
            return self._unavailable(
                StorageUnavailable(
                    f"{self._name} cannot grow, its disk is full ({text}): free some space"
                )
            )
        if exc.errno == errno.EIO:
            return self._unavailable(
                StorageUnavailable(f"{self._name} failed to read or write ({text}): check the disk")
            )
        return self._cannot_write(text, self._read_only())

    def _cannot_write(self, text: str, read_only: str | None) -> StorageError:
        """The file cannot be opened or written: read-only (`read_only` says why; "": for a
        reason not found), or some other cause."""
        if read_only is None:
            return StorageError(
                f"cannot open {self._name} ({text}): check that its directory exists and "
                "that this user may write the file and create files beside it"
            )
        return StorageError(
            f"{self._name} cannot be written: {read_only or 'it is read-only'} ({text}); "
            "corral must write the file and create files beside it"
        )

    def _read_only(self) -> str | None:
        """Why the database file or its directory cannot be written, if that is so."""
        if self._abspath is None:
            return None
        for path in (self._abspath, os.path.dirname(self._abspath)):
            try:
                if os.statvfs(path).f_flag & os.ST_RDONLY:
                    return f"{path} is on a file system mounted read-only"
                if not os.access(path, os.W_OK):
                    return f"this user may not write {path}"
            except OSError:
                continue  # not there (yet)
        return None

    def _unavailable(self, exc: StorageUnavailable) -> StorageUnavailable:
        """Log a transient failure once (until a write works again) and return it."""
        if self._outage is None:
            log.warning("%s", exc)
        self._outage = str(exc)
        return exc

    def _locked_message(self, suffix: str) -> str:
        """Why a write waited past the busy timeout: who holds the lock, as far as the
        kernel's table of file locks tells (Linux), and what may be wrong with it."""
        pid = None if self._abspath is None else _lock_holder(self._abspath + suffix)
        waited = f"{self.busy_timeout:g} s"
        fix = "resume it or end it, or give the database URL a longer ?busy_timeout=SECONDS"
        if pid is None:
            return (
                f"{self._name} is locked: another process has held its write lock for over "
                f"{waited} (stopped with Ctrl-Z or SIGSTOP? a debugger? a paused container? "
                f"a long transaction?): {fix}"
            )
        state = _process_state(pid)
        if state in ("T", "t"):
            return (
                f"{self._name} is locked by process {pid}, which is stopped (Ctrl-Z or "
                f"SIGSTOP? a debugger?) and has held its write lock for over {waited}: "
                f"resume it (kill -CONT {pid}) or end it"
            )
        return (
            f"{self._name} is locked by process {pid}, which has held its write lock for "
            f"over {waited} (stopped with Ctrl-Z or SIGSTOP? a debugger? a paused container? "
            f"a long transaction?): {fix}"
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in (self._conn, self._watch):
                if conn is not None:
                    try:
                        conn.close()
                    except sqlite3.Error as exc:
                        log.debug("closing %s: %s", self._name, exc)
            if self._watcher:
                self._watcher.stop()
            if self._turn_waiter is not None:
                self._turn_waiter.close()
            if self._turn_fd is not None:
                os.close(self._turn_fd)
                self._turn_fd = None

    # --- schema --------------------------------------------------------------------------
    def migrate(self) -> int:
        with self._write(wakes=False) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS corral_schema_version (version INTEGER NOT NULL)"
            )
            row = conn.execute("SELECT max(version) FROM corral_schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"the database {self.url} has schema version {current}, newer than "
                    f"this corral ({SCHEMA_VERSION}); upgrade corral"
                )
            for version, script in MIGRATIONS:
                if version > current:
                    for statement in script.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO corral_schema_version VALUES (?)", (version,))
        return SCHEMA_VERSION

    # --- processes -----------------------------------------------------------------------
    def process_insert_many(
        self,
        processes: Sequence[NewProcess],
        *,
        shared: SubmitShared | None = None,
        connection: object | None = None,
    ) -> list[Inserted]:
        if connection is not None:
            raise UsageError("transactional enqueue needs the PostgreSQL backend")
        values = _shared_values(processes, shared)
        with self._write() as conn:
            if values is not None:
                return self._insert_batch(conn, processes, values)
            return self._insert_each(conn, processes)

    def _insert_batch(
        self, conn: sqlite3.Connection, processes: Sequence[NewProcess], shared: tuple[Any, ...]
    ) -> list[Inserted]:
        """Processes of one submit call (one job, no custom ids, the same options): what
        they share is bound once per statement, four values per process; their submitted
        events are made by SQL from the rows just inserted."""
        last_rowid = conn.execute("SELECT max(rowid) FROM corral_process").fetchone()[0] or 0
        rows: list[Any] = []
        out: list[Inserted] = []
        for new in processes:
            rows.extend((new.id, codec.params_json(new), new.run_at, new.priority))
            out.append(Inserted(columns.new_process_record(new), "created"))
        _insert_rows(conn, _INSERT_SHARED, rows, shared)
        if last_rowid < _ROWID_LIMIT:  # new rows get rowids above every existing one
            detail = codec.dumps(codec.submitted_detail(processes[0]))
            conn.execute(_INSERT_SUBMITTED, (detail, last_rowid))
        else:  # near the top SQLite picks rowids at random
            _insert_rows(conn, _INSERT_HISTORY, [v for n in processes for v in _event_row(n)])
        _insert_edges(conn, processes)
        return out

    def _insert_each(
        self, conn: sqlite3.Connection, processes: Sequence[NewProcess]
    ) -> list[Inserted]:
        """Any processes: custom ids (an existing process is returned, a conflict raises),
        several jobs, options of their own."""
        out: list[Inserted] = []
        rows: list[Any] = []  # flat: the values of _INSERT_PROCESS, process after process
        events: list[Any] = []  # flat: the values of _INSERT_HISTORY
        in_batch: dict[tuple[str, str], Process] = {}
        tags_json = codec.JsonCache()
        for new in processes:
            params = codec.params_json(new)
            if new.custom_id is not None:
                existing = self._existing(conn, new, params, in_batch)
                if existing is not None:
                    out.append(Inserted(existing, "existing"))
                    continue
            process = columns.new_process_record(new)
            if new.custom_id is not None:
                in_batch[(new.client_id, new.custom_id)] = process
            rows.extend((
                new.id, new.job, params, new.status._value_, new.priority, new.queue,
                new.run_at, new.custom_id, new.client_id, tags_json.dumps(new.tags),
                new.created_at, new.created_at, new.deadline_at, new.schedule_to_close,
                new.start_to_close, new.heartbeat_timeout, new.run_at,
            ))  # fmt: skip
            events.extend(_event_row(new))
            out.append(Inserted(process, "created"))
        _insert_rows(conn, _INSERT_PROCESS, rows)
        _insert_rows(conn, _INSERT_HISTORY, events)
        created = [n for n, i in zip(processes, out, strict=True) if i.outcome == "created"]
        _insert_edges(conn, created)
        return out

    def _existing(
        self,
        conn: sqlite3.Connection,
        new: NewProcess,
        params: str,
        in_batch: Mapping[tuple[str, str], Process],
    ) -> Process | None:
        """The process that already holds `new`'s custom id, if it is the same submit;
        CustomIdConflict if it is another job or other parameters."""
        assert new.custom_id is not None
        key = (new.client_id, new.custom_id)
        existing = in_batch.get(key) or self._get_by_custom_id(conn, *key)
        if existing is not None:
            same_submit(existing, new, params)
        return existing

    def _get_by_custom_id(
        self, conn: sqlite3.Connection, client_id: str, custom_id: str
    ) -> Process | None:
        row = conn.execute(
            f"SELECT {_COLS} FROM corral_process WHERE client_id = ? AND custom_id = ?",
            (client_id, custom_id),
        ).fetchone()
        return None if row is None else _decode_process(row)

    def _get(self, conn: sqlite3.Connection, process_id: str) -> Process | None:
        row = conn.execute(
            f"SELECT {_COLS} FROM corral_process WHERE id = ?", (process_id,)
        ).fetchone()
        return None if row is None else _decode_process(row)

    def process_get(self, process_id: str) -> Process | None:
        with self._read() as conn:
            return self._get(conn, process_id)

    def process_list(self, where: ProcessFilter) -> list[Process]:
        clauses: list[str] = []
        args: list[Any] = []
        if where.status is not None:
            clauses.append("status = ?")
            args.append(where.status.value)
        if where.job is not None:
            clauses.append("job = ?")
            args.append(where.job)
        for key, value in (where.tags or {}).items():
            # As `tags @> {key: value}` on PostgreSQL, for any key: a JSON path would need
            # the key quoted, and SQLite's paths cannot quote a key holding `"`.
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(corral_process.tags) "
                "WHERE key = ? AND type = 'text' AND value = ?)"
            )
            args.extend((key, value))
        sql = f"SELECT {_COLS} FROM corral_process"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        order = "DESC" if where.newest_first else "ASC"
        sql += f" ORDER BY created_at {order}, id {order} LIMIT ?"
        args.append(where.limit)
        with self._read() as conn:
            return [_decode_process(r) for r in conn.execute(sql, args)]

    # Claims and commits do their Python work (JSON, building records) outside the write
    # transaction: other processes wait for SQLite's one write lock while it is held.
    def process_claim(self, claim: Claim) -> list[Claimed]:
        with self._write(wakes=False, durable=False) as conn:
            chosen = self._claim(conn, claim)
        return _claimed(chosen)

    def process_commit_many(self, commits: Sequence[IterationCommit]) -> list[str]:
        rows = _commit_rows(commits)
        with self._write() as conn:
            return self._commit(conn, rows)

    def process_commit_and_claim(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        # One transaction, so one fsync of the WAL, for a worker's whole exchange.
        rows = _commit_rows(commits)
        with self._write(wakes=bool(commits), durable=bool(commits)) as conn:
            lost = self._commit(conn, rows)
            chosen = self._claim(conn, claim)
        return lost, _claimed(chosen)

    def _claim(self, conn: sqlite3.Connection, claim: Claim) -> _Chosen:
        """Lease the processes to claim; their rows, and the previous owner of each."""
        paused = {r[0] for r in conn.execute("SELECT queue FROM corral_paused_queue")}
        if "*" in paused:
            return [], {}
        filters, fargs = _queue_filter(claim, paused)
        chosen: list[tuple[str, str | None]] = []
        for template, most in ((_SELECT_EXPIRED, claim.max_recovered), (_SELECT_RUNNABLE, None)):
            need = claim.limit - len(chosen)
            if most is not None:
                need = min(need, most)
            if need <= 0:
                continue
            # Driving one named process needs no ordered walk of the runnable index.
            by_index = not claim.process_ids
            sql = template.format(
                queues=filters,
                indexed="INDEXED BY corral_process_runnable" if by_index else "",
                leased="INDEXED BY corral_process_leased" if by_index else "",
            )
            chosen.extend((r[0], r[1]) for r in conn.execute(sql, (claim.now, *fargs, need)))
        if not chosen:
            return [], {}
        previous = dict(chosen)
        marks = ", ".join("?" * len(chosen))
        rows = conn.execute(
            "UPDATE corral_process SET lease_owner = ?, lease_token = lease_token + 1, "
            "lease_expires_at = ?, attempt = attempt + 1, updated_at = ?, claimed_at = ?, "
            f"heartbeat_at = ?, version = version + 1 WHERE id IN ({marks}) "
            f"RETURNING {_COLS}",
            (claim.owner, claim.now + claim.lease_seconds, claim.now, claim.now, claim.now,
             *previous),
        ).fetchall()  # fmt: skip
        return rows, previous

    def _commit(self, conn: sqlite3.Connection, commits: _CommitRows) -> list[str]:
        lost: list[str] = []
        events: list[tuple[Any, ...]] = []
        for process_id, values, rows in commits:
            if conn.execute(_COMMIT, values).rowcount != 1:
                lost.append(process_id)
            else:
                events.extend(rows)
        if events:
            conn.executemany(_INSERT_HISTORY, events)
        return lost

    def process_update(
        self,
        process_id: str,
        expected_version: int,
        change: Change,
        now: float,
        *,
        revoke_lease: bool = False,
    ) -> bool:
        revoke = (
            ", lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL, "
            "heartbeat_at = NULL, lease_token = lease_token + 1"
            if revoke_lease
            else ""
        )
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?, "
                "progress_done = ?, progress_total = ?, run_at = ?, attempt = ?, "
                "stopped_status = ?, finished_at = ?, iteration_since = ?, "
                f"cancel_requested = ?, updated_at = ?, version = version + 1{revoke} "
                "WHERE id = ? AND version = ?",
                (
                    *columns.change_values(change),
                    int(change.cancel_requested),
                    now,
                    process_id,
                    expected_version,
                ),
            )
            if cur.rowcount != 1:
                return False
            self._append(conn, change.events, process_id)
        return True

    def process_prune(self, finished_before: float) -> int:
        with self._write() as conn:
            doomed = (
                "SELECT id FROM corral_process WHERE finished_at IS NOT NULL AND finished_at < ?"
            )
            conn.execute(
                f"DELETE FROM corral_history WHERE process_id IN ({doomed})", (finished_before,)
            )
            conn.execute(
                f"DELETE FROM corral_dependency WHERE process_id IN ({doomed})", (finished_before,)
            )
            cur = conn.execute(
                "DELETE FROM corral_process WHERE finished_at IS NOT NULL AND finished_at < ?",
                (finished_before,),
            )
            return cur.rowcount

    # --- leases --------------------------------------------------------------------------
    def lease_renew_many(
        self,
        owner: str,
        tokens: Mapping[str, int],
        now: float,
        lease_seconds: float,
        heartbeats: Mapping[str, float] | None = None,
    ) -> Renewal:
        if not tokens:
            return Renewal(frozenset(), frozenset())
        held: set[str] = set()
        cancel: set[str] = set()
        beats = heartbeats or {}
        with self._write(wakes=False, durable=False) as conn:
            for pid, token in tokens.items():
                row = conn.execute(
                    "UPDATE corral_process SET lease_expires_at = ?, "
                    "heartbeat_at = coalesce(?, heartbeat_at) WHERE id = ? "
                    "AND lease_token = ? AND lease_owner = ? AND lease_expires_at IS NOT NULL "
                    "RETURNING cancel_requested",
                    (now + lease_seconds, beats.get(pid), pid, token, owner),
                ).fetchone()
                if row is not None:
                    held.add(pid)
                    if row[0]:
                        cancel.add(pid)
        return Renewal(frozenset(set(tokens) - held), frozenset(cancel))

    def lease_release_many(self, tokens: Mapping[str, int], now: float) -> list[str]:
        released = []
        with self._write() as conn:
            for pid, token in tokens.items():
                row = conn.execute(
                    "UPDATE corral_process SET lease_owner = NULL, lease_expires_at = NULL, "
                    "attempt = max(attempt - 1, 0), updated_at = ?, version = version + 1 "
                    "WHERE id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL "
                    "RETURNING status, attempt",
                    (now, pid, token),
                ).fetchone()
                if row is not None:
                    released.append(pid)
                    self._append(conn, [Event("released", now, None, None, row[1])], pid)
        return released

    def leader_acquire(self, name: str, owner: str, now: float, ttl: float) -> bool:
        with self._write(wakes=False, durable=False) as conn:
            row = conn.execute(
                "INSERT INTO corral_leader (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at "
                "WHERE corral_leader.owner = excluded.owner OR corral_leader.expires_at < ? "
                "RETURNING owner",
                (name, owner, now + ttl, now),
            ).fetchone()
        return row is not None

    def process_timed_out(self, now: float, limit: int) -> list[TimedOut]:
        with self._read() as conn:
            rows = conn.execute(_SELECT_TIMED_OUT, {"now": now, "limit": limit}).fetchall()
        return [TimedOut(_decode_process(r[:-1]), r[-1]) for r in rows]

    # --- history -------------------------------------------------------------------------
    def _append(
        self, conn: sqlite3.Connection, events: Sequence[Event], process_id: str | None = None
    ) -> None:
        if events:
            conn.executemany(_INSERT_HISTORY, [codec.event_to_row(e, process_id) for e in events])

    def history_list(self, process_id: str) -> list[Event]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {codec.HISTORY_COLUMNS} FROM corral_history WHERE process_id = ? "
                "ORDER BY id",
                (process_id,),
            )
            return [codec.event_from_row(r) for r in rows]

    def history_append(self, events: Sequence[Event]) -> None:
        with self._write(wakes=False) as conn:
            self._append(conn, events)

    # --- queues --------------------------------------------------------------------------
    def queue_pause(self, queue: str, paused: bool) -> None:
        with self._write() as conn:
            if paused:
                conn.execute("INSERT OR IGNORE INTO corral_paused_queue VALUES (?)", (queue,))
            elif queue == "*":
                conn.execute("DELETE FROM corral_paused_queue")
            else:
                conn.execute("DELETE FROM corral_paused_queue WHERE queue = ?", (queue,))

    def queue_paused(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT queue FROM corral_paused_queue ORDER BY 1")]

    # --- wake-ups ------------------------------------------------------------------------
    def notify_local(self) -> None:
        self._wakeups.bump()

    def change_epoch(self) -> int:
        # Another process's commit moves the epoch on once we see it: look now, so that
        # one made after this returns is told apart from those before.
        self._see_other_writes()
        return self._wakeups.epoch()

    def wait_for_change(self, epoch: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        # How often data_version is read while idle (no disk I/O, no lock): often when
        # nothing else tells us of other processes' commits, rarely (a safety net) when
        # the file watcher does.
        step = _POLL_WATCHED if self._file_watcher() else _POLL
        while True:
            # An idle worker learns here, within a step, that its file was deleted or
            # replaced (the file watcher wakes it at once): it would wait forever else.
            if self._gone is not None:
                raise StorageError(self._gone)
            self._check_file()
            self._see_other_writes()
            if self._wakeups.epoch() != epoch:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._cut_idle_wal()
            if self._wakeups.wait(epoch, min(remaining, step)):
                self._check_file()  # the watcher wakes us when the file goes, too
                return True

    def _file_watcher(self) -> bool:
        """Start, once, a thread that wakes local waiters when another process writes
        the database: inotify on its directory, for the WAL file (Linux). False when
        there is none (in-memory, other systems, no inotify): then waiters poll."""
        if self._watcher is None:
            self._watcher = _WalWatcher.start(self._abspath, self.notify_local) or False
        return self._watcher is not False and self._watcher.alive

    def _see_other_writes(self) -> None:
        """Move the epoch on if a connection committed since we last looked (its
        data_version moved): another process, or this storage's own writing connection."""
        if self._abspath is None:
            return  # a private in-memory database has no other connection
        try:
            if self._watch is None:
                self._watch = sqlite3.connect(
                    self._abspath, isolation_level=None, check_same_thread=False
                )
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        except _DRIVER_ERRORS as exc:
            raise self._error(exc) from None
        with self._seeing:
            changed = self._data_version not in (-1, version)
            self._data_version = version
        if changed:
            self._last_change = time.monotonic()
            self._wal_cut = False
            self._wakeups.bump()


#: Idle wait between reads of data_version, without and with a file watcher (seconds).
_POLL = 0.002
_POLL_WATCHED = 0.05


class _WalWatcher:
    """A daemon thread blocked on inotify, calling `wake` when the database's WAL (or the
    database file) is written: another process committed, so there may be work. Waking
    costs one read of data_version; an idle worker costs nothing between commits."""

    def __init__(self, inotify: Any, names: set[str], wake: Callable[[], None]) -> None:
        self._inotify = inotify
        self._names = names
        self._wake = wake
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="corral-sqlite-watch", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, path: str | None, wake: Callable[[], None]) -> _WalWatcher | None:
        if path is None or inotify_simple is None:
            return None
        target = Path(path).resolve()
        try:
            inotify = inotify_simple.INotify()
            # The directory, not the WAL file: SQLite deletes and recreates that file.
            # The database's own name too: deleted or replaced, it wakes waiters, which
            # then see that it is gone (SQLiteStorage._check_file).
            flags = inotify_simple.flags
            inotify.add_watch(
                str(target.parent),
                flags.MODIFY | flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO,
            )
        except OSError as exc:  # e.g. the per-user limit of watches: fall back to polling
            log.debug("no inotify on %s (%s): idle waits poll", target.parent, exc)
            return None
        return cls(inotify, {target.name, f"{target.name}-wal"}, wake)

    def _run(self) -> None:
        try:
            while not self._stopped:
                # A timeout so that stop() is seen; no event: nothing to do.
                events = self._inotify.read(timeout=200)
                if any(e.name in self._names for e in events) and not self._stopped:
                    self._wake()
        except OSError as exc:  # the watch is gone (directory removed...): waiters poll
            log.debug("inotify watch ended: %s", exc)
        finally:
            self._inotify.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to end (within its 200 ms read timeout; it closes the inotify
        descriptor itself) without waiting for it: closing a storage stays instant."""
        self._stopped = True


# A submit call's processes: the values they share bound once (?1 to ?10, then four per
# process), and the rest of the columns as _INSERT_PROCESS writes them.
_INSERT_SHARED = (
    "INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, custom_id, "
    "client_id, tags, created_at, updated_at, deadline_at, schedule_to_close, start_to_close, "
    "heartbeat_timeout, iteration_since, store, attempt, lease_token, cancel_requested, "
    "version) SELECT column1, ?1, column2, ?2, column4, ?3, column3, NULL, ?4, ?5, ?6, ?6, ?7, "
    "?8, ?9, ?10, column3, '{}', 0, 0, 0, 0 FROM (VALUES (?, ?, ?, ?))"
)
# The submitted events of the processes just inserted (rowids above the largest before),
# in their order, all with the same detail.
_INSERT_SUBMITTED = (
    f"INSERT INTO corral_history ({codec.HISTORY_COLUMNS}) "
    "SELECT id, created_at, 'submitted', NULL, status, 0, ? FROM corral_process "
    "WHERE rowid > ? ORDER BY rowid"
)
_ROWID_LIMIT = 2**62
#: Rows per multi-row INSERT at most. One statement for many rows costs about 4 us less per
#: row than `executemany` (whose every row is one step of the statement), and the gain stops
#: growing at a few hundred rows (measured: 100 to 500 alike; a statement binds at most
#: 32,766 values). A batch goes in statements of 256 rows, then of 128, 64... 1 for the
#: rest: at most 9 statements of each kind are ever prepared.
_INSERT_CHUNK = 256


def _shared_values(
    processes: Sequence[NewProcess], shared: SubmitShared | None
) -> tuple[Any, ...] | None:
    """What the processes share, in _INSERT_SHARED's order, when they are several from one
    submit call (`shared` given by the App) with no custom id and no dependency; else None."""
    if shared is None or len(processes) < 2:
        return None
    if any(n.custom_id is not None or n.depends_on for n in processes):
        return None
    return (
        shared.job, Status.STARTING._value_, shared.queue, shared.client_id,
        codec.dumps(dict(shared.tags)), shared.created_at, shared.deadline_at,
        shared.schedule_to_close, shared.start_to_close, shared.heartbeat_timeout,
    )  # fmt: skip


def _event_row(new: NewProcess) -> tuple[Any, ...]:
    """The values of _INSERT_HISTORY for a new process's submitted event."""
    detail = codec.dumps(codec.submitted_detail(new))
    return (new.id, new.created_at, "submitted", None, new.status._value_, 0, detail)


def _insert_edges(conn: sqlite3.Connection, processes: Sequence[NewProcess]) -> None:
    edges = [(n.id, dep) for n in processes for dep in n.depends_on]
    if edges:
        conn.executemany(
            "INSERT INTO corral_dependency (process_id, depends_on) VALUES (?, ?)", edges
        )


def _insert_rows(
    conn: sqlite3.Connection, one_row: str, flat: Sequence[Any], shared: Sequence[Any] = ()
) -> None:
    """Insert rows given as one flat list of values, row after row, with `one_row`, an
    INSERT of one row whose last `(?, ...)` is the row; `shared`: the values bound before
    the rows' in every statement."""
    width = one_row[one_row.rindex("(?") :].count("?")
    count = len(flat) // width
    done, size = 0, _INSERT_CHUNK
    while done < count:
        while size > count - done:
            size //= 2
        values = flat[done * width : (done + size) * width]
        conn.execute(_multi_row(one_row, size), [*shared, *values] if shared else values)
        done += size


@functools.cache
def _multi_row(one_row: str, rows: int) -> str:
    """`one_row` with its last `(...)` group repeated for `rows` rows."""
    start = one_row.rindex("(?")
    end = one_row.index(")", start) + 1
    return f"{one_row[:start]}{', '.join([one_row[start:end]] * rows)}{one_row[end:]}"


#: Claimed rows and, per process id, the owner of the lease it had (None: unleased).
_Chosen = tuple[list[Any], dict[str, str | None]]
#: Per commit: process id, the UPDATE's parameters, the history rows if it lands.
_CommitRows = list[tuple[str, tuple[Any, ...], list[tuple[Any, ...]]]]


def _claimed(chosen: _Chosen) -> list[Claimed]:
    rows, previous = chosen
    claimed = []
    for row in rows:
        process = _decode_process(row)
        owner = previous[process.id]
        claimed.append(Claimed(process, process.lease_token, owner is not None, owner))
    # Keep DESIGN §3 order for the caller: recovered first, then as selected.
    order = {pid: i for i, pid in enumerate(previous)}
    claimed.sort(key=lambda c: order[c.process.id])
    return claimed


def _commit_rows(commits: Sequence[IterationCommit]) -> _CommitRows:
    return [
        (
            commit.process_id,
            (*columns.change_values(commit.change), commit.now, commit.process_id, commit.token),
            [codec.event_to_row(e, commit.process_id) for e in commit.change.events],
        )
        for commit in commits
    ]


def _queue_filter(claim: Claim, paused: set[str]) -> tuple[str, list[Any]]:
    sql = ""
    args: list[Any] = []
    if claim.process_ids is not None:
        sql += f" AND id IN ({', '.join('?' * len(claim.process_ids))})"
        args.extend(claim.process_ids)
    if claim.queues is not None:
        sql += f" AND queue IN ({', '.join('?' * len(claim.queues))})"
        args.extend(claim.queues)
    if claim.jobs is not None:
        sql += f" AND job IN ({', '.join('?' * len(claim.jobs))})"
        args.extend(claim.jobs)
    if paused:
        sql += f" AND queue NOT IN ({', '.join('?' * len(paused))})"
        args.extend(sorted(paused))
    return sql, args


class _TurnWaiter:
    """A thread that blocks in flock() on the writers' lock file for a writer that found
    the lock taken, so that the writer can give up after its busy timeout (a flock()
    cannot be interrupted; a thread blocked in one can be left behind). It locks an open
    file description of its own (flock locks belong to those), which the writer then
    holds and unlocks. A writer that gave up leaves its request behind: the thread takes
    the lock when the holder lets go and, nobody wanting it any more, lets go at once, or
    hands it to the next writer that came meanwhile. One per storage, started at the
    first wait; writers come one at a time (the storage's lock)."""

    def __init__(self, fd: int, path: str) -> None:
        try:  # the very file `fd` has open (Linux), even if its path was unlinked since
            self.fd = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        except OSError:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._cond = threading.Condition()
        self._wanted = False  # a writer waits for the lock
        self._held = False  # the lock is held on self.fd for that writer
        self._error: OSError | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="corral-sqlite-turn", daemon=True)
        self._thread.start()

    def acquire(self, timeout: float) -> bool:
        """True when the lock is held on `self.fd` for the caller, within `timeout` seconds."""
        with self._cond:
            self._wanted = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._held or self._error is not None, timeout)
            self._wanted = False
            if self._held:
                self._held = False
                return True
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            return False

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._wanted or self._closed)
                    if self._closed:
                        return
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX)
                except OSError as exc:
                    with self._cond:
                        self._error = exc
                        self._wanted = False
                        self._cond.notify_all()
                    continue
                with self._cond:
                    if self._wanted and not self._closed:
                        self._held = True
                        self._wanted = False
                        self._cond.notify_all()
                        continue
                fcntl.flock(self.fd, fcntl.LOCK_UN)  # the writer gave up meanwhile
        finally:
            os.close(self.fd)

    def close(self) -> None:
        """End the thread: now if it is idle, else once the flock() it is blocked in
        returns (it lets go of the lock at once then)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction: SQLite may have done it already
    (after a full disk, an I/O error), and a failing rollback must not hide the error."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.debug("rollback failed: %s", exc)


# SQLite's locks in the WAL index (the -shm file): the writer's lock, then the
# checkpointer's and recovery's, one byte each from byte 120.
_SHM_WRITER_LOCKS = range(120, 123)


def _lock_holder(path: str) -> int | None:
    """The pid of the process holding the write lock of `path` (the lock file beside the
    database, or SQLite's -shm file), from the kernel's table of file locks (Linux): a
    line per lock, with its holder's pid and the file's device and inode. None when it
    cannot be told (another system, no /proc, a pid outside this pid namespace)."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            table = f.read()
    except OSError:
        return None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    inode = str(st.st_ino)
    flock = path.endswith(_TURN_SUFFIX)
    found: list[tuple[bool, int]] = []
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 321 fd:01:1234 0 EOF"; "1: -> FLOCK ..." is a waiter.
        fields = line.split()
        if len(fields) < 8 or fields[1] == "->" or fields[3] != "WRITE":
            continue
        dev, _, ino = fields[5].rpartition(":")
        if ino != inode or (fields[1] == "FLOCK") != flock or int(fields[4]) <= 0:
            continue
        if not flock:
            end = 2**63 if fields[7] == "EOF" else int(fields[7])
            if not any(int(fields[6]) <= b <= end for b in _SHM_WRITER_LOCKS):
                continue
        # The same device first; some file systems (btrfs) give stat() another number.
        found.append((dev != device, int(fields[4])))
    return min(found)[1] if found else None


def _process_state(pid: int) -> str:
    """The state letter of a process (Linux: T stopped, t stopped by a debugger), or ''."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""
