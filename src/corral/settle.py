"""The settle rule: what an iteration's outcome does to its process. Pure: no I/O, no clock.

Whoever ran the iteration (the in-process worker, or a worker in another language over
HTTP) reports its outcome as a plain value; `settle` turns (the process as claimed, the
job's policy, the outcome, the time) into the `Change` to commit, fenced by the lease
token. The decisions taken when a process is claimed (its previous worker died, a cancel
was asked for, no job of that name) are pure functions here too, so the same outcome
leaves the same history whoever ran it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from corral import model
from corral.model import JSON, Change, ErrorInfo, Event, Process, Status

Progress = tuple[float | None, float | None]


@dataclass(frozen=True, slots=True)
class Policy:
    """What the settle rule needs to know of a job."""

    #: Tries of one iteration, the first included; also bounds the lease expiries.
    max_attempts: int = 3
    #: Seconds to wait before try `n + 1` after a retryable error in try `n`; None: errors
    #: are never retried.
    backoff: Callable[[int], float] | None = None
    #: Whether a rollback handler runs in `failing` (the job's own or a generic one).
    has_rollback: bool = False
    #: Where a process goes when the handler of a forward phase is done (the next phase
    #: that has a handler, or `completed`).
    next_phase: Mapping[Status, Status] = field(
        default_factory=lambda: {
            Status.STARTING: Status.COMPLETED,
            Status.RUNNING: Status.COMPLETED,
            Status.ENDING: Status.COMPLETED,
        }
    )


# --- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Returned:
    """The handler returned. `done`: a step or a rollback with nothing left to do (always
    True for the other phases). `result` is kept when the iteration completes the process."""

    kind: ClassVar[str] = "returned"
    store: dict[str, JSON]
    progress: Progress = (None, None)
    result: JSON = None
    done: bool = True
    #: How many children the iteration spawned (`ctx.spawn`): the process then waits for
    #: them, and resumes where this iteration moved it once they have all ended.
    spawned: int = 0


@dataclass(frozen=True, slots=True)
class Raised:
    """The handler raised. `retryable`: whether the job's retry policy covers this error."""

    kind: ClassVar[str] = "raised"
    type: str
    message: str
    traceback: str = ""
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class RetryLaterOutcome:
    """The handler asked to be called again after `delay` seconds (without using an
    attempt), keeping what it wrote to its store and its progress."""

    kind: ClassVar[str] = "retry_later"
    delay: float
    reason: str = ""
    store: dict[str, JSON] = field(default_factory=dict)
    progress: Progress = (None, None)

    def __post_init__(self) -> None:
        d = self.delay
        if not (isinstance(d, int | float) and not isinstance(d, bool) and math.isfinite(d)):
            raise ValueError(f"RetryLater: after must be a finite number of seconds, not {d!r}")
        if d < 0:
            raise ValueError(f"RetryLater: after must be >= 0 seconds, not {d!r}")


@dataclass(frozen=True, slots=True)
class InvalidOutcome:
    """`validate` rejected the process: it ends `failed`, reason `invalid`."""

    kind: ClassVar[str] = "invalid"
    message: str


@dataclass(frozen=True, slots=True)
class CancelledOutcome:
    """The handler stopped because the process was asked to cancel."""

    kind: ClassVar[str] = "cancelled"


Outcome = Returned | Raised | RetryLaterOutcome | InvalidOutcome | CancelledOutcome


def outcome_to_json(outcome: Outcome) -> dict[str, JSON]:
    """An outcome as a JSON object with its `kind` (what the HTTP protocol carries)."""
    data: dict[str, Any] = {"kind": outcome.kind}
    for f in dataclasses.fields(outcome):
        value = getattr(outcome, f.name)
        data[f.name] = list(value) if isinstance(value, tuple) else value
    return data


