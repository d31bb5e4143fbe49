"""Job definitions, parameter schemas and handler resolution. No database."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from corral import App, Context, Retry
from corral.errors import ConfigurationError, InvalidParams, UnknownJob
from corral.model import Status


def make_app() -> App:
    return App("memory://")  # never opened by these tests


def test_parameters_come_from_the_signature_after_ctx() -> None:
    app = make_app()

    @app.job()
    def add(ctx: Context, a: int, b: int = 2) -> int:
        return a + b

    job = app.get_job("add")
    assert job.parse_params({"a": "1"}).model_dump() == {"a": 1, "b": 2}
    with pytest.raises(InvalidParams, match="missing parameter 'a'"):
        job.parse_params({})
    with pytest.raises(InvalidParams, match=r"parameter 'a'.*integer"):
        job.parse_params({"a": "x"})
    with pytest.raises(InvalidParams, match="unknown parameter 'c'"):
        job.parse_params({"a": 1, "c": 3})
    with pytest.raises(InvalidParams, match="must be a mapping"):
        job.parse_params([1, 2])  # type: ignore[arg-type]


def test_a_job_without_ctx_and_a_named_one() -> None:
    app = make_app()

    @app.job("sum-it")
    def plain(a: int) -> int:
        return a

    assert "sum-it" in app.registry.jobs and "plain" not in app.registry.jobs


def test_a_pydantic_model_declares_the_parameters() -> None:
    app = make_app()

    class P(BaseModel):
        filename: str
        total: int = 10

    @app.process("p", params=P)
    class Proc:
        def step(self, ctx: Context[P]) -> bool:
            return True

    assert app.get_job("p").parse_params({"filename": "f"}).total == 10


def test_unknown_job_names_the_known_ones() -> None:
    app = make_app()

    @app.job()
    def one() -> None: ...

    with pytest.raises(UnknownJob, match=r"unknown job 'two' \(known jobs: one\)"):
        app.get_job("two")


def test_a_job_registered_twice_is_an_error() -> None:
    app = make_app()

    @app.job()
    def once() -> None: ...

    with pytest.raises(ConfigurationError, match="registered twice"):
        app.job("once")(lambda: None)


def test_var_args_cannot_be_parameters() -> None:
    with pytest.raises(ConfigurationError, match="ordinary named parameter"):
        make_app().job()(lambda *args: None)


def test_a_process_class_needs_a_forward_handler() -> None:
    with pytest.raises(ConfigurationError, match="none of start, step, finish"):

        @make_app().process("nothing")
        class Nothing:
            def rollback(self, ctx: Context) -> None: ...


# --- resolution ------------------------------------------------------------------------------


def build() -> App:
    app = make_app()

    @app.process("full")
    class Full:
        def start(self, ctx: Context) -> None: ...
        def step(self, ctx: Context) -> bool:
            return True

        def finish(self, ctx: Context) -> None: ...
        def rollback(self, ctx: Context) -> None: ...

    @app.process("bare")
    class Bare:
        def step(self, ctx: Context) -> bool:
            return True

    @app.handler(status="failing", priority=110)
    def late_cleanup(ctx: Context) -> None: ...

    @app.handler(status="failing", priority=90)
    def early_cleanup(ctx: Context) -> None: ...

    return app


def test_a_jobs_own_handler_wins_over_generic_ones() -> None:
    app = build()
    handler = app.registry.resolve(app.get_job("full"), Status.FAILING)
    assert handler is not None and handler.name.endswith("Full.rollback")


def test_generic_handlers_resolve_by_lowest_priority_number() -> None:
    app = build()
    handler = app.registry.resolve(app.get_job("bare"), Status.FAILING)
    assert handler is not None and handler.name.endswith("early_cleanup") and handler.generic


def test_two_generic_handlers_with_one_status_and_priority_are_refused() -> None:
    app = build()
    with pytest.raises(ConfigurationError, match="unambiguous"):
        app.handler(status="failing", priority=90)(lambda ctx: None)


def test_generic_handlers_only_for_statuses_that_run_handlers() -> None:
    with pytest.raises(ConfigurationError):
        make_app().handler(status="completed")(lambda ctx: None)
    with pytest.raises(ConfigurationError, match="unknown status"):
        make_app().handler(status="nope")


def test_missing_phases_are_skipped_forward() -> None:
    app = build()
    bare, full = app.get_job("bare"), app.get_job("full")
    assert app.registry.next_forward(bare, Status.STARTING) is Status.RUNNING
    assert app.registry.next_forward(bare, Status.RUNNING) is Status.COMPLETED
    assert app.registry.next_forward(full, Status.RUNNING) is Status.ENDING


def test_the_jobs_table_shows_which_handler_runs_per_status() -> None:
    rows: dict[str, Any] = {name: hs for name, _, hs in build().registry.table()}
    assert rows["bare"][Status.STARTING] == "-"
    assert rows["bare"][Status.RUNNING].endswith("Bare.step")
    assert rows["bare"][Status.FAILING] == "early_cleanup (generic, order 90)"
    assert rows["full"][Status.FAILING].endswith("Full.rollback")


# --- retry policy ----------------------------------------------------------------------------


def test_retry_policy_validates_and_chooses_errors() -> None:
    with pytest.raises(ConfigurationError):
        Retry(attempts=0)
    policy = Retry(attempts=2, backoff=1, jitter=0, on=(TimeoutError,))
    assert policy.retries(TimeoutError()) and not policy.retries(ValueError())
    assert policy.delay(1) == 1 and policy.delay(2) == 2


def test_only_errors_of_a_policy_are_retried() -> None:
    app = make_app()

    @app.job(retry=Retry(attempts=3, backoff=2, jitter=0, on=(KeyError,)))
    def flaky() -> None: ...

    @app.job()
    def plain() -> None: ...

    flaky_job, plain_job = app.get_job("flaky"), app.get_job("plain")
    assert flaky_job.retries(KeyError()) and not flaky_job.retries(ValueError())
    assert not plain_job.retries(KeyError())
    backoff = app.registry.policy(flaky_job).backoff
    assert backoff is not None and backoff(1) == 2
    assert app.registry.policy(plain_job).backoff is None
    assert plain_job.max_attempts == 3


def test_a_generic_handlers_order_is_its_old_priority() -> None:
    app = make_app()

    @app.handler(status="failing", order=5)
    def first(ctx: Context) -> None: ...

    @app.handler(status="failing", priority=7)
    def second(ctx: Context) -> None: ...

    assert [h.priority for h in app.registry.generic[Status.FAILING]] == [5, 7]
    with pytest.raises(ConfigurationError, match="once"):
        app.handler(status="running", order=1, priority=2)


def test_keep_for_is_kept_as_seconds_and_none_by_default() -> None:
    app = make_app()

    @app.job(keep_for=0)
    def now() -> None: ...

    @app.process(keep_for=3600)
    class Later:
        def start(self, ctx: Context) -> None: ...

    @app.job
    def never() -> None: ...

    assert app.get_job("now").keep_for == 0.0
    assert app.get_job("Later").keep_for == 3600.0
    assert app.get_job("never").keep_for is None


DURATIONS = [
    (0, "0s"),
    (45, "45s"),
    (5400, "1h30m"),
    (93600, "1d2h"),
    (7_776_000, "90d"),
    (0.5, "0.5s"),
]


@pytest.mark.parametrize("seconds, text", DURATIONS)
def test_corral_jobs_shows_keep_for_as_prune_reads_durations(seconds: float, text: str) -> None:
    from corral.cli import duration, format_duration

    assert format_duration(seconds) == text
    assert duration(text) == seconds
