"""Concurrency keys through the App (docs/flow-control.md): declarations checked when a job
is declared, keys computed at submit (the job's name, a parameter's value, a function's),
bad keys refused with nothing written, `explain` naming the holders of a full key, and a
worker that never runs more than a key allows."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from corral import App, Context, Status
from corral.errors import ConfigurationError, InvalidParams, UsageError
from corral.storage.base import Claim
from tests.integration.common import drain


def key_of(app: App, pid: str) -> tuple[str, int] | None:
    slots = app.storage.process_concurrency(pid, app.clock())
    return None if slots is None else (slots.key, slots.limit)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an integer >= 1, not 0"),
        ({"concurrency": -3}, "concurrency must be an integer >= 1, not -3"),
        ({"concurrency": 2.5}, "concurrency must be an integer >= 1, not 2.5"),
        ({"concurrency": True}, "concurrency must be an integer >= 1, not True"),
        ({"concurrency": 2**31}, "concurrency must be below 2**31"),
        ({"concurrency_key": "customer"}, "concurrency_key needs concurrency=N"),
        (
            {"concurrency": 2, "concurrency_key": "client"},
            "concurrency_key 'client' names no parameter of the job (its parameters: amount, "
            "customer)",
        ),
        ({"concurrency": 2, "concurrency_key": 7}, "concurrency_key must be a parameter's name"),
    ],
)
def test_bad_declarations_are_one_line_errors_and_register_nothing(
    options: dict[str, Any], message: str
) -> None:
    app = App("memory://")
    with pytest.raises(ConfigurationError) as err:

        @app.job(**options)
        def charge(ctx: Context, customer: str, amount: int) -> None: ...

    assert message in str(err.value) and "\n" not in str(err.value)
    assert "charge" not in app.registry.jobs
    with pytest.raises(ConfigurationError):

        @app.process(**options)
        class Charge:
            def start(self, ctx: Context) -> None: ...

    assert "Charge" not in app.registry.jobs


def test_the_key_is_the_job_a_parameter_or_a_function(app: App) -> None:
    @app.job(concurrency=3)
    def whole(ctx: Context, customer: str) -> None: ...

    @app.job(concurrency=2, concurrency_key="customer")
    def by_customer(ctx: Context, customer: Any) -> None: ...

    @app.job(concurrency=1, concurrency_key=lambda p: f"api:{p.customer.lower()}")
    def by_function(ctx: Context, customer: str) -> None: ...

    @app.job()
    def unlimited(ctx: Context, customer: str) -> None: ...

    assert key_of(app, app.submit("whole", {"customer": "Acme"}).id) == ("whole", 3)
    assert key_of(app, app.submit("by_customer", {"customer": "Acme"}).id) == (
        "by_customer:Acme",
        2,
    )
    # A value that is not a string: its JSON, keys sorted.
    assert key_of(app, app.submit("by_customer", {"customer": 42}).id) == ("by_customer:42", 2)
    nested = app.submit("by_customer", {"customer": {"b": 1, "a": [None]}}).id
    assert key_of(app, nested) == ('by_customer:{"a":[null],"b":1}', 2)
    # A function's key is its string, as is: two jobs may share one.
    assert key_of(app, app.submit("by_function", {"customer": "ACME"}).id) == ("api:acme", 1)
    assert key_of(app, app.submit("unlimited", {"customer": "Acme"}).id) is None


def two_lines(params: object) -> str:
    raise ValueError("first line\nsecond line")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (lambda p: 1 / 0, "its concurrency_key function raised ZeroDivisionError: division by"),
        (two_lines, "its concurrency_key function raised ValueError: first line"),
        (lambda p: next(iter([])), "its concurrency_key function raised StopIteration"),
        (lambda p: None, "its concurrency_key function must return a non-empty string, not None"),
        (lambda p: "", "its concurrency_key function must return a non-empty string, not ''"),
        (lambda p: "a\x00b", "its concurrency key holds a NUL character"),
    ],
)
def test_a_bad_key_at_submit_is_one_line_and_writes_nothing(
    app: App, key: Any, message: str
) -> None:
    @app.job(concurrency=1, concurrency_key=key)
    def charge(ctx: Context, customer: str) -> None: ...

    for submit in (
        lambda: app.submit("charge", {"customer": "acme"}),
        lambda: app.submit_many("charge", [{"customer": "ok"}, {"customer": "acme"}]),
    ):
        with pytest.raises(UsageError) as err:
            submit()
        assert message in str(err.value) and "\n" not in str(err.value)
    assert app.count() == 0


def test_a_key_too_long_to_index_is_refused(app: App) -> None:
    @app.job(concurrency=1, concurrency_key="document")
    def index(ctx: Context, document: str) -> None: ...

    long_enough = "é" * 505  # "index:" and 1,010 bytes: 1,016 of the 1,024 allowed
    assert key_of(app, app.submit("index", {"document": long_enough}).id) is not None
    with pytest.raises(InvalidParams, match="its concurrency key is 1030 bytes, over the limit"):
        app.submit("index", {"document": "é" * 512})
    assert app.count() == 1


def test_a_bad_parameter_is_refused_before_the_key_function_runs(app: App) -> None:
    seen: list[Any] = []

    @app.job(concurrency=1, concurrency_key=lambda p: seen.append(p) or "k")
    def charge(ctx: Context, customer: str) -> None: ...

    with pytest.raises(InvalidParams, match="parameter 'customer'"):
        app.submit("charge", {"customer": ["not", "text"]})
    assert seen == [] and app.count() == 0


def test_submit_many_and_custom_ids_keep_the_keys(app: App) -> None:
    @app.job(concurrency=1, concurrency_key="customer")
    def charge(ctx: Context, customer: str) -> None: ...

    many = app.submit_many("charge", [{"customer": c} for c in "abab"])
    assert [key_of(app, s.id) for s in many] == [(f"charge:{c}", 1) for c in "abab"]
    first = app.submit("charge", {"customer": "c"}, custom_id="order-1")
    again = app.submit("charge", {"customer": "c"}, custom_id="order-1")
    assert again.outcome == "existing" and again.id == first.id
    claimed = app.storage.process_claim(Claim("w", app.clock(), 30, limit=10))
    assert sorted(c.process.params["customer"] for c in claimed) == ["a", "b", "c"]


def test_explain_names_the_holders_of_a_full_key(app: App) -> None:
    @app.job(concurrency=2, concurrency_key="customer")
    def charge(ctx: Context, customer: str) -> None: ...

    ids = [app.submit("charge", {"customer": "acme"}).id for _ in range(3)]
    other = app.submit("charge", {"customer": "other"}).id
    now = app.clock()
    app.storage.process_claim(Claim("w1", now, 30, limit=1))
    app.storage.process_claim(Claim("w2", now, 30, limit=1))
    reasons = {r.code: r.message for r in app.explain(ids[2])}
    assert "concurrency_full" in reasons
    message = reasons["concurrency_full"]
    assert message.startswith("its concurrency key 'charge:acme' is full (2 of 2): held by ")
    assert f"{ids[0]} (worker w1, lease until " in message
    assert f"{ids[1]} (worker w2, lease until " in message
    assert "concurrency_full" not in {r.code for r in app.explain(other)}


def test_a_worker_never_runs_more_of_a_key_than_its_limit(app: App) -> None:
    """Eight slots, three keys of limit 2 and twelve processes each: the handlers count
    who runs at once, per key, and the most ever seen is the limit."""
    lock = threading.Lock()
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    ran: Counter[str] = Counter()
    release = threading.Event()

    @app.job(concurrency=2, concurrency_key="customer")
    def charge(ctx: Context, customer: str) -> None:
        with lock:
            running[customer] += 1
            most[customer] = max(most[customer], running[customer])
            ran[customer] += 1
            if sum(running.values()) >= 6:
                release.set()
        # Hold the slot until every key is full at least once (or a while), so that the
        # worker's free slots meet full keys.
        release.wait(timeout=0.2)
        with lock:
            running[customer] -= 1

    app.submit_many("charge", [{"customer": f"c{i % 3}"} for i in range(36)])
    drain(app, concurrency=8)
    assert ran == Counter({"c0": 12, "c1": 12, "c2": 12})
    assert most == Counter({"c0": 2, "c1": 2, "c2": 2})
    assert app.count(status=Status.COMPLETED) == 36
