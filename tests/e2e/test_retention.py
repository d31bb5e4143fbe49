"""Retention from the command line (docs/timeouts.md, "Retention"): `corral jobs` shows each
job's keep_for; a running `corral worker` deletes the completed processes of a job with
keep_for=0 on its own, and keeps the others (a job without keep_for, a failed process)
for `corral prune`; a bad keep_for is one line naming it, exit 2.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import backend_url
from tests.e2e.conftest import Corral, wait_until

APP = """
from corral import App

app = App()


@app.job(keep_for=0)
def brief(fail: bool = False) -> int:
    if fail:
        raise ValueError("no")
    return 1


@app.job(keep_for=93600)
def daily() -> None:
    return None


@app.job
def kept() -> None:
    return None
"""


@pytest.fixture(params=["sqlite", "postgres"])
def c(request: pytest.FixtureRequest, corral: Corral, tmp_path: Path) -> Iterator[Corral]:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    with backend_url(request.param, tmp_path) as url:
        corral.url = url
        yield corral
        corral.cleanup()  # before the schema goes


def gone(c: Corral, pid: str) -> bool:
    r = c.run("show", pid)
    return r.returncode != 0 and "no process" in r.stderr


def test_jobs_show_keep_for_and_a_worker_prunes_on_its_own(c: Corral) -> None:
    jobs = {j["name"]: j["keep_for"] for j in c.json("jobs")}
    assert jobs == {"brief": 0, "daily": 93600, "kept": None}
    text = " ".join(c.run("jobs", env={"COLUMNS": "200"}).stdout.split())
    assert "keeps completed processes: deleted at the workers' next sweep" in text
    assert "keeps completed processes for 1d2h after they finish" in text
    assert "keeps completed processes until `corral prune`" in text

    done = c.submit("brief")
    failed = c.submit("brief", "fail=true")
    stays = c.submit("kept")
    worker = c.start_worker("--concurrency", "1")
    wait_until(lambda: gone(c, done), timeout=30, what="the worker to delete the process")
    assert c.stop(worker) == 0, c.log_of(worker)
    assert c.show(failed)["status"] == "failed"
    assert c.show(stays)["status"] == "completed"
    # What the sweep leaves is for `corral prune`.
    assert c.json("prune", "--older-than", "0s", "--dry-run") == {
        "would_prune": 2,
        "by_job": {"brief": 1, "kept": 1},
    }
    assert c.json("prune", "--older-than", "0s") == {"pruned": 2}


def test_a_bad_keep_for_is_one_line_and_exit_2(corral: Corral, tmp_path: Path) -> None:
    app = tmp_path / "bad.py"
    app.write_text(
        "from corral import App\napp = App()\n@app.job(keep_for=-5)\ndef x() -> None: ...\n"
    )
    r: subprocess.CompletedProcess[str] = corral.run("jobs", app=app)
    assert r.returncode == 2, r.stderr
    assert "keep_for must be a number of seconds >= 0 or None, not -5" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
