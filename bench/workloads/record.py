"""What every benchmark job does: append one fixed-size record to a shared file.

The harness learns that jobs ran from these records, never from the queue's own status.
A record holds the job's number, the time it was enqueued (a parameter of the job) and the
time it started. Records have a fixed size, so counting them is one `stat`; appends of a
few bytes to a file opened with O_APPEND do not interleave on Linux.
"""

from __future__ import annotations

import os
import time

#: The environment variable naming the file that jobs append to.
RECORD_FILE_ENV = "BENCH_RECORD_FILE"
RECORD_SIZE = 49  # b"%012d %17.6f %17.6f\n"

_fd: int | None = None
_pid = 0


def record(i: int, t: float) -> None:
    """Append job `i`'s record: its number, enqueue time `t` and start time (now)."""
    started = time.time()
    global _fd, _pid
    if _fd is None or _pid != os.getpid():  # a forked child opens its own descriptor
        _fd = os.open(os.environ[RECORD_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _pid = os.getpid()
    os.write(_fd, b"%012d %17.6f %17.6f\n" % (i, t, started))


def count(path: str) -> int:
    """How many records the file holds."""
    try:
        return os.stat(path).st_size // RECORD_SIZE
    except FileNotFoundError:
        return 0


def read(path: str) -> list[tuple[int, float, float]]:
    """All records: (job number, enqueued at, started at)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.splitlines():
        i, t, s = line.split()
        out.append((int(i), float(t), float(s)))
    return out
