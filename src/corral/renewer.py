"""The lease renewer: the thread that proves a worker alive.

It extends the leases of running iterations every third of the lease, or every third of
the shortest heartbeat_timeout of what runs, vouching for handlers that beat in time; it
gives up iterations past their start_to_close or heartbeat_timeout (the worker commits the
timeout while it still holds the lease), and tells handlers of cancel requests and of
leases lost.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from corral.errors import StorageError
from corral.port import WorkerPort
from corral.runner import Flight
from corral.storage.base import Progress, WorkerInfo

log = logging.getLogger("corral.worker")

#: Renewal rounds come at most this often (seconds), whatever is overdue.
MIN_ROUND = 0.02


class Renewer:
    def __init__(
        self,
        port: WorkerPort,
        owner: str,
        lease_seconds: float,
        flights: Callable[[], Mapping[str, Flight]],
        give_up: Callable[[str, Flight, str], bool],
        time_out: Callable[[Flight, str, float], None],
        note_lost: Callable[[Iterable[tuple[str, int, str]]], None],
        registration: Callable[[], WorkerInfo],
    ) -> None:
        self.port = port
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._flights = flights
        self._give_up = give_up
        self._time_out = time_out
        self._note_lost = note_lost
        self._registration = registration
        self._halt = threading.Event()
        self.wake = threading.Event()  # set it when an iteration may need a round sooner
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="corral-renewer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def interval(self, flights: Iterable[Flight]) -> float:
        """A third of the lease, or of the shortest heartbeat timeout of what runs: the
        database learns that a handler beats well within its heartbeat_timeout."""
        interval = self.lease_seconds / 3
        for f in flights:
            beat = f.claimed.process.heartbeat_timeout
            if beat is not None:
                interval = min(interval, beat / 3)
        return max(interval, 0.05)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._halt.is_set():
            flights = dict(self._flights())
            remaining = last + self.interval(flights.values()) - time.monotonic()
            # Wake up for the first start_to_close to pass, too: its handler is given up
            # (and its timeout committed) then, not at the next renewal.
            remaining = min(remaining, until_first_deadline(flights.values(), self.port.now()))
            remaining = max(remaining, last + MIN_ROUND - time.monotonic())
            if remaining > 0:
                self.wake.wait(remaining)
                self.wake.clear()
                continue
            last = time.monotonic()
            self.round(flights)

    def round(self, flights: Mapping[str, Flight]) -> None:
        now, mono = self.port.now(), time.monotonic()
        held: dict[str, int] = {}
        beats: dict[str, float] = {}
        progress: dict[str, Progress] = {}
        for pid, f in flights.items():
            why = over_time(f, now, mono)
            if why:
                # start_to_close or heartbeat_timeout: give the iteration up and commit the
                # timeout while this worker still holds the lease (the sweep would see it
                # only once the lease or the heartbeat it vouched for ran out).
                if self._give_up(pid, f, why):
                    self._time_out(f, why, now)
                continue
            if f.signals.lost:
                self._give_up(pid, f, "lease lost")
                continue
            held[pid] = f.claimed.token
            # This worker vouches for the handler (it beat within its heartbeat_timeout,
            # or has none): the database's clock of its heartbeat starts again now.
            beats[pid] = now
            reported = f.signals.progress
            if reported is not None and reported != f.progress_saved:
                progress[pid] = reported
        self.refresh(list(held))
        if not held:
            return
        try:
            renewal = self.port.renew(self.owner, held, self.lease_seconds, beats, progress)
        except StorageError as exc:  # the database is away (logged once): next round
            log.debug("leases not renewed: %s", exc)
            return
        except Exception:
            log.exception("could not renew leases")
            return
        for pid, saved in progress.items():
            flights[pid].progress_saved = saved
        # A refused renewal is a lost lease only for an iteration still running. One that
        # finished meanwhile was committed by the loop (which released the lease: hence
        # the refusal) or is being committed, fenced: the loop notes a real loss.
        lost = [pid for pid in renewal.lost if self._give_up(pid, flights[pid], "lease lost")]
        if lost:
            self._note_lost([(pid, flights[pid].claimed.token, "renewal refused") for pid in lost])
        for pid in renewal.cancel_requested:
            flights[pid].signals.request_cancel()

    def refresh(self, running: list[str]) -> None:
        """Keep this worker's registry row fresh (last seen, what it runs); put it back if a
        reader removed it as stale. Failing here costs a stale row, never a lease."""
        try:
            if not self.port.seen(self.owner, running):
                self.port.register(self._registration())
        except StorageError as exc:
            log.debug("worker registry not refreshed: %s", exc)
        except Exception:
            log.exception("could not refresh the worker registry")


def until_first_deadline(flights: Iterable[Flight], now: float) -> float:
    """Seconds until the first running iteration passes its start_to_close (inf: none)."""
    first = math.inf
    for f in flights:
        p = f.claimed.process
        if p.start_to_close is not None and p.claimed_at is not None:
            first = min(first, p.claimed_at + p.start_to_close - now)
    return first


def over_time(flight: Flight, now: float, mono: float) -> str:
    """Which of its timeouts the running iteration has passed, if any."""
    p = flight.claimed.process
    if (
        p.start_to_close is not None
        and p.claimed_at is not None
        and (now - p.claimed_at > p.start_to_close)
    ):
        return "start_to_close"
    if p.heartbeat_timeout is not None and mono - flight.signals.last_heartbeat > (
        p.heartbeat_timeout
    ):
        return "heartbeat_timeout"
    return ""
