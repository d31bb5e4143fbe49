"""Every public entry point of the Python API, given bad input: a clear error naming the
problem, and nothing written. (The command line's side is in tests/e2e/test_cli_errors.py.)"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import App, Retry, UsageError, Worker, WorkerOptions
from corral.errors import (
    ConfigurationError,
    CustomIdConflict,
    IllegalTransition,
    InvalidId,
    InvalidParams,
    ProcessNotFound,
    StorageError,
    StorageUnavailable,
    UnknownJob,
)
from tests.backends import backend_url

UNKNOWN = "3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a"


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, max_params_bytes=1000)

        @a.job()
        def add(a: int, b: int) -> int:
            return a + b

        @a.job()
        def anything(x: Any = None) -> None: ...

        @a.job()
        def ratio(r: float) -> None: ...

        yield a
        a.close()


def nothing_written(app: App) -> None:
    assert app.list() == []


SUBMITS: list[tuple[str, type[Exception], str, Any, dict[str, Any]]] = [
    ("unknown job", UnknownJob, "nope", {}, {}),
    ("job not a string", UnknownJob, 42, {}, {}),
    ("wrong type", InvalidParams, "add", {"a": "one", "b": 2}, {}),
    ("missing", InvalidParams, "add", {"a": 1}, {}),
    ("unknown parameter", InvalidParams, "add", {"a": 1, "b": 2, "c": 3}, {}),
    ("not a mapping", InvalidParams, "add", [1, 2], {}),
    ("not JSON", InvalidParams, "anything", {"x": object()}, {}),
    ("over the size limit", InvalidParams, "anything", {"x": "x" * 2000}, {}),
    ("empty custom id", UsageError, "add", {"a": 1, "b": 2}, {"custom_id": ""}),
    ("custom id not a string", UsageError, "add", {"a": 1, "b": 2}, {"custom_id": 7}),
    ("priority not an int", UsageError, "add", {"a": 1, "b": 2}, {"priority": "high"}),
    ("queue *", UsageError, "add", {"a": 1, "b": 2}, {"queue": "*"}),
    ("tags not strings", UsageError, "add", {"a": 1, "b": 2}, {"tags": {"a": 1}}),
    ("run_at words", UsageError, "add", {"a": 1, "b": 2}, {"run_at": "tomorrow"}),
    ("zero timeout", UsageError, "add", {"a": 1, "b": 2}, {"start_to_close": 0}),
    ("negative timeout", UsageError, "add", {"a": 1, "b": 2}, {"heartbeat_timeout": -5}),
    ("timeout as text", UsageError, "add", {"a": 1, "b": 2}, {"process_timeout": "10"}),
]

OK = {"a": 1, "b": 2}
SURROGATE = "file-\udcff"  # os.fsdecode of b"file-\xff"
#: Input that one backend or the other could not store: refused before anything is
#: written, with the same message on every backend (each case names what it must say).
UNSTORABLE: list[tuple[str, type[Exception], str, Any, dict[str, Any], str]] = [
    ("priority past 32 bits", UsageError, "add", OK, {"priority": 2**31}, "between"),
    ("priority under 32 bits", UsageError, "add", OK, {"priority": -(2**31) - 1}, "between"),
    ("run_at NaN", UsageError, "add", OK, {"run_at": math.nan}, "finite"),
    ("run_at infinite", UsageError, "add", OK, {"run_at": math.inf}, "finite"),
    ("timeout infinite", UsageError, "add", OK, {"start_to_close": math.inf}, "start_to_close"),
    ("timeout NaN", UsageError, "add", OK, {"schedule_to_close": math.nan}, "schedule_to_close"),
    ("custom id NUL", UsageError, "add", OK, {"custom_id": "a\x00b"}, "custom_id holds a NUL"),
    ("custom id surrogate", UsageError, "add", OK, {"custom_id": SURROGATE}, "lone surrogate"),
    ("queue NUL", UsageError, "add", OK, {"queue": "q\x00"}, "queue holds a NUL"),
    ("tag key surrogate", UsageError, "add", OK, {"tags": {SURROGATE: "v"}}, "lone surrogate"),
    ("tag value NUL", UsageError, "add", OK, {"tags": {"k": "\x00"}}, "holds a NUL"),
    ("client id NUL", UsageError, "add", OK, {"client_id": "\x00"}, "client_id holds a NUL"),
    ("param NUL", InvalidParams, "anything", {"x": "a\x00"}, {}, "params.x: holds a NUL"),
    ("param surrogate", InvalidParams, "anything", {"x": [SURROGATE]}, {}, "params.x[0]"),
    ("param NaN", InvalidParams, "ratio", {"r": math.nan}, {}, "params.r: nan is not a finite"),
    ("param infinite", InvalidParams, "ratio", {"r": -math.inf}, {}, "not a finite number"),
    (
        "param nested 150 deep",
        InvalidParams,
        "anything",
        {"x": eval("[" * 150 + "]" * 150)},
        {},
        "nested more than 100 levels",
    ),
    (
        "param integer past the digit limit",
        InvalidParams,
        "anything",
        {"x": 10**5000},
        {},
        "4300 digits",
    ),
]


@pytest.mark.parametrize(
    ("what", "error", "job", "params", "kw", "message"),
    UNSTORABLE,
    ids=[s[0] for s in UNSTORABLE],
)
def test_submit_refuses_what_a_backend_could_not_store(
    app: App,
    what: str,
    error: type[Exception],
    job: Any,
    params: Any,
    kw: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(error) as raised:
        app.submit(job, params, **kw)
    text = str(raised.value)
    assert message in text and "\n" not in text, text
    nothing_written(app)


@pytest.mark.parametrize(
    ("what", "error", "job", "params", "kw"), SUBMITS, ids=[s[0] for s in SUBMITS]
)
def test_submit_refuses_bad_input_and_writes_nothing(
    app: App, what: str, error: type[Exception], job: Any, params: Any, kw: dict[str, Any]
) -> None:
    with pytest.raises(error) as raised:
        app.submit(job, params, **kw)
    assert str(raised.value) and "\n" not in str(raised.value)
    nothing_written(app)


def test_submit_many_writes_nothing_when_one_is_bad(app: App) -> None:
    with pytest.raises(InvalidParams, match="parameter 'a'"):
        app.submit_many("add", [{"a": 1, "b": 2}, {"a": "x", "b": 2}])
    nothing_written(app)


def test_a_custom_id_conflict_writes_nothing(app: App) -> None:
    first = app.submit("add", {"a": 1, "b": 2}, custom_id="k")
    with pytest.raises(CustomIdConflict, match="custom id 'k'"):
        app.submit("add", {"a": 2, "b": 2}, custom_id="k")
    assert [p.id for p in app.list()] == [first.id]


ID_TAKERS: list[tuple[str, Callable[[App, Any], object]]] = [
    ("get", lambda a, i: a.get(i)),
    ("history", lambda a, i: a.history(i)),
    ("wait", lambda a, i: a.wait(i, timeout=0)),
    ("cancel", lambda a, i: a.cancel(i)),
    ("retry", lambda a, i: a.retry(i)),
]


@pytest.mark.parametrize(("name", "call"), ID_TAKERS, ids=[t[0] for t in ID_TAKERS])
@pytest.mark.parametrize("bad", ["42", "", "3f2b1c9e-8d4a", None, 12])
def test_malformed_ids_are_refused(
    app: App, name: str, call: Callable[[App, Any], object], bad: Any
) -> None:
    with pytest.raises(InvalidId, match="not a process id"):
        call(app, bad)


@pytest.mark.parametrize(("name", "call"), ID_TAKERS, ids=[t[0] for t in ID_TAKERS])
def test_unknown_ids_are_refused(app: App, name: str, call: Callable[[App, Any], object]) -> None:
    with pytest.raises(ProcessNotFound, match=UNKNOWN):
        call(app, UNKNOWN)


def test_commands_refuse_what_the_rules_do_not_allow(app: App) -> None:
    p = app.submit("add", {"a": 1, "b": 2})
    with pytest.raises(IllegalTransition, match="only a failed or canceled process"):
        app.retry(p.id)
    app.cancel(p.id)
    with pytest.raises(IllegalTransition, match="already canceled"):
        app.cancel(p.id)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.list(status="done"), "unknown status"),
        (lambda a: a.list(limit=0), "limit must be"),
        (lambda a: a.list(limit="10"), "limit must be"),
        (lambda a: a.list(job=3), "job must be"),
        (lambda a: a.list(tags={"t": 1}), "tags must be"),
        (lambda a: a.wait(UNKNOWN, timeout=-1), "timeout must be"),
        (lambda a: a.prune(older_than=-1), "older_than must be"),
        (lambda a: a.prune(older_than="90d"), "older_than must be"),
        (lambda a: a.pause(queue=""), "queue"),
        (lambda a: a.resume(queue=None), "queue"),
    ],
)
def test_reading_and_operating_refuse_bad_arguments(
    app: App, call: Callable[[App], object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        call(app)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (WorkerOptions(concurrency=0), "concurrency"),
        (WorkerOptions(concurrency=2.5), "concurrency"),  # type: ignore[arg-type]
        (WorkerOptions(max_time=0), "max_time"),
        (WorkerOptions(max_memory_mb=-1), "max_memory_mb"),
        (WorkerOptions(poll_interval=0), "poll_interval"),
    ],
)
def test_a_worker_refuses_bad_options(app: App, options: WorkerOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Worker(app, options)


def test_declarations_refuse_bad_policies() -> None:
    app = App("memory://")
    with pytest.raises(ConfigurationError, match="attempts"):
        app.job(retry=Retry(attempts=0))(lambda: None)
    with pytest.raises(ConfigurationError, match="process_timeout"):
        app.job(process_timeout=-1)(lambda: None)
    with pytest.raises(ConfigurationError, match="lease_seconds"):
        App("memory://", lease_seconds=0)


# A bad URL is the caller's mistake; a file that cannot be used is a permanent storage
# error; an unreachable server a transient one.
@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("nope", UsageError),
        ("foo://x", UsageError),
        ("sqlite://", UsageError),
        ("sqlite:////nonexistent-dir/x.db", StorageError),
        ("postgresql://nobody@127.0.0.1:1/x", StorageUnavailable),
    ],
)
def test_unusable_databases_are_one_clear_error(url: str, error: type[Exception]) -> None:
    app = App(url)
    app.job()(lambda: None)
    with pytest.raises(error) as raised:
        app.list()
    assert "\n" not in str(raised.value)


def test_parameters_nested_100_000_deep_are_one_clear_error(app: App) -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(InvalidParams, match="nested"):
        app.submit("anything", {"x": deep})
    nothing_written(app)
