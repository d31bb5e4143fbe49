"""Cron schedules declared on jobs and processes: the options, and every mistake refused
at declaration as one ConfigurationError line naming the job, with nothing registered.
No database."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from corral import App, Context
from corral.errors import ConfigurationError
from corral.schedules import Missed, Overlap, Schedule


def make_app() -> App:
    return App("memory://")  # never opened by these tests


def test_a_job_declares_its_schedule_with_the_defaults_of_the_issue() -> None:
    app = make_app()

    @app.job(cron="0 3 * * *")
    def nightly(ctx: Context, size: int = 10) -> None: ...

    assert app.get_job("nightly").schedule == Schedule(
        job="nightly", cron="0 3 * * *", timezone="UTC", missed=Missed.SKIP,
        overlap=Overlap.SKIP,
    )  # fmt: skip


def test_every_option_is_kept_on_jobs_and_processes() -> None:
    app = make_app()

    @app.job(cron="*/5 * * * * 30", timezone="Europe/Paris", missed="catch_up",
             catch_up_limit=3, overlap="allow")  # fmt: skip
    def tick() -> None: ...

    class Params(BaseModel):
        region: str = "eu"

    @app.process(cron="@daily", params=Params, timezone="America/New_York")
    class Report:
        def start(self, ctx: Context[Any]) -> None: ...

    tick_schedule = app.get_job("tick").schedule
    assert tick_schedule is not None
    assert (tick_schedule.cron, tick_schedule.timezone, tick_schedule.missed,
            tick_schedule.late_limit, tick_schedule.overlap) == (
        "*/5 * * * * 30", "Europe/Paris", Missed.CATCH_UP, 3, Overlap.ALLOW)  # fmt: skip
    report = app.get_job("Report").schedule
    assert report is not None and (report.cron, report.timezone) == ("@daily", "America/New_York")


def test_a_job_without_cron_has_no_schedule() -> None:
    app = make_app()

    @app.job()
    def plain(a: int) -> None: ...

    assert app.get_job("plain").schedule is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, r"job 'j': cron '61 \* \* \* \*' is not a valid cron"),
        ({"cron": "* * *"}, r"job 'j': cron '\* \* \*' has 3 fields"),
        ({"cron": "H * * * *"}, "job 'j': cron 'H .*': the H and R forms are not supported"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"},
         "job 'j': timezone 'Mars/Olympus' is not a time zone name"),
        ({"cron": "0 3 * * *", "missed": "later"},
         "job 'j': missed must be 'skip' or 'catch_up', not 'later'"),
        ({"cron": "0 3 * * *", "overlap": "queue"},
         "job 'j': overlap must be 'skip' or 'allow', not 'queue'"),
        ({"cron": "0 3 * * *", "missed": "catch_up", "catch_up_limit": 0},
         "job 'j': catch_up_limit must be an integer >= 1, not 0"),
        ({"cron": "0 3 * * *", "catch_up_limit": 5},
         "job 'j': catch_up_limit applies to missed='catch_up' only"),
        ({"timezone": "Europe/Paris"}, "job 'j': timezone= applies to a cron schedule; give cron="),
        ({"overlap": "allow"}, "job 'j': overlap= applies to a cron schedule"),
        ({"cron": 5}, "job 'j': cron must be a cron expression, not 5"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_one_line_naming_the_job_and_nothing_is_registered(
    options: dict[str, Any], message: str
) -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match=message) as caught:
        app.job("j", **options)(lambda: None)
    assert "\n" not in str(caught.value)
    assert app.registry.jobs == {}


def test_a_job_whose_parameters_have_no_defaults_cannot_have_a_schedule() -> None:
    app = make_app()
    with pytest.raises(
        ConfigurationError,
        match=r"job 'send': a cron schedule submits it with its default parameters, and they "
        r"do not do \(missing parameter 'to'\): give every parameter a default",
    ):

        @app.job(cron="0 3 * * *")
        def send(ctx: Context, to: str, subject: str = "hi") -> None: ...

    class Needs(BaseModel):
        region: str

    with pytest.raises(ConfigurationError, match="missing parameter 'region'"):

        @app.process(cron="0 3 * * *", params=Needs)
        class Report:
            def start(self, ctx: Context[Any]) -> None: ...

    assert app.registry.jobs == {}


def test_a_job_name_too_long_for_its_occurrence_ids_is_refused() -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match="characters long, at most"):
        app.job("x" * 300, cron="0 3 * * *")(lambda: None)
