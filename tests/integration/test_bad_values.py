"""One bad value never takes others down, on every backend.

A handler's store, result, progress, error message or RetryLater delay that no backend can
store fails that one process, with its own error saying what was wrong, and the processes
the worker commits in the same batch complete. Values people return that pydantic can turn
into JSON are stored as JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corral import App, Context, RetryLater, Status, Worker, WorkerOptions
from corral.errors import ValueRejected
from corral.storage.base import IterationCommit, Storage
from tests.backends import backend_url

#: Values a handler may well produce that no backend can store, by what makes them so.
POISONS: dict[str, Any] = {
    "a lone surrogate (os.fsdecode of a non-UTF-8 name)": os.fsdecode(b"report-\xff.csv"),
    "a NUL character": "before\x00after",
    "NaN": math.nan,
    "infinity": [1.0, math.inf],
    "nested 150 deep": eval("[" * 150 + "]" * 150),
    "an integer of 5,000 digits": 10**5000,
    "an object": object(),
}


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, lease_seconds=5)
        yield a
        a.close()


def drain(app: App, concurrency: int = 8) -> Worker:
    worker = Worker(app, WorkerOptions(once=True, poll_interval=0.05, concurrency=concurrency))
    worker.run()
    return worker


def add_healthy_job(app: App) -> None:
    @app.job()
    def healthy(x: int) -> int:
        return x * 2


@pytest.mark.parametrize("where", ["result", "store"])
def test_a_value_no_backend_can_store_fails_only_its_process(app: App, where: str) -> None:
    add_healthy_job(app)

    @app.job()
    def poison(ctx: Context, name: str) -> object:
        value = POISONS[name]
        if where == "store":
            ctx.store["value"] = value
            return None
        return value

    bad = {name: app.submit("poison", {"name": name}).id for name in POISONS}
    good = [app.submit("healthy", {"x": x}).id for x in range(20)]
    worker = drain(app)
    assert worker.stats.stopped_by == "idle" and worker.stats.exit_code == 0
    for x, pid in enumerate(good):
        done = app.get(pid)
        assert (done.status, done.result, done.attempt) == (Status.COMPLETED, x * 2, 0)
    for name, pid in bad.items():
        failed = app.get(pid)
        assert failed.status is Status.FAILED, name
        assert failed.error is not None and failed.error.type == "NotStorable", name
        # Its own error, naming where the value was: not a lease expiry, not a crash.
        expected = "ctx.store" if where == "store" else "result"
        assert expected in failed.error.message, (name, failed.error.message)
        # At the first try: the worker did not die with it, nothing was taken over.
        history = app.history(pid)
        assert [e.attempt for e in history if e.kind == "error"] == [1], name
        assert not [e for e in history if e.kind in ("lease_expired", "lease_lost")], name


def test_an_error_message_that_is_not_valid_text_is_stored_escaped(app: App) -> None:
    undecodable = os.fsdecode(b"x-\xff")

    @app.job()
    def shouts(name: str) -> None:
        raise ValueError(f"cannot open {undecodable}: {name}" + "\x00")

    p = app.submit("shouts", {"name": "n"})
    drain(app)
    failed = app.get(p.id)
    assert failed.status is Status.FAILED and failed.error is not None
    assert failed.error.type == "ValueError"
    assert failed.error.message == "cannot open x-\\udcff: n\\x00"
    assert "ValueError" in failed.error.traceback


@pytest.mark.parametrize(
    ("progress", "message"),
    [(("half", 10), "must be a number"), ((math.nan, 10), "finite"), ((1, math.inf), "finite")],
)
def test_progress_takes_finite_numbers_only(
    app: App, progress: tuple[object, object], message: str
) -> None:
    @app.job()
    def reports(ctx: Context) -> None:
        ctx.progress(*progress)  # type: ignore[arg-type]

    p = app.submit("reports")
    drain(app)
    failed = app.get(p.id)
    assert failed.status is Status.FAILED and failed.error is not None
    assert "ctx.progress" in failed.error.message and message in failed.error.message


@pytest.mark.parametrize("after", [math.nan, math.inf, -1])
def test_a_retry_later_delay_that_is_not_a_time_fails_its_process(app: App, after: float) -> None:
    add_healthy_job(app)

    @app.job()
    def waits() -> None:
        raise RetryLater(after=after)

    p = app.submit("waits")
    good = app.submit("healthy", {"x": 1})
    drain(app)
    failed = app.get(p.id)
    assert failed.status is Status.FAILED and failed.error is not None
    assert "RetryLater" in failed.error.message
    assert app.get(good.id).status is Status.COMPLETED


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(BaseModel):
    name: str
    when: dt.date


def test_values_pydantic_can_turn_into_json_are_stored_as_json(app: App) -> None:
    moment = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    ident = uuid.UUID("3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a")

    @app.job()
    def rich(ctx: Context) -> object:
        ctx.store["seen"] = {"at": moment, "tags": {"b"}}
        return {
            "when": moment,
            "day": dt.date(2026, 12, 1),
            "price": decimal.Decimal("12.50"),
            "id": ident,
            "colour": Colour.RED,
            "set": frozenset([3]),
            "point": Point(1, 2),
            "model": Model(name="m", when=dt.date(2026, 1, 2)),
            "counts": Counter({1: 2, "a": 3}),  # keys of mixed types become strings
        }

    p = app.submit("rich")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.COMPLETED, done.error
    assert done.result == {
        "when": "2026-12-01T09:30:00Z",
        "day": "2026-12-01",
        "price": "12.50",
        "id": str(ident),
        "colour": "red",
        "set": [3],
        "point": {"x": 1, "y": 2},
        "model": {"name": "m", "when": "2026-01-02"},
        "counts": {"1": 2, "a": 3},
    }
    assert done.store == {"seen": {"at": "2026-12-01T09:30:00Z", "tags": ["b"]}}


def test_a_value_of_another_type_is_a_clear_error_naming_the_type(app: App) -> None:
    class Opaque:
        pass

    @app.job()
    def opaque() -> object:
        return {"thing": Opaque()}

    p = app.submit("opaque")
    drain(app)
    failed = app.get(p.id)
    assert failed.status is Status.FAILED and failed.error is not None
    assert "Opaque" in failed.error.message and "result" in failed.error.message


def test_retry_later_keeps_the_store_and_progress(app: App) -> None:
    calls: list[dict[str, Any]] = []

    @app.job()
    def remembers(ctx: Context) -> str:
        calls.append(dict(ctx.store))
        if "asked" not in ctx.store:
            ctx.store["asked"] = True  # remember, then ask again later
            ctx.progress(1, 2)
            raise RetryLater(after=0)
        return "answered"

    p = app.submit("remembers")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.COMPLETED and done.result == "answered"
    assert calls == [{}, {"asked": True}]
    assert (done.store, done.progress_done, done.progress_total) == ({"asked": True}, 1, 2)


class Refusing:
    """A storage that refuses, as a database would (ValueRejected), every commit holding a
    process whose store says `refuse`: the encoding let it through, the database did not."""

    def __init__(self, real: Storage) -> None:
        self.real = real
        self.refusals = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _check(self, commits: list[IterationCommit]) -> None:
        if any(c.change.store.get("refuse") for c in commits):
            self.refusals += 1
            raise ValueRejected("test: the database refused a value")

    def process_commit_many(self, commits: list[IterationCommit]) -> list[str]:
        self._check(commits)
        return self.real.process_commit_many(commits)

    def process_commit_and_claim(self, commits: list[IterationCommit], claim: Any) -> Any:
        self._check(commits)
        return self.real.process_commit_and_claim(commits, claim)


def test_a_commit_the_database_refuses_fails_only_its_process(app: App) -> None:
    add_healthy_job(app)

    @app.job()
    def refused(ctx: Context) -> None:
        ctx.store["refuse"] = True

    bad = app.submit("refused")
    good = [app.submit("healthy", {"x": x}).id for x in range(30)]
    refusing = Refusing(app.storage)
    app._storage = refusing  # type: ignore[assignment]
    drain(app)
    app._storage = refusing.real
    assert refusing.refusals >= 1
    assert all(app.get(pid).status is Status.COMPLETED for pid in good)
    failed = app.get(bad.id)
    assert failed.status is Status.FAILED and failed.error is not None
    assert failed.error.type == "ValueRejected"
    assert "the database refused" in failed.error.message
    assert failed.store == {}  # nothing of the refused iteration was written
