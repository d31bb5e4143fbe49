"""The writers' queue: a kernel file lock beside the database that corral's writers take
before SQLite's own write lock, and who holds it when a writer gives up.

Two corral processes writing one file would otherwise meet SQLite's busy handler, which
sleeps 1, 2, 5, 10... ms between tries: with a worker's short transactions most of a
waiting writer's time was sleep. A blocked flock() wakes the moment the holder lets go, and
the kernel drops the lock if the holder dies. Other programs writing the database still
coordinate through SQLite's own lock and busy timeout.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading

log = logging.getLogger("corral.storage.sqlite")

#: The writers' queue: a file beside the database (see `SQLiteConnection._take_turn`).
TURN_SUFFIX = "-corral-lock"


def open_turn_file(path: str) -> int | None:
    """Open the writers' lock file beside the database at `path`; None on a file system
    without flock() (then SQLite's own lock and busy timeout suffice). OSError if the file
    cannot be opened."""
    fd = os.open(path + TURN_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        pass  # a writer holds it right now: flock works
    except OSError as exc:
        log.debug("no flock() on %s (%s): writers use SQLite's busy timeout", path, exc)
        os.close(fd)
        return None
    return fd


class TurnWaiter:
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


# SQLite's locks in the WAL index (the -shm file): the writer's lock, then the
# checkpointer's and recovery's, one byte each from byte 120.
_SHM_WRITER_LOCKS = range(120, 123)


def lock_holder(path: str) -> int | None:
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
    flock = path.endswith(TURN_SUFFIX)
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


def process_state(pid: int) -> str:
    """The state letter of a process (Linux: T stopped, t stopped by a debugger), or ''."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""
