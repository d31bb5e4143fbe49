"""Process, Status and the transition rules (docs/state-machine.md). Pure: no I/O, no clock.

Every change of a process is computed here as a `Change` (the new values of the
fields that change, plus the history events that explain them). Backends only
apply a `Change` atomically and fenced; they never decide a transition.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from corral.errors import IllegalTransition, ProcessTerminal

JSON = Any
"""A value that `json.dumps` accepts (dict, list, str, int, float, bool, None)."""


class Status(StrEnum):
    WAITING = "waiting"
    STARTING = "starting"
    RUNNING = "running"
    ENDING = "ending"
    COMPLETED = "completed"
    FAILING = "failing"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})
#: Statuses a worker can claim, in claim order (docs/state-machine.md): fix first, then
#: finish, then start.
CLAIMABLE = (Status.FAILING, Status.ENDING, Status.RUNNING, Status.STARTING)
#: The forward lifecycle of a multi-step process.
FORWARD = (Status.STARTING, Status.RUNNING, Status.ENDING)

_ALLOWED: Mapping[Status, frozenset[Status]] = {
    # waiting -> running or ending: a parent whose children have ended resumes where its
    # spawning iteration left it (`await_children`); -> failing: a parent canceled while
    # it waits rolls back what it did before.
    Status.WAITING: frozenset(
        {
            Status.STARTING,
            Status.RUNNING,
            Status.ENDING,
            Status.FAILING,
            Status.FAILED,
            Status.CANCELED,
        }
    ),
    # starting -> failed: rejected by `validate` (nothing to roll back);
    # starting -> canceled: canceled before it started.
    Status.STARTING: frozenset(
        {
            Status.RUNNING,
            Status.ENDING,
            Status.COMPLETED,
            Status.FAILING,
            Status.FAILED,
            Status.CANCELED,
            Status.WAITING,  # its start spawned children (`await_children`)
        }
    ),
    Status.RUNNING: frozenset({Status.ENDING, Status.COMPLETED, Status.FAILING, Status.WAITING}),
    Status.ENDING: frozenset({Status.COMPLETED, Status.FAILING}),
    Status.FAILING: frozenset({Status.FAILED, Status.CANCELED}),
    # Terminal statuses leave only through an explicit retry (see `retry`).
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}


def can_transition(src: Status, dst: Status) -> bool:
    return dst in _ALLOWED[src]


def check_transition(src: Status, dst: Status) -> None:
    if not can_transition(src, dst):
        raise IllegalTransition(f"illegal transition {src.value} -> {dst.value}")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a process failed: the exception, or a reason such as `invalid` or `timeout`."""

    type: str
    message: str
    traceback: str = ""
    reason: str = "error"

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorInfo:
        return cls(
            type=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
            reason=str(data.get("reason", "error")),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a process's history."""

    kind: str  # submitted, transition, attempt, error, retry_scheduled, lease_expired, ...
    at: float
    from_status: Status | None = None
    to_status: Status | None = None
    attempt: int = 0
    detail: Mapping[str, JSON] = field(default_factory=dict)
    process_id: str = ""


@dataclass(frozen=True, slots=True)
class Process:
    """A snapshot of one process as stored."""

    id: str
    job: str
    params: dict[str, JSON]
    status: Status
    store: dict[str, JSON] = field(default_factory=dict)
    result: JSON = None
    error: ErrorInfo | None = None
    progress_done: float | None = None
    progress_total: float | None = None
    priority: int = 0
    queue: str = "default"
    run_at: float = 0.0
    attempt: int = 0
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    stopped_status: Status | None = None
    custom_id: str | None = None
    client_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    version: int = 0
    #: Timeouts (docs/timeouts.md), in seconds; None: no limit. `deadline_at` is absolute.
    deadline_at: float | None = None
    schedule_to_close: float | None = None
    start_to_close: float | None = None
    heartbeat_timeout: float | None = None
    #: When the current iteration became runnable (the schedule_to_close clock).
    iteration_since: float = 0.0
    #: When the current lease was claimed (start_to_close) and last proven alive.
    claimed_at: float | None = None
    heartbeat_at: float | None = None

    @property
    def leased(self) -> bool:
        """True while some worker holds (or held until it died) the lease."""
        return self.lease_expires_at is not None


KEEP: Any = object()


@dataclass(frozen=True, slots=True)
class Change:
    """The new values of a process's mutable fields, and the events explaining them.

    A backend writes every field of a Change as is. The lease is always released
    by a worker's commit: the next iteration needs a new claim.
    """

    status: Status
    store: dict[str, JSON]
    result: JSON
    error: ErrorInfo | None
    progress_done: float | None
    progress_total: float | None
    run_at: float
    attempt: int
    stopped_status: Status | None
    cancel_requested: bool
    finished_at: float | None
    iteration_since: float
    events: tuple[Event, ...] = ()

    @classmethod
    def of(cls, process: Process) -> Change:
        """No change yet: the process's current values."""
        return cls(
            status=process.status,
            store=process.store,
            result=process.result,
            error=process.error,
            progress_done=process.progress_done,
            progress_total=process.progress_total,
            run_at=process.run_at,
            attempt=process.attempt,
            stopped_status=process.stopped_status,
            cancel_requested=process.cancel_requested,
            finished_at=process.finished_at,
            iteration_since=process.iteration_since,
        )

    def with_(self, **fields: Any) -> Change:
        # One constructor call: dataclasses.replace inspects the class on every call, and
        # a worker makes a few Changes per iteration (it showed as ~30 us per job).
        if not fields.keys() <= _CHANGE_FIELDS:
            raise TypeError(f"Change has no field {sorted(fields.keys() - _CHANGE_FIELDS)}")
        get = fields.get
        return Change(
            get("status", self.status),
            get("store", self.store),
            get("result", self.result),
            get("error", self.error),
            get("progress_done", self.progress_done),
            get("progress_total", self.progress_total),
            get("run_at", self.run_at),
            get("attempt", self.attempt),
            get("stopped_status", self.stopped_status),
            get("cancel_requested", self.cancel_requested),
            get("finished_at", self.finished_at),
            get("iteration_since", self.iteration_since),
            get("events", self.events),
        )

    def note(self, event: Event) -> Change:
        return self.with_(events=(*self.events, event))

    def to(self, dst: Status, at: float, **detail: JSON) -> Change:
        """Move to `dst` if the rules allow it, recording the transition."""
        event, finished = _transition(self.status, dst, at, self.attempt, detail)
        return self.with_(status=dst, finished_at=finished, events=(*self.events, event))


def _transition(
    src: Status, dst: Status, at: float, attempt: int, detail: Mapping[str, JSON]
) -> tuple[Event, float | None]:
    """A checked move from `src` to `dst`: its history event and the new `finished_at`."""
    check_transition(src, dst)
    return Event("transition", at, src, dst, attempt, detail), (at if dst in TERMINAL else None)


_CHANGE_FIELDS = frozenset(f.name for f in dataclasses.fields(Change))


# --- what the worker decides after an iteration ------------------------------------------


def committed(
    process: Process,
    at: float,
    *,
    store: dict[str, JSON],
    progress: tuple[float | None, float | None],
    to: Status | None = None,
    result: JSON = KEEP,
) -> Change:
    """An iteration succeeded: save the store, reset the attempts, move on if asked."""
    # Built in one go: this runs once per successful iteration, the worker's hot path.
    status, finished_at = process.status, process.finished_at
    events: tuple[Event, ...] = ()
    if to is not None and to != process.status:
        # Recorded with the attempt that made it.
        event, finished_at = _transition(process.status, to, at, process.attempt, {})
        status, events = to, (event,)
    return Change(
        status=status,
        store=store,
        result=process.result if result is KEEP else result,
        error=process.error,
        progress_done=progress[0],
        progress_total=progress[1],
        run_at=at,
        attempt=0,
        stopped_status=process.stopped_status,
        cancel_requested=process.cancel_requested,
        finished_at=finished_at,
        iteration_since=at,
        events=events,
    )


def errored(
    process: Process,
    at: float,
    error: ErrorInfo,
    *,
    retry_delay: float | None,
    max_attempts: int,
    has_rollback: bool,
) -> Change:
    """An iteration raised. Retry it later while attempts remain, else start failing.

    `retry_delay` is None when the error is not retryable. The store is left as it
    was at the last committed iteration: a failed iteration writes nothing of it. A retry
    restarts the schedule_to_close clock when it may run: waiting out a backoff is not
    time spent on the iteration.
    """
    change = Change.of(process).note(
        Event("error", at, process.status, process.status, process.attempt, error.to_json())
    )
    if retry_delay is not None and process.attempt < max_attempts:
        return change.with_(run_at=at + retry_delay, iteration_since=at + retry_delay).note(
            Event(
                "retry_scheduled",
                at,
                process.status,
                process.status,
                process.attempt,
                {"delay": retry_delay, "cause": error.type},
            )
        )
    return fail(change.with_(error=error), at, has_rollback=has_rollback, reason=error.reason)


def fail(change: Change, at: float, *, has_rollback: bool, reason: str) -> Change:
    """Send a process down the failure path: `failing` to roll back, or straight to the end."""
    if change.status is Status.FAILING:
        # The rollback itself failed or ran out of attempts: nothing else to undo.
        return change.to(_end_of_failure(change), at, reason=reason)
    if change.status is Status.STARTING and reason == "invalid":
        return change.to(Status.FAILED, at, reason=reason)
    if change.status is Status.WAITING:
        return change.to(Status.FAILED, at, reason=reason)  # nothing started: nothing to undo
    change = change.with_(stopped_status=change.status, attempt=0, run_at=at, iteration_since=at)
    change = change.to(Status.FAILING, at, reason=reason)
    if not has_rollback:
        end = _end_of_failure(change)
        why = "canceled" if end is Status.CANCELED else "no rollback handler"
        change = change.to(end, at, reason=why)
    return change


def _end_of_failure(change: Change) -> Status:
    if change.cancel_requested and change.error is None:
        return Status.CANCELED
    return Status.FAILED


def rolled_back(process: Process, at: float, *, store: dict[str, JSON], done: bool) -> Change:
    """The rollback handler returned: done (True/None) ends the process, False calls it again."""
    change = Change.of(process).with_(store=store, attempt=0, run_at=at, iteration_since=at)
    if not done:
        return change
    return change.to(_end_of_failure(change), at)


def retry_later(
    process: Process,
    at: float,
    delay: float,
    reason: str,
    *,
    store: dict[str, JSON] | None = None,
    progress: tuple[float | None, float | None] | None = None,
) -> Change:
    """The handler asked to be called again later; this try does not count as an attempt.
    What it wrote to its store and its progress are kept (None: left as they were), and
    the schedule_to_close clock starts again when the wait is over."""
    done, total = (process.progress_done, process.progress_total) if progress is None else progress
    return (
        Change.of(process)
        .with_(
            run_at=at + delay,
            iteration_since=at + delay,
            attempt=max(process.attempt - 1, 0),
            store=process.store if store is None else store,
            progress_done=done,
            progress_total=total,
        )
        .note(
            Event(
                "retry_later",
                at,
                process.status,
                process.status,
                process.attempt,
                {"delay": delay, "reason": reason},
            )
        )
    )


def recovered(
    process: Process,
    at: float,
    previous_owner: str | None,
    *,
    max_attempts: int,
    has_rollback: bool,
) -> Change | None:
    """A claim took over an expired lease (its worker died mid-iteration).

    Returns None when the iteration may be tried again (the caller runs it), or
    the Change that sends the process down the failure path when the attempts
    are spent.
    """
    if process.attempt <= max_attempts:
        return None
    error = ErrorInfo(
        "LeaseExpired",
        f"the worker running this iteration stopped renewing its lease "
        f"({process.attempt - 1} attempts, at most {max_attempts})",
        reason="lease_lost",
    )
    change = Change.of(process).with_(error=error)
    return fail(change, at, has_rollback=has_rollback, reason="lease_lost")


def lease_expired_event(process: Process, at: float, previous_owner: str | None) -> Event:
    return Event(
        "lease_expired",
        at,
        process.status,
        process.status,
        process.attempt,
        {"previous_owner": previous_owner},
        process.id,
    )


#: The timeouts (docs/timeouts.md), by the name a job and `submit` give them.
TIMEOUTS = ("process_timeout", "schedule_to_close", "start_to_close", "heartbeat_timeout")


def timed_out(
    process: Process,
    at: float,
    cause: str,
    *,
    retry_delay: float,
    max_attempts: int,
    has_rollback: bool,
) -> Change | None:
    """A timeout expired. `process_timeout` sends the process to `failing` (None when it
    is already unwinding); the others end the iteration, which is retried after
    `retry_delay` while attempts remain, else the process starts failing."""
    limit = {
        "process_timeout": None,
        "schedule_to_close": process.schedule_to_close,
        "start_to_close": process.start_to_close,
        "heartbeat_timeout": process.heartbeat_timeout,
    }[cause]
    message = f"{cause} expired" + (f" ({limit:g}s)" if limit is not None else "")
    error = ErrorInfo("Timeout", message, reason="timeout")
    note = Event(
        "timeout",
        at,
        process.status,
        process.status,
        process.attempt,
        {"cause": cause, "limit": limit},
    )
    if cause == "process_timeout":
        if process.status in (Status.FAILING, *TERMINAL):
            return None
        change = Change.of(process).with_(error=error).note(note)
        return fail(change, at, has_rollback=has_rollback, reason="timeout")
    if not process.leased:
        # Expired while waiting to run (or to be retried): that counts as a spent attempt.
        process = dataclasses.replace(process, attempt=process.attempt + 1)
    change = errored(
        process,
        at,
        error,
        retry_delay=retry_delay,
        max_attempts=max_attempts,
        has_rollback=has_rollback,
    )
    if change.status is process.status:
        # Retried: the retry gets a fresh schedule_to_close window from when it may run.
        change = change.with_(iteration_since=change.run_at)
    return change.with_(events=(note, *change.events))


def await_children(change: Change, at: float, children: int, resume: Status) -> Change:
    """An iteration that spawned `children` ends with its process `waiting` for them (its
    store and progress saved); it resumes at `resume`, kept in `stopped_status`, once
    they have all ended."""
    if resume not in (Status.RUNNING, Status.ENDING):
        raise IllegalTransition(f"a process cannot resume at {resume.value} after its children")
    detail: dict[str, JSON] = {"reason": "children", "children": children, "resume": resume.value}
    event, _ = _transition(change.status, Status.WAITING, at, change.attempt, detail)
    return change.with_(
        status=Status.WAITING, stopped_status=resume, events=(*change.events, event)
    )


def cancel(process: Process, at: float) -> Change:
    """Cancel now if the process never started, else ask its handlers to wind down."""
    if process.status.terminal:
        raise ProcessTerminal(f"process {process.id} is already {process.status.value}")
    change = Change.of(process)
    # Never claimed (its token is still 0): no handler of it ever ran, so there is nothing
    # to roll back. Once claimed, its start may have run (even if it then asked to be
    # called later, or its worker gave the lease back on a graceful stop): roll back.
    not_started = process.lease_token == 0 and process.status in (Status.WAITING, Status.STARTING)
    if not_started:
        return change.with_(cancel_requested=True).to(Status.CANCELED, at, reason="canceled")
    if process.status is Status.WAITING:
        # A parent waiting for its children: its earlier iterations ran, so it rolls back
        # (no worker claims a waiting process to see a cancel request).
        return change.with_(cancel_requested=True, run_at=min(process.run_at, at)).to(
            Status.FAILING, at, reason="canceled"
        )
    if process.cancel_requested:
        return change
    return change.with_(cancel_requested=True, run_at=min(process.run_at, at)).note(
        Event("cancel_requested", at, process.status, process.status, process.attempt)
    )


def cancel_now(process: Process, at: float, *, has_rollback: bool) -> Change:
    """A worker claimed a process with a cancel request: roll it back, then end it canceled."""
    change = Change.of(process)
    if process.status is Status.FAILING:
        return change  # already unwinding: the rollback will end it
    return fail(change, at, has_rollback=has_rollback, reason="canceled")


def retry(process: Process, at: float) -> Change:
    """Resume a failed or canceled process where it stopped, as a new attempt."""
    if process.status not in (Status.FAILED, Status.CANCELED):
        raise IllegalTransition(
            f"only a failed or canceled process can be retried; {process.id} is "
            f"{process.status.value}"
        )
    resume = process.stopped_status or Status.STARTING
    event = Event("transition", at, process.status, resume, 0, {"reason": "retry"})
    return Change.of(process).with_(
        status=resume,
        error=None,
        result=None,
        attempt=0,
        run_at=at,
        cancel_requested=False,
        stopped_status=None,
        finished_at=None,
        iteration_since=at,
        events=(event,),
    )


# --- retry arithmetic ----------------------------------------------------------------------


def backoff(
    attempt: int, *, base: float, max_delay: float, jitter: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff: base * 2**(attempt-1), capped, with +/- `jitter` fraction."""
    delay = min(base * (2 ** max(attempt - 1, 0)), max_delay)
    if jitter:
        r = (rng or random).uniform(-jitter, jitter)
        delay = max(0.0, delay * (1 + r))
    return float(delay)
