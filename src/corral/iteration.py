"""One iteration: call the handler of a process's status and decide what it leads to.

Runs in a worker thread. It never writes: it returns the `Change` that the worker
commits, fenced by the lease token, in the same transaction as the store.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from collections.abc import Callable
from typing import Any

from corral import model
from corral.context import Context, IterationSignals
from corral.errors import Cancelled, Invalid, RetryLater
from corral.jobs import Handler, Job, Registry
from corral.model import Change, ErrorInfo, Event, Process, Status


def run_iteration(
    registry: Registry,
    job: Job,
    process: Process,
    signals: IterationSignals,
    clock: Callable[[], float],
    loop: asyncio.AbstractEventLoop,
) -> Change:
    # The handler gets its own copy: a failed iteration must leave the stored store as is.
    store = json.loads(json.dumps(process.store))
    try:
        params = job.params_model.model_validate(process.params)
        ctx: Context[Any] = Context(
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
        change = _phase(registry, job, process, ctx, clock, loop)
        _check_json(change)
        return change
    except RetryLater as exc:
        return model.retry_later(process, clock(), exc.after, exc.reason)
    except Invalid as exc:
        error = ErrorInfo("Invalid", str(exc), reason="invalid")
        return _failed(registry, job, process, clock(), error)
    except Cancelled:
        return model.cancel_now(process, clock(), has_rollback=registry.has_rollback(job))
    except Exception as exc:
        error = ErrorInfo(type(exc).__qualname__, str(exc), traceback.format_exc())
        return model.errored(
            process,
            clock(),
            error,
            retry_delay=job.retry_delay(exc, process.attempt),
            max_attempts=job.max_attempts,
            has_rollback=registry.has_rollback(job),
        )


def _phase(
    registry: Registry,
    job: Job,
    process: Process,
    ctx: Context[Any],
    clock: Callable[[], float],
    loop: asyncio.AbstractEventLoop,
) -> Change:
    status = process.status
    handler = registry.resolve(job, status)

    def done(to: Status | None, result: Any = model.KEEP) -> Change:
        return model.committed(
            process, clock(), store=ctx.store, progress=ctx.progress_value, to=to, result=result
        )

    if status is Status.STARTING:
        if job.validate is not None:
            _call(job.validate, ctx, loop)
        returned = _call(handler, ctx, loop)
        if job.kind == "function":
            return done(Status.COMPLETED, returned)
        return done(registry.next_forward(job, status))
    if status is Status.RUNNING:
        finished = _call(handler, ctx, loop) if handler else True
        if not isinstance(finished, bool):
            raise TypeError(
                f"{handler.name if handler else 'step'} must return True when nothing is left "
                f"to do, or False to be called again; it returned {finished!r}"
            )
        return done(registry.next_forward(job, status) if finished else None)
    if status is Status.ENDING:
        return done(Status.COMPLETED, _call(handler, ctx, loop))
    if status is Status.FAILING:
        undone = _call(handler, ctx, loop)
        return model.rolled_back(process, clock(), store=ctx.store, done=undone is not False)
    raise AssertionError(f"no iteration runs in status {status.value}")


def _call(handler: Handler | None, ctx: Context[Any], loop: asyncio.AbstractEventLoop) -> Any:
    if handler is None:
        return None
    returned = handler.fn(ctx)
    if inspect.isawaitable(returned):
        returned = loop.run_until_complete(returned)
    return returned


def _check_json(change: Change) -> None:
    for what, value in (("store", change.store), ("result", change.result)):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the handler's {what} is not JSON-serialisable: {exc}") from None


def _failed(registry: Registry, job: Job, process: Process, at: float, error: ErrorInfo) -> Change:
    change = (
        Change.of(process)
        .with_(error=error)
        .note(Event("error", at, process.status, process.status, process.attempt, error.to_json()))
    )
    return model.fail(change, at, has_rollback=registry.has_rollback(job), reason=error.reason)
