"""Wake-ups: an idle worker learns of work without polling the database.

A write through this storage bumps the local epoch (shared.Wakeups) when it commits.
Another process's commit is seen on `PRAGMA data_version` of a second connection: it
changes when any other connection commits, and reading it costs no disk I/O. On Linux a
thread blocked on inotify (`WalWatcher`) wakes waiters when the WAL is written, so an
idle worker reads data_version once per commit elsewhere; without it, waiters read it
every 2 ms. An idle waiter also cuts the WAL to nothing once the database has been quiet
for a while, and notices a database file deleted or replaced under it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from corral.errors import StorageError
from corral.storage.shared import Wakeups
from corral.storage.sqlite.connection import SQLiteConnection
from corral.storage.sqlite.errors import DRIVER_ERRORS

try:  # Linux only: elsewhere idle workers poll
    import inotify_simple
except ImportError:  # pragma: no cover - not Linux
    inotify_simple = None

log = logging.getLogger("corral.storage.sqlite")

#: Idle wait between reads of data_version, without and with a file watcher (seconds).
_POLL = 0.002
_POLL_WATCHED = 0.05
#: Seconds without a commit after which an idle waiter cuts the WAL to nothing (once).
_QUIET = 5.0


class SQLiteWakeups(SQLiteConnection):
    """The connection, with the wake-up verbs of the storage interface."""

    def __init__(self, url: str, path: str | None) -> None:
        self._wakeups = Wakeups()
        self._seeing = threading.Lock()  # data_version, read by several threads
        self._watch: sqlite3.Connection | None = None
        self._watcher: WalWatcher | Literal[False] | None = None
        self._data_version = -1
        #: When the idle wait last saw a commit; whether the WAL was cut since.
        self._last_change = time.monotonic()
        self._wal_cut = False
        super().__init__(url, path)

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
            self._watcher = WalWatcher.start(self._abspath, self.notify_local) or False
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
        except DRIVER_ERRORS as exc:
            raise self._error(exc) from None
        with self._seeing:
            changed = self._data_version not in (-1, version)
            self._data_version = version
        if changed:
            self._last_change = time.monotonic()
            self._wal_cut = False
            self._wakeups.bump()

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

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            super().close()
            if self._watch is not None:
                try:
                    self._watch.close()
                except sqlite3.Error as exc:
                    log.debug("closing %s: %s", self._name, exc)
            if self._watcher:
                self._watcher.stop()


#: Idle wait between reads of data_version, without and with a file watcher (seconds).
_POLL = 0.002
_POLL_WATCHED = 0.05


class WalWatcher:
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
    def start(cls, path: str | None, wake: Callable[[], None]) -> WalWatcher | None:
        if path is None or inotify_simple is None:
            return None
        target = Path(path).resolve()
        try:
            inotify = inotify_simple.INotify()
            # The directory, not the WAL file: SQLite deletes and recreates that file.
            # The database's own name too: deleted or replaced, it wakes waiters, which
            # then see that it is gone (SQLiteConnection._check_file).
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
