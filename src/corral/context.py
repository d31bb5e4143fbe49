"""What a handler sees: its process's parameters, store, progress, heartbeat and cancel flag."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from corral import graph
from corral.errors import Cancelled, LeaseLost, UsageError
from corral.graph import DependencyRow, DependencyState
from corral.model import JSON, Status

if TYPE_CHECKING:
    from corral.storage.base import NewProcess

P = TypeVar("P")

logger = logging.getLogger("corral.job")


class IterationSignals:
    """Flags the worker's lease renewer sets while a handler runs, and the handler reads.

    Plain attributes, not threading.Events: one is made per iteration, and a flag set by
    one thread and read by another needs nothing more under the GIL.
    """

    __slots__ = (
        "cancelled",
        "last_heartbeat",
        "lost",
        "progress",
        "read_dependencies",
        "spawn",
        "spawned",
    )

    def __init__(
        self,
        read_dependencies: Callable[[], Sequence[DependencyRow]] | None = None,
        spawn: Callable[..., NewProcess] | str | None = None,
    ) -> None:
        #: Reads what the process sees of its dependencies, when the handler first asks.
        self.read_dependencies = read_dependencies
        #: Makes a child process for `ctx.spawn` (checked, not yet written); a string says
        #: why this iteration cannot spawn.
        self.spawn = spawn
        #: The children spawned so far: inserted with the iteration's commit.
        self.spawned: list[NewProcess] = []
        self.cancelled = False
        self.lost = False
        self.last_heartbeat = time.monotonic()
        #: What the handler last reported through ctx.progress (the renewer saves it
        #: with the next renewal, so that watchers see it before the iteration ends).
        self.progress: tuple[float, float | None] | None = None

    def request_cancel(self) -> None:
        self.cancelled = True

    def lose_lease(self) -> None:
        self.lost = True


class Context(Generic[P]):
    """The handler's view of one iteration of one process.

    `store` is a plain dict: whatever the handler leaves in it is saved in the same
    transaction as the status change, and only if this worker still holds the lease.
    """

    def __init__(
        self,
        *,
        process_id: str,
        job: str,
        status: Status,
        params: P,
        store: dict[str, JSON],
        attempt: int,
        lease_token: int = 0,
        progress: tuple[float | None, float | None] = (None, None),
        signals: IterationSignals | None = None,
    ) -> None:
        self.process_id = process_id
        self.job = job
        self.status = status
        self.params = params
        self.store = store
        self.attempt = attempt
        #: The fencing token of this iteration's lease: larger for every new claim of the
        #: process. Pass it to outside systems that can refuse writes from older tokens.
        self.lease_token = lease_token
        self._dependency_rows: Sequence[DependencyRow] | None = None
        self._progress = progress
        self._signals = signals or IterationSignals()
        self.log = logging.LoggerAdapter(
            logger, {"process_id": process_id, "job": job, "attempt": attempt}
        )

    @property
    def dependencies(self) -> dict[str, DependencyState]:
        """Each dependency of this process by id: its `status`, its `result` if it
        completed, its `error` (`type`, `message`, `traceback`, `reason`) if it failed.
        Empty for a process without dependencies (docs/graphs.md)."""
        return graph.dependencies_view(self._dependencies())

    @property
    def dependency_results(self) -> dict[str, JSON]:
        """The result of each completed dependency, by id."""
        return graph.dependency_results(self._dependencies())

    def _dependencies(self) -> Sequence[DependencyRow]:
        # Read once, on first use: most handlers never ask.
        if self._dependency_rows is None:
            read = self._signals.read_dependencies
            self._dependency_rows = tuple(read()) if read is not None else ()
        return self._dependency_rows

    def spawn(
        self,
        job: str,
        params: Mapping[str, Any] | None = None,
        *,
        custom_id: str | None = None,
        priority: int | None = None,
        run_at: float | datetime | None = None,
        queue: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Spawn a child process of `job` (options as `app.submit`'s); its id. Children are
        written with this iteration's commit, and only if it lands: a retried iteration
        spawns them again, never twice. This process then waits for all of them and runs
        its next handler once they have ended, reading them in `ctx.dependencies`
        (docs/graphs.md). From a process's `start` or `step` only."""
        if self.status not in (Status.STARTING, Status.RUNNING):
            raise UsageError(
                f"ctx.spawn: a process spawns children from its start or a step, not while "
                f"it is {self.status.value}"
            )
        make = self._signals.spawn
        if not callable(make):
            raise UsageError(f"ctx.spawn: {make or 'this iteration cannot spawn children'}")
        child = make(
            job, params, custom_id=custom_id, priority=priority, run_at=run_at, queue=queue,
            tags=tags,
        )  # fmt: skip
        self._signals.spawned.append(child)
        return child.id

    @property
    def spawned(self) -> tuple[str, ...]:
        """The ids of the children spawned so far in this iteration."""
        return tuple(c.id for c in self._signals.spawned)

    def progress(self, done: float, total: float | None = None) -> None:
        """Report progress; shown by `corral show` while the iteration runs (saved with
        the worker's next lease renewal, every third of the lease) and saved with the
        iteration's commit. Finite numbers only: anything else raises TypeError or
        ValueError here, where the mistake is, rather than when the iteration is saved."""
        _check_progress("done", done)
        if total is not None:
            _check_progress("total", total)
        self._progress = (float(done), float(total) if total is not None else self._progress[1])
        self._signals.progress = (self._progress[0], self._progress[1])

    @property
    def progress_value(self) -> tuple[float | None, float | None]:
        return self._progress

    @property
    def cancelled(self) -> bool:
        """True once somebody asked to cancel this process: wind down and return."""
        return self._signals.cancelled

    def heartbeat(self) -> None:
        """Prove a long iteration alive; raises `Cancelled` or `LeaseLost` when it should stop."""
        self._signals.last_heartbeat = time.monotonic()
        if self._signals.lost:
            raise LeaseLost(f"process {self.process_id}: this worker no longer holds its lease")
        if self._signals.cancelled:
            raise Cancelled(f"process {self.process_id} was asked to cancel")

    def __repr__(self) -> str:
        return f"<Context {self.job} {self.process_id} {self.status.value} attempt={self.attempt}>"


def _check_progress(name: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"ctx.progress: {name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"ctx.progress: {name} must be a finite number, not {value!r}")
