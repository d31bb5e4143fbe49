"""A worker says what it does: one line per iteration outcome, each naming the process, its
job and attempt, in words or as one JSON object a line."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from corral import App, Context, Retry, RetryLater, Status, Worker, WorkerOptions
from corral.logs import JsonFormatter, TextFormatter
from corral.storage.base import Claim


def drain(app: App) -> None:
    Worker(app, WorkerOptions(once=True, poll_interval=0.02)).run()


def outcomes(caplog: pytest.LogCaptureFixture, pid: str) -> list[tuple[str, str]]:
    return [
        (str(getattr(r, "outcome", "")), r.getMessage())
        for r in caplog.records
        if getattr(r, "process_id", None) == pid
    ]


def test_each_outcome_is_one_line_with_process_job_and_attempt(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")
    calls: dict[str, int] = {}

    @app.job()
    def fine() -> int:
        return 1

    @app.job()
    def broken() -> None:
        raise ValueError("no such file")

    @app.job(retry=Retry(attempts=2, backoff=0, jitter=0))
    def flaky() -> None:
        calls["flaky"] = calls.get("flaky", 0) + 1
        if calls["flaky"] == 1:
            raise KeyError("once")

    @app.job()
    def patient() -> None:
        calls["patient"] = calls.get("patient", 0) + 1
        if calls["patient"] == 1:
            raise RetryLater(after=0, reason="not yet")

    @app.process("steps")
    class Steps:
        def start(self, ctx: Context) -> None: ...

        def step(self, ctx: Context) -> bool:
            return True

    ids = {name: app.submit(name).id for name in ("fine", "broken", "flaky", "patient", "steps")}
    drain(app)
    assert outcomes(caplog, ids["fine"])[0][0] == "completed"
    assert outcomes(caplog, ids["fine"])[0][1].startswith("completed in ")
    [(kind, words)] = outcomes(caplog, ids["broken"])
    assert kind == "failed" and "ValueError: no such file" in words
    assert [k for k, _ in outcomes(caplog, ids["flaky"])] == ["retried", "completed"]
    assert "attempt 1 failed (KeyError" in outcomes(caplog, ids["flaky"])[0][1]
    assert [k for k, _ in outcomes(caplog, ids["patient"])] == ["retry_later", "completed"]
    assert "not yet" in outcomes(caplog, ids["patient"])[0][1]
    assert [k for k, _ in outcomes(caplog, ids["steps"])] == ["moved", "completed"]
    assert outcomes(caplog, ids["steps"])[0][1].startswith("starting -> running in ")
    for record in caplog.records:
        if getattr(record, "process_id", None) in ids.values():
            assert record.job in ids and isinstance(record.attempt, int)  # type: ignore[attr-defined]


def test_a_taken_over_process_and_a_cancel_are_said(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral")

    @app.job()
    def work() -> None: ...

    @app.process("undo")
    class Undo:
        def start(self, ctx: Context) -> None: ...

        def rollback(self, ctx: Context) -> None: ...

    # A worker claimed both 100 s ago, then died: their leases (1 s) are long expired.
    long_ago = app.clock() - 100
    dead = app.submit("work", run_at=long_ago)
    canceled = app.submit("undo", run_at=long_ago)
    app.storage.process_claim(Claim(owner="dead-worker", now=long_ago, lease_seconds=1, limit=2))
    app.cancel(canceled.id)
    drain(app)
    taken = outcomes(caplog, dead.id)
    assert taken[0][0] == "taken_over" and "dead-worker" in taken[0][1]
    assert app.get(canceled.id).status is Status.CANCELED
    assert [k for k, _ in outcomes(caplog, canceled.id)][-1] == "canceled"


def test_the_formatters_show_the_fields(app: App) -> None:
    record = logging.LogRecord("corral.iteration", logging.INFO, "f", 1, "completed", (), None)
    fields: dict[str, Any] = {
        "process_id": "01a2",
        "job": "add",
        "attempt": 1,
        "outcome": "completed",
        "duration_ms": 3.5,
    }
    record.__dict__.update(fields)
    text = TextFormatter().format(record)
    assert "corral.iteration: [process 01a2 add attempt 1] completed" in text
    data = json.loads(JsonFormatter().format(record))
    assert {k: data[k] for k in fields} == fields
    assert data["message"] == "completed" and data["level"] == "INFO"
    # A handler's own ctx.log lines carry the same fields.
    ctx = Context(
        process_id="01a2", job="add", status=Status.STARTING, params=None, store={}, attempt=2
    )
    assert ctx.log.extra == {"process_id": "01a2", "job": "add", "attempt": 2}
