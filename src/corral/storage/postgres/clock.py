"""The server's clock, read without a round trip: the one clock of every worker, so that
machines whose clocks disagree still agree on who holds a lease (see
docs/leases-and-fencing.md)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from corral.storage.postgres.connection import one_line
from corral.storage.postgres.queries import Q

log = logging.getLogger("corral.storage.postgres")

#: Seconds (of local elapsed time) a measurement of the server's clock serves `now()` before
#: a new one is taken, in the background. Readings do not depend on the local wall clock
#: (see ServerClock), so this bounds only how long a step of the server's clock, or a drift
#: between the two clocks' rates, goes unnoticed.
_CLOCK_REFRESH = 5.0
#: Round trips per measurement: the shortest one gives the surest reading.
_CLOCK_SAMPLES = 3
#: How fast the local elapsed-time clock and the server's may drift apart, in seconds per
#: second: 500 ppm, ten times what NTP tolerates. It ages a measurement's error bound.
_CLOCK_DRIFT = 5e-4

#: Local elapsed seconds, on a clock that never steps and counts suspended time (Linux's
#: CLOCK_BOOTTIME; elsewhere the monotonic clock, which may pause in a suspend: the next
#: refresh then catches up).
_elapsed: Callable[[], float] = (
    functools.partial(time.clock_gettime, time.CLOCK_BOOTTIME)
    if hasattr(time, "CLOCK_BOOTTIME")
    else time.monotonic
)

#: One reading of the server's clock: (its time, local elapsed time at the midpoint of the
#: round trip, the round trip's length).
Sample = tuple[float, float, float]


def clock_samples(conn: psycopg.Connection[tuple[Any, ...]]) -> list[Sample]:
    samples = []
    for _ in range(_CLOCK_SAMPLES):
        before = _elapsed()
        row = conn.execute(Q["server_clock"]).fetchone()
        after = _elapsed()
        assert row is not None
        samples.append((float(row[0]), (before + after) / 2, after - before))
    return samples


class ServerClock:
    """The server's clock, read without a round trip.

    A measurement reads the server's `clock_timestamp()` and the local elapsed-time clock
    at the midpoint of the round trip; a reading is the server's time then plus the local
    time elapsed since. The local wall clock (`time.time()`) plays no part: a machine whose
    clock is minutes off, or steps (NTP, a VM resumed), reads the same time as every other
    machine. A measurement is good to half its round trip; its error bound then grows with
    the drift the two clocks' rates may have, and a new measurement (taken in the background
    every _CLOCK_REFRESH seconds, started by a reading that finds the last one due) replaces
    it unless its own bound is worse: a round trip slowed by a busy server or a stalled
    thread does not spoil a good measurement."""

    def __init__(self, samples: Sequence[Sample], refresh: Callable[[], None]) -> None:
        self._refresh = refresh
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        # (server time, local elapsed time, error bound then): replaced whole, read at once.
        self._base = (0.0, 0.0, float("inf"))
        self._due = 0.0
        self.offer(samples)

    def now(self) -> float:
        server, local, _ = self._base
        elapsed = _elapsed()
        if elapsed >= self._due:
            self._start_refresh(elapsed)
        return server + (elapsed - local)

    def offer(self, samples: Sequence[Sample]) -> bool:
        """Take the best of these measurements if it is better than the one in use."""
        server, local, rtt = min(samples, key=lambda s: s[2])
        with self._lock:
            _, old_local, old_error = self._base
            old_error += abs(local - old_local) * _CLOCK_DRIFT
            if rtt / 2 > old_error:
                return False
            self._base = (server, local, rtt / 2)
            self._due = max(self._due, local + _CLOCK_REFRESH)
            return True

    def _start_refresh(self, elapsed: float) -> None:
        with self._lock:
            if self._thread is not None or self._closed or elapsed < self._due:
                return
            self._due = elapsed + _CLOCK_REFRESH  # once per interval, even if it fails
            self._thread = threading.Thread(target=self._run, name="corral-clock", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._refresh()
        except Exception as exc:  # the database is away: keep the reading we have
            log.debug("could not read the server's clock: %s", one_line(exc))
        finally:
            with self._lock:
                self._thread = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)
