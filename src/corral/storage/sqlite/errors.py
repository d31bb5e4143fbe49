"""Error translation at the boundary: every error of the driver (or of the file system
under it) that leaves the SQLite backend goes through `ErrorTranslation._error` and leaves
as one of corral's, in one line naming the file.

- a write that waited `busy_timeout` seconds for the lock: StorageLocked, naming the holder
  as far as the kernel's table of file locks tells (transient);
- a full disk, an I/O error, out of memory: StorageUnavailable (transient), logged once
  until a write works again;
- a read-only, corrupt, deleted or replaced file, or one that cannot be opened:
  StorageError (for good);
- a value SQLite cannot store (an integer beyond 64 bits, a lone surrogate, a value over
  its length limit): ValueRejected, with nothing of that write landed.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3

from corral.errors import StorageError, StorageLocked, StorageUnavailable, ValueRejected
from corral.storage.sqlite.turns import lock_holder, process_state

log = logging.getLogger("corral.storage.sqlite")

#: Errors of the driver that may come out of a statement. OverflowError (an int beyond 64
#: bits) and UnicodeEncodeError (a lone surrogate) are raised by sqlite3 as it binds a value.
DRIVER_ERRORS = (sqlite3.Error, OverflowError, UnicodeEncodeError)


class ErrorTranslation:
    """The translation, and the state it keeps: whether the file is gone, whether an outage
    is under way (logged once), whether the WAL is to be cut back after a full disk."""

    busy_timeout: float
    #: "the SQLite database PATH" or "the in-memory SQLite database", for messages.
    _name: str
    #: The file's absolute path; None: a private in-memory database.
    _abspath: str | None

    def __init__(self) -> None:
        #: Why this storage can no longer be used: its file was deleted or replaced.
        self._gone: str | None = None
        #: The transient failure logged last (a full disk, a held lock); None: none since.
        self._outage: str | None = None
        #: A write failed for a full disk: cut the WAL back once writes work again.
        self._shrink_wal = False

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
        text = one_line(exc)
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
        pid = None if self._abspath is None else lock_holder(self._abspath + suffix)
        waited = f"{self.busy_timeout:g} s"
        fix = "resume it or end it, or give the database URL a longer ?busy_timeout=SECONDS"
        if pid is None:
            return (
                f"{self._name} is locked: another process has held its write lock for over "
                f"{waited} (stopped with Ctrl-Z or SIGSTOP? a debugger? a paused container? "
                f"a long transaction?): {fix}"
            )
        state = process_state(pid)
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

    def _gone_message(self) -> str:
        message = (
            f"{self._name} was deleted or replaced while in use; corral stopped using it: "
            "put the file back in place if it was a mistake, then restart every corral "
            "process that uses it"
        )
        return message


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
