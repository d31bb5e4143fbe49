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
    # The handler gets its own copy: a failed iteration must leave the stored store as is.
    store = json.loads(json.dumps(process.store))
    ctx: Context[Any] | None = None
    try:
        params = job.params_model.model_validate(process.params)
        ctx = Context(
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
        return _phase(registry, job, process, ctx, loop)
    except RetryLater as exc:
        return _retry_later(exc, ctx)
    except Invalid as exc:
        return InvalidOutcome(codec.safe_text(str(exc)))
    except Cancelled:
        return CancelledOutcome()
    except NotStorable as exc:  # what the handler returned or stored
        return _raised(exc, retryable=False)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, CancelledError too
        return _raised(exc, retryable=isinstance(exc, Exception) and job.retries(exc))


def _phase(
    registry: Registry,
    job: Job,
    process: Process,
    ctx: Context[Any],
    loop: asyncio.AbstractEventLoop,
) -> Outcome:
    status = process.status
    handler = registry.resolve(job, status)
    instance = _Instance(job)

    def returned(result: Any = None, done: bool = True) -> Returned:
        return Returned(
            _stored_store(ctx.store),
            ctx.progress_value,
            _stored(result, "the handler's result"),
            done,
        )

    if status is Status.STARTING:
        if job.validate is not None:
            _call(job.validate, ctx, instance, loop)
        value = _call(handler, ctx, instance, loop)
        return returned(value if job.kind == "function" else None)
    if status is Status.RUNNING:
        finished = _call(handler, ctx, instance, loop) if handler else True
        if not isinstance(finished, bool):
            raise TypeError(
                f"{handler.name if handler else 'step'} must return True when nothing is left "
                f"to do, or False to be called again; it returned {finished!r}"
            )
        return returned(done=finished)
    if status is Status.ENDING:
        return returned(_call(handler, ctx, instance, loop))
    if status is Status.FAILING:
        undone = _call(handler, ctx, instance, loop)
        return returned(done=undone is not False)
    raise AssertionError(f"no iteration runs in status {status.value}")


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


def _call(
    handler: Handler | None,
    ctx: Context[Any],
    instance: _Instance,
    loop: asyncio.AbstractEventLoop,
) -> Any:
    if handler is None:
        return None
    returned = handler.call(ctx, instance)
    if inspect.isawaitable(returned):
        returned = loop.run_until_complete(returned)
    return returned


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
