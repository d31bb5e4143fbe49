"""One iteration: call the handler of a process's status and report its outcome.

Runs in a worker thread. It never writes and decides nothing: it returns an `Outcome`
(corral.settle), which the settle rule turns into the `Change` the worker commits, fenced
by the lease token, in the same transaction as the store. Whatever the handler does,
raises or returns, this returns an outcome: no handler can kill the thread that runs it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from collections.abc import Generator
from typing import Any

from corral.context import Context, IterationSignals
from corral.errors import Cancelled, Invalid, NotStorable, RetryLater
from corral.jobs import Handler, Job, Registry
from corral.model import JSON, Process, Status
from corral.settle import (
    CancelledOutcome,
    InvalidOutcome,
    Outcome,
    Raised,
    RetryLaterOutcome,
    Returned,
)
from corral.storage import codec


def run_iteration(
    registry: Registry,
    job: Job,
    process: Process,
    signals: IterationSignals,
    loop: asyncio.AbstractEventLoop,
) -> Outcome:
    """Run the iteration in this thread; an async handler runs on `loop` (this thread's)."""
    ctx: Context[Any] | None = None
    try:
        ctx = _context(job, process, signals)
        steps = _phase(registry, job, process, ctx)
        instance = _Instance(job)
        handler = next(steps)
        while True:
            value = _call(handler, ctx, instance)
            if inspect.isawaitable(value):
                value = loop.run_until_complete(value)
            handler = steps.send(value)
    except StopIteration as done:
        return _finished(done.value, ctx)
    except BaseException as exc:  # whatever the handler raised, SystemExit included
        return _outcome_of(exc, job, ctx)


async def run_iteration_async(
    registry: Registry, job: Job, process: Process, signals: IterationSignals
) -> Outcome:
    """Run the iteration on the running event loop, awaiting async handlers (a sync one
    among them, such as a plain `validate`, runs on the loop too)."""
    ctx: Context[Any] | None = None
    try:
        ctx = _context(job, process, signals)
        steps = _phase(registry, job, process, ctx)
        instance = _Instance(job)
        handler = next(steps)
        while True:
            value = _call(handler, ctx, instance)
            if inspect.isawaitable(value):
                value = await value
            handler = steps.send(value)
    except StopIteration as done:
        return _finished(done.value, ctx)
    except BaseException as exc:  # asyncio.CancelledError too: it settles as an error
        return _outcome_of(exc, job, ctx)


def is_async(registry: Registry, job: Job, status: Status) -> bool:
    """Whether an iteration of `job` in `status` awaits a handler (then it runs on the
    worker's event loop, not on a thread of its own)."""
    handler = registry.resolve(job, status)
    if handler is not None and handler.is_async:
        return True
    return status is Status.STARTING and job.validate is not None and job.validate.is_async


def _context(job: Job, process: Process, signals: IterationSignals) -> Context[Any]:
    # The handler gets its own copy: a failed iteration must leave the stored store as is.
    store = json.loads(json.dumps(process.store)) if process.store else {}
    params = job.params_model.model_validate(process.params)
    return Context(
        process_id=process.id,
        job=job.name,
        status=process.status,
        params=params,
        store=store,
        attempt=process.attempt,
        lease_token=process.lease_token,
        progress=(process.progress_done, process.progress_total),
        signals=signals,
    )


def _outcome_of(exc: BaseException, job: Job, ctx: Context[Any] | None) -> Outcome:
    """The outcome of an iteration that raised `exc`."""
    if isinstance(exc, RetryLater):
        return _retry_later(exc, ctx)
    if isinstance(exc, Invalid):
        return InvalidOutcome(codec.safe_text(str(exc)))
    if isinstance(exc, Cancelled):
        return CancelledOutcome()
    if isinstance(exc, NotStorable):  # what the handler returned or stored
        return _raised(exc, retryable=False)
    return _raised(exc, retryable=isinstance(exc, Exception) and job.retries(exc))


#: What `_phase` yields for the driver to call (None: no handler, as if it returned None),
#: and what it finally returns: the handler's value and whether a step or rollback is done.
_Steps = Generator[Handler | None, Any, tuple[Any, bool]]


def _phase(registry: Registry, job: Job, process: Process, ctx: Context[Any]) -> _Steps:
    """The handlers an iteration calls, in order, for the driver (sync or async) to call.
    Returns (the result to keep, done)."""
    status = process.status
    handler = registry.resolve(job, status)
    if status is Status.STARTING:
        if job.validate is not None:
            yield job.validate
        value = yield handler
        return (value if job.kind == "function" else None), True
    if status is Status.RUNNING:
        finished = (yield handler) if handler else True
        if not isinstance(finished, bool):
            raise TypeError(
                f"{handler.name if handler else 'step'} must return True when nothing is left "
                f"to do, or False to be called again; it returned {finished!r}"
            )
        return None, finished
    if status is Status.ENDING:
        return (yield handler), True
    if status is Status.FAILING:
        undone = yield handler
        return None, undone is not False
    raise AssertionError(f"no iteration runs in status {status.value}")


def _finished(value: tuple[Any, bool], ctx: Context[Any] | None) -> Outcome:
    """The handlers returned: what the iteration stores."""
    assert ctx is not None
    result, done = value
    try:
        return Returned(
            _stored_store(ctx.store),
            ctx.progress_value,
            _stored(result, "the handler's result"),
            done,
            len(ctx.spawned),
        )
    except NotStorable as exc:
        return _raised(exc, retryable=False)


class _Instance:
    """The iteration's instance of a process class, made when a handler first needs it."""

    __slots__ = ("_job", "_made")

    def __init__(self, job: Job) -> None:
        self._job = job
        self._made: Any = None

    def __call__(self) -> Any:
        if self._made is None:
            assert self._job.cls is not None
            self._made = self._job.cls()
        return self._made


def _call(handler: Handler | None, ctx: Context[Any], instance: _Instance) -> Any:
    if handler is None:
        return None
    try:
        return handler.call(ctx, instance)
    except StopIteration as exc:  # would end the phase's generator as if it had returned
        raise RuntimeError(f"{handler.name} raised StopIteration") from exc


def _stored(value: object, what: str) -> JSON:
    """A value as it will be stored: JSON data that every backend accepts (NotStorable
    names what is wrong otherwise), checked here, before anything is written."""
    data = codec.to_json_value(value, what)
    codec.dumps(data, what)
    return data


def _stored_store(store: object) -> dict[str, JSON]:
    data = _stored(store, "ctx.store")
    if not isinstance(data, dict):
        raise NotStorable(f"ctx.store must be a dict, not {type(store).__name__}")
    return data


def _retry_later(exc: RetryLater, ctx: Context[Any] | None) -> Outcome:
    """Ask to be called again, keeping what the handler stored and its progress."""
    try:
        if ctx is None:  # the parameters did not even validate: nothing to keep
            return RetryLaterOutcome(exc.after, codec.safe_text(exc.reason))
        return RetryLaterOutcome(
            exc.after, codec.safe_text(exc.reason), _stored_store(ctx.store), ctx.progress_value
        )
    except (NotStorable, ValueError) as bad:  # a bad store, a NaN delay
        return _raised(bad, retryable=False)


def _raised(exc: BaseException, *, retryable: bool) -> Raised:
    return Raised(
        codec.safe_text(type(exc).__qualname__),
        codec.safe_text(str(exc)),
        codec.safe_text("".join(traceback.format_exception(exc))),
        retryable,
    )
