"""Where iterations run: sync handlers on slot threads, async ones on one event loop.

A slot thread runs one iteration at a time. Python cannot stop a thread: a handler given up
(past its timeout, or its lease lost) keeps its thread until it returns, and a new slot
thread takes its place, up to a bound on such stuck threads; past it the runner reports
itself wedged so that the worker exits to be replaced. An async handler given up is simply
canceled: nothing is stuck.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from corral.context import IterationSignals
from corral.iteration import is_async, run_iteration, run_iteration_async
from corral.jobs import Registry
from corral.model import Event
from corral.settle import Outcome
from corral.storage.base import Claimed

log = logging.getLogger("corral.worker")


@dataclass(eq=False)
class Flight:
    """One iteration handed to the runner, from its claim to its commit."""

    claimed: Claimed
    signals: IterationSignals
    events: tuple[Event, ...] = ()
    #: When its handler was handed to a slot (monotonic seconds): for the log line.
    started: float = field(default_factory=time.monotonic)
    #: An async iteration's task on the event loop (None: it runs on a thread).
    task: concurrent.futures.Future[None] | None = None
    #: Set under the worker's lock: the handler returned; or the worker gave up on it.
    finished: bool = False
    abandoned: bool = False
    #: The progress the renewer last saved for it (it saves a report only once).
    progress_saved: tuple[float, float | None] | None = None


class Runner:
    """Runs each flight's iteration and hands its outcome to `finished(flight, outcome)`
    (None: corral itself failed, logged), from a slot thread or the event loop's thread."""

    def __init__(
        self,
        registry: Registry,
        concurrency: int,
        max_stuck: int,
        finished: Callable[[Flight, Outcome | None], None],
    ) -> None:
        self.registry = registry
        self.concurrency = concurrency
        self.max_stuck = max_stuck
        self._finished = finished
        self._tasks: queue.SimpleQueue[Flight | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots = 0  # slot threads that take new iterations
        #: Handlers still running on a thread whose iteration was given up.
        self.stuck = 0
        self.most_stuck = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._spawn_slot()

    def run(self, flight: Flight) -> None:
        process = flight.claimed.process
        job = self.registry.jobs[process.job]
        if is_async(self.registry, job, process.status):
            # Async handlers share one event loop: no thread each.
            flight.task = asyncio.run_coroutine_threadsafe(
                self._run_async(flight), self._event_loop()
            )
        else:
            self._tasks.put(flight)

    def give_up(self, flight: Flight) -> bool:
        """The worker gave up on a running iteration (its caller marked it abandoned): cancel
        an async one; for one on a thread, start another thread in its place while the
        bound allows. False when the stuck threads now pass the bound (wedged)."""
        if flight.task is not None:
            flight.task.cancel()  # an async handler can be stopped: nothing is stuck
            return True
        with self._lock:
            self.stuck += 1
            self._slots -= 1
            self.most_stuck = max(self.most_stuck, self.stuck)
            wedged = self.stuck > self.max_stuck
        if not wedged:
            self._spawn_slot()
        return not wedged

    def returned(self, flight: Flight) -> None:
        """A given-up flight's handler returned at last (called under the worker's lock)."""
        if flight.task is None:
            with self._lock:
                self.stuck -= 1

    def stop(self) -> None:
        with self._lock:
            slots = self._slots
        for _ in range(slots):
            self._tasks.put(None)
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout=5)
            if not self._loop_thread.is_alive():
                self._loop.close()

    def _spawn_slot(self) -> None:
        with self._lock:
            self._slots += 1
            n = self._slots + self.stuck
        threading.Thread(target=self._slot, name=f"corral-slot-{n}", daemon=True).start()

    def _slot(self) -> None:
        loop = asyncio.new_event_loop()  # for a coroutine a sync handler may return
        try:
            while True:
                flight = self._tasks.get()
                if flight is None:
                    return
                process = flight.claimed.process
                try:
                    job = self.registry.jobs[process.job]
                    outcome = run_iteration(self.registry, job, process, flight.signals, loop)
                except Exception:
                    log.exception("process %s: its iteration failed in corral", process.id)
                    outcome = None
                self._finished(flight, outcome)
                if flight.abandoned:
                    return  # another thread took this one's place when it was given up
        finally:
            loop.close()

    async def _run_async(self, flight: Flight) -> None:
        process = flight.claimed.process
        try:
            job = self.registry.jobs[process.job]
            outcome = await run_iteration_async(self.registry, job, process, flight.signals)
        except Exception:
            log.exception("process %s: its iteration failed in corral", process.id)
            outcome = None
        self._finished(flight, outcome)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop async iterations run on, in a thread of its own, started on first use."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="corral-async", daemon=True)
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return self._loop
