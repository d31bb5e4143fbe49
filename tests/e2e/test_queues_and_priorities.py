"""Queues and priorities with real worker processes: a worker serves only the queues it is
given (`--queue a --queue b`), a job's queue and a submit's `--queue` both place a process,
and inside one claim class a higher priority runs first (then the older run_at)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Corral

APP = """
from pathlib import Path

from corral import App, Context

app = App()


@app.job()
def note(ctx: Context, path: str, label: str) -> None:
    with open(path, "a") as f:
        f.write(label + "\\n")


@app.job(queue="reports", priority=5)
def report(ctx: Context, path: str, label: str) -> None:
    with open(path, "a") as f:
        f.write(label + "\\n")
"""


@pytest.fixture
def c(corral: Corral, tmp_path: Path) -> Corral:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    return corral


def ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_higher_priority_runs_first_and_equal_ones_in_submit_order(
    c: Corral, tmp_path: Path
) -> None:
    out = tmp_path / "order.txt"
    # Submitted lowest first; one slot, so the order of claims is the order of runs.
    for label, priority in [("p0-a", 0), ("p1", 1), ("p0-b", 0), ("p9", 9), ("p-3", -3)]:
        c.submit("note", f"path={out}", f"label={label}", priority=str(priority))
    c.ok("worker", "--once", "--concurrency", "1")
    assert ran(out) == ["p9", "p1", "p0-a", "p0-b", "p-3"]


def test_a_job_priority_is_the_default_and_a_submit_overrides_it(c: Corral, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    c.submit("report", f"path={out}", "label=job-default-5")
    c.submit("report", f"path={out}", "label=submit-7", priority="7")
    c.submit("report", f"path={out}", "label=submit-1", priority="1")
    c.ok("worker", "--once", "--concurrency", "1", "--queue", "reports")
    assert ran(out) == ["submit-7", "job-default-5", "submit-1"]


def test_workers_claim_only_from_their_queues(c: Corral, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    c.submit("note", f"path={out}", "label=default-queue")
    c.submit("report", f"path={out}", "label=reports-queue")  # the job's own queue
    c.submit("note", f"path={out}", "label=urgent-queue", queue="urgent")  # the submit's
    c.ok("worker", "--once", "--queue", "urgent", "--queue", "reports")
    assert sorted(ran(out)) == ["reports-queue", "urgent-queue"]
    queued = {p["queue"]: p["status"] for p in c.list()}
    assert queued == {"default": "starting", "reports": "completed", "urgent": "completed"}
    c.ok("worker", "--once", "--queue", "default")
    assert sorted(ran(out)) == ["default-queue", "reports-queue", "urgent-queue"]