def outcome_from_json(data: Mapping[str, Any]) -> Outcome:
    """The outcome a JSON object describes; ValueError naming what is wrong."""
    kinds: dict[str, type[Any]] = {
        c.kind: c for c in (Returned, Raised, RetryLaterOutcome, InvalidOutcome, CancelledOutcome)
    }
    cls = kinds.get(str(data.get("kind")))
    if cls is None:
        given = data.get("kind")
        raise ValueError(f"outcome kind must be one of {', '.join(kinds)}, not {given!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in data.items() if k in names}
    if "progress" in fields:
        done, total = [*list(fields["progress"]), None, None][:2]
        fields["progress"] = (done, total)
    try:
        outcome: Outcome = cls(**fields)
    except TypeError as exc:
        raise ValueError(f"outcome {cls.kind}: {exc}") from None
    return outcome


# --- the rule -----------------------------------------------------------------------------------


def settle(process: Process, policy: Policy, outcome: Outcome, now: float) -> Change:
    """The Change an iteration of `process` (as claimed) commits, given its outcome."""
    if isinstance(outcome, Returned):
        return _returned(process, policy, outcome, now)
    if isinstance(outcome, Raised):
        error = ErrorInfo(outcome.type, outcome.message, outcome.traceback)
        delay = None
        if outcome.retryable and policy.backoff is not None:
            delay = policy.backoff(max(process.attempt, 1))
        return model.errored(
            process,
            now,
            error,
            retry_delay=delay,
            max_attempts=policy.max_attempts,
            has_rollback=policy.has_rollback,
        )
    if isinstance(outcome, RetryLaterOutcome):
        return model.retry_later(
            process, now, outcome.delay, outcome.reason, store=outcome.store,
            progress=outcome.progress,
        )  # fmt: skip
    if isinstance(outcome, InvalidOutcome):
        error = ErrorInfo("Invalid", outcome.message, reason="invalid")
        change = Change.of(process).with_(error=error).note(_error_event(process, now, error))
        return model.fail(change, now, has_rollback=policy.has_rollback, reason="invalid")
    # Cancelled: the request reached the handler after the claim, so the process as claimed
    # may not know of it yet.
    asked = dataclasses.replace(process, cancel_requested=True)
    return model.cancel_now(asked, now, has_rollback=policy.has_rollback)


def _returned(process: Process, policy: Policy, outcome: Returned, now: float) -> Change:
    status = process.status
    if status is Status.FAILING:
        return model.rolled_back(process, now, store=outcome.store, done=outcome.done)
    to: Status | None
    if status is Status.RUNNING and not outcome.done:
        to = None
    else:
        to = policy.next_phase.get(status, Status.COMPLETED)
    if outcome.spawned:
        # It waits for its children, then resumes at `to` (its last step resumes at
        # `ending`, so that it ends after them); see model.await_children.
        resume = to or status
        if resume is Status.COMPLETED:
            resume = Status.ENDING
        change = model.committed(
            process, now, store=outcome.store, progress=outcome.progress, to=None
        )
        return model.await_children(change, now, outcome.spawned, resume)
    result = outcome.result if to is Status.COMPLETED else model.KEEP
    return model.committed(
        process, now, store=outcome.store, progress=outcome.progress, to=to, result=result
    )


def timed_out(process: Process, policy: Policy, cause: str, now: float) -> Change | None:
    """One of the process's timeouts (`model.TIMEOUTS`) expired: retried while attempts
    remain, else the process starts failing (None: nothing to do, it is unwinding)."""
    delay = policy.backoff(max(process.attempt, 1)) if policy.backoff is not None else 0.0
    return model.timed_out(
        process,
        now,
        cause,
        retry_delay=delay,
        max_attempts=policy.max_attempts,
        has_rollback=policy.has_rollback,
    )


def _error_event(process: Process, now: float, error: ErrorInfo) -> Event:
    return Event("error", now, process.status, process.status, process.attempt, error.to_json())


# --- decisions at claim time ----------------------------------------------------------------------

ClaimDecision = tuple[tuple[Event, ...], Change | None]


def on_claim(
    process: Process,
    policy: Policy | None,
    now: float,
    *,
    recovered: bool,
    previous_owner: str | None,
) -> ClaimDecision:
    """What a claim means before any handler runs: the events to record with the
    iteration (a lease taken over from a dead worker, a new attempt), and the Change to
    commit at once instead of running it (attempts spent, a cancel request, no such job),
    or None to run it. `policy` None: no job of this name is known."""
    events: list[Event] = []
    if recovered:
        events.append(model.lease_expired_event(process, now, previous_owner))
    if process.attempt > 1:
        cause = "lease_expired" if recovered else "retry"
        events.append(
            Event("attempt", now, process.status, process.status, process.attempt, {"cause": cause})
        )
    change: Change | None = None
    if policy is None:
        error = ErrorInfo(
            "UnknownJob",
            f"job {process.job!r} is not registered in the app of the worker that claimed it",
            reason="unknown_job",
        )
        change = model.fail(
            Change.of(process).with_(error=error), now, has_rollback=False, reason="unknown_job"
        )
    elif recovered:
        change = model.recovered(
            process,
            now,
            previous_owner,
            max_attempts=policy.max_attempts,
            has_rollback=policy.has_rollback,
        )
    if (
        change is None
        and policy is not None
        and process.cancel_requested
        and process.status is not Status.FAILING
    ):
        change = model.cancel_now(process, now, has_rollback=policy.has_rollback)
    if change is not None:
        change = change.with_(events=(*events, *change.events))
    return tuple(events), change
