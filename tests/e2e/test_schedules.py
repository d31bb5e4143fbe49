"""Cron schedules with real worker processes: three `corral worker`s and a schedule of one
occurrence a second, for about ten seconds. Each occurrence is submitted once (one
process per custom id) and runs once (the handler records each run), with no second
skipped; then `corral schedules` tells the last and next runs.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.backends import backend_url
from tests.e2e.conftest import Corral, wait_until

pytestmark = pytest.mark.slow

APP = """
import os

from corral import App, Context

app = App()


@app.job(cron="* * * * * *", overlap="allow")
def tick(ctx: Context, label: str = "tick") -> None:
    # One line per run, appended in one write: the process and the worker that ran it.
    with open(os.environ["RUNS_FILE"], "a") as f:
        f.write(f"{ctx.process_id} {os.getpid()} {label}\\n")
"""

#: Occurrences to wait for: about ten seconds of a schedule of one a second.
OCCURRENCES = 10


@pytest.fixture(params=["sqlite", "postgres"])
def c(request: pytest.FixtureRequest, corral: Corral, tmp_path: Path) -> Iterator[Corral]:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    corral.extra_env["RUNS_FILE"] = str(tmp_path / "runs.txt")
    with backend_url(request.param, tmp_path) as url:
        corral.url = url
        yield corral
        corral.cleanup()  # before the schema goes


def runs(c: Corral) -> list[tuple[str, int]]:
    path = Path(c.extra_env["RUNS_FILE"])
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(pid, int(worker)) for pid, worker, _ in lines]


def occurrence(custom_id: str) -> float:
    prefix = "schedule:tick:"
    assert custom_id.startswith(prefix), custom_id
    return (
        datetime.strptime(custom_id[len(prefix) :], "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=UTC)
        .timestamp()
    )


def test_three_workers_run_each_occurrence_of_a_schedule_once(c: Corral) -> None:
    workers = [c.start_worker("--concurrency", "2") for _ in range(3)]
    wait_until(
        lambda: len(runs(c)) >= OCCURRENCES,
        timeout=60,
        interval=0.2,
        what=f"{OCCURRENCES} runs of the schedule",
    )
    for w in workers:
        assert c.stop(w) == 0, c.log_of(w)

    processes = c.list("--job", "tick")
    by_id = {p["id"]: p for p in processes}
    # One process per occurrence: the custom ids are all distinct.
    custom_ids = [p["custom_id"] for p in processes]
    assert len(set(custom_ids)) == len(custom_ids) >= OCCURRENCES
    # No second skipped between the first occurrence and the last.
    seconds = sorted(occurrence(cid) for cid in custom_ids)
    assert seconds == [seconds[0] + k for k in range(len(seconds))]
    # Each process ran once, and each completed one ran: the runs are the processes.
    ran = runs(c)
    counts = Counter(pid for pid, _ in ran)
    assert counts and max(counts.values()) == 1, counts.most_common(3)
    assert set(counts) <= set(by_id)
    completed = {pid for pid, p in by_id.items() if p["status"] == "completed"}
    assert completed == set(counts)
    # Stopped gracefully: only the last occurrences, fired as the workers stopped, may be
    # left unrun (queued), never one in the middle.
    newest_first = sorted(processes, key=lambda p: occurrence(p["custom_id"]), reverse=True)
    left = [p for p in newest_first if p["id"] not in completed]
    assert all(p["status"] == "starting" for p in left), left
    assert {p["id"] for p in left} <= {p["id"] for p in newest_first[:3]}, left
    # The workers were real processes, other than this one.
    assert os.getpid() not in {worker for _, worker in ran}

    [listed] = c.json("schedules")
    last = max(processes, key=lambda p: occurrence(p["custom_id"]))
    assert (listed["job"], listed["cron"], listed["timezone"]) == ("tick", "* * * * * *", "UTC")
    assert listed["last_process_id"] == last["id"]
    assert listed["last_run_at"] == datetime.fromtimestamp(
        occurrence(last["custom_id"]), UTC
    ).isoformat(timespec="milliseconds")
    assert listed["next_run_at"] > listed["last_run_at"]
    text = c.ok("schedules")
    assert text.splitlines()[0].split() == ["job", "cron", "zone", "last", "run", "(UTC)",
                                            "next", "run", "(UTC)"]  # fmt: skip
    assert text.splitlines()[1].startswith("tick  * * * * * *  UTC")
    assert json.dumps(listed)  # plain JSON


PLAIN_APP = """
from corral import App

app = App()


@app.job()
def plain() -> None: ...
"""

BAD_APP = """
from corral import App

app = App()


@app.job(cron="0 3 * * *", timezone="Europe/Pariss")
def nightly() -> None: ...
"""


def test_schedules_needs_the_app_and_an_existing_database(corral: Corral, tmp_path: Path) -> None:
    r = corral.run("schedules", app=None)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: this command needs your jobs: pass --app FILE.py or module:attr, or set CORRAL_APP"
    )
    app = tmp_path / "plain.py"
    app.write_text(PLAIN_APP)
    r = corral.run("schedules", app=app)
    assert r.returncode == 2
    assert r.stderr.startswith("error: no database at ") and r.stderr.count("\n") == 1
    assert not corral.db.exists()  # a read: nothing created


def test_an_app_without_schedules_lists_none(corral: Corral, tmp_path: Path) -> None:
    app = tmp_path / "plain.py"
    app.write_text(PLAIN_APP)
    corral.ok("migrate", app=app)
    assert corral.ok("schedules", app=app) == "no schedules\n"
    assert corral.json("schedules", app=app) == []


def test_a_bad_schedule_is_one_line_when_the_app_loads(corral: Corral, tmp_path: Path) -> None:
    app = tmp_path / "bad.py"
    app.write_text(BAD_APP)
    r = corral.run("schedules", app=app)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert "job 'nightly': timezone 'Europe/Pariss' is not a time zone name" in r.stderr
    assert "Traceback" not in r.stderr
