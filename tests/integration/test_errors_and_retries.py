"""Errors: rollbacks, retries by policy, RetryLater, validation, handlers that return the
wrong thing.

On every backend, the App and a worker in one Python process (the command line's side is
in tests/e2e)."""

from __future__ import annotations

from typing import Any

from corral import (
    App,
    Context,
    Invalid,
    Retry,
    RetryLater,
    Status,
)
from tests.integration.common import drain, kinds


def test_an_error_runs_the_rollback_and_records_type_message_traceback(app: App) -> None:
    rolled: list[dict[str, Any]] = []

    @app.process("breaks")
    class Breaks:
        def start(self, ctx: Context) -> None:
            ctx.store["tmp"] = "made"

        def step(self, ctx: Context) -> bool:
            ctx.store["half"] = True  # never saved: the iteration fails
            raise ValueError("disk full")

        def rollback(self, ctx: Context) -> None:
            rolled.append(dict(ctx.store))

    p = app.submit("breaks")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED
    assert done.error is not None
    assert (done.error.type, done.error.message) == ("ValueError", "disk full")
    assert "raise ValueError" in done.error.traceback
    assert rolled == [{"tmp": "made"}]
    assert done.stopped_status is Status.RUNNING


def test_a_generic_rollback_runs_for_jobs_without_their_own(app: App) -> None:
    cleaned: list[str] = []

    @app.job()
    def fails() -> None:
        raise RuntimeError("no")

    @app.handler(status="failing", order=110)
    def cleanup(ctx: Context) -> None:
        cleaned.append(ctx.job)

    p = app.submit("fails")
    drain(app)
    assert cleaned == ["fails"] and app.get(p.id).status is Status.FAILED


def test_a_rollback_returning_false_is_called_until_it_is_done(app: App) -> None:
    calls: list[int] = []

    @app.process("unwind")
    class Unwind:
        def start(self, ctx: Context) -> None:
            ctx.store["done_steps"] = 3

        def step(self, ctx: Context) -> bool:
            raise OSError("lost the mount")

        def rollback(self, ctx: Context) -> bool:
            calls.append(ctx.store["done_steps"])
            ctx.store["done_steps"] -= 1  # undo one step per iteration, keeping its place
            return bool(ctx.store["done_steps"] == 0)

    p = app.submit("unwind")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and done.store == {"done_steps": 0}
    assert calls == [3, 2, 1]


def test_retries_follow_the_policy_and_are_in_the_history(app: App) -> None:
    tries: list[int] = []

    @app.job(retry=Retry(attempts=3, backoff=0, jitter=0))
    def flaky(ctx: Context) -> str:
        tries.append(ctx.attempt)
        if len(tries) < 3:
            raise ConnectionError("try again")
        return "ok"

    p = app.submit("flaky")
    drain(app)
    done = app.get(p.id)
    assert (done.status, done.result, tries) == (Status.COMPLETED, "ok", [1, 2, 3])
    assert kinds(app, p.id).count("retry_scheduled") == 2
    assert kinds(app, p.id).count("attempt") == 2


def test_attempts_spent_fail_the_process(app: App) -> None:
    @app.job(retry=Retry(attempts=2, backoff=0, jitter=0))
    def always() -> None:
        raise ConnectionError("down")

    p = app.submit("always")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and kinds(app, p.id).count("error") == 2


def test_retry_later_waits_without_using_an_attempt(app: App) -> None:
    @app.job(retry=Retry(attempts=1))
    def waits(ctx: Context) -> None:
        raise RetryLater(after=60, reason="file not there yet")

    p = app.submit("waits")
    before = app.clock()
    drain(app)
    pending = app.get(p.id)
    assert pending.status is Status.STARTING and pending.attempt == 0
    assert pending.run_at >= before + 60
    assert "retry_later" in kinds(app, p.id)


def test_validate_rejects_a_process_as_invalid_before_start(app: App) -> None:
    started: list[bool] = []

    @app.process("checked")
    class Checked:
        def validate(self, ctx: Context) -> None:
            raise Invalid("input file missing")

        def start(self, ctx: Context) -> None:
            started.append(True)

    p = app.submit("checked")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and not started
    assert done.error is not None and done.error.reason == "invalid"
    assert done.error.message == "input file missing"


def test_a_step_must_say_whether_it_is_done(app: App) -> None:
    @app.process("forgetful")
    class Forgetful:
        def step(self, ctx: Context) -> None:  # returns None: a mistake, not "call again"
            pass

    p = app.submit("forgetful")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and done.error is not None
    assert done.error.type == "TypeError" and "must return True" in done.error.message


def test_a_result_that_is_not_json_fails_the_process(app: App) -> None:
    @app.job()
    def weird() -> object:
        return object()

    p = app.submit("weird")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and "JSON" in (done.error.message if done.error else "")
