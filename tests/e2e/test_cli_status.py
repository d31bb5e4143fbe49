"""Honest statuses: what `list` and `show` say a process is doing (queued, scheduled for T,
retrying at T), what `show` tells about it (queue, priority, tags, run at, the lease while
one runs, the attempts it took), and one rule for time: UTC everywhere, said everywhere."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Corral, wait_until

APP = """
import time
from pathlib import Path

from corral import App, Context, Retry, RetryLater

app = App(lease_seconds=30)


@app.job()
def add(ctx: Context, a: int) -> int:
    return a + 1


@app.job()
def patient(ctx: Context) -> None:
    raise RetryLater(after=3600, reason="the bank is closed")


@app.job(retry=Retry(attempts=3, backoff=3600, jitter=0))
def slow_retry(ctx: Context) -> None:
    raise RuntimeError("down for now")


@app.job(retry=Retry(attempts=3, backoff=0, jitter=0))
def third_time(ctx: Context, marker: str) -> str:
    tries = Path(marker)
    tries.write_text(tries.read_text() + "x" if tries.exists() else "x")
    if len(tries.read_text()) < 3:
        raise RuntimeError("not yet")
    return "lucky"


@app.job()
def hold(ctx: Context, gate: str) -> str:
    while not Path(gate).exists():
        ctx.heartbeat()
        time.sleep(0.05)
    return "released"
"""

WIDE = {"COLUMNS": "250"}


@pytest.fixture
def status_corral(corral: Corral, tmp_path: Path) -> Corral:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    return corral


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def shown(corral: Corral, pid: str) -> str:
    r = corral.run("show", pid, env=WIDE)
    assert r.returncode == 0, r.stderr
    return " ".join(r.stdout.split())


def listed(corral: Corral) -> dict[str, str]:
    """`list` in words: id -> its row (the row shows a short id: the start of the id)."""
    r = corral.run("list", env=WIDE)
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0]
    assert "status (UTC)" in header and "created (UTC)" in header, header
    rows = {line.split()[0]: " ".join(line.split()) for line in r.stdout.splitlines()[1:]}
    return {
        pid: row
        for short, row in rows.items()
        for pid in [p["id"] for p in corral.list() if p["id"].startswith(short)]
    }


def test_queued_scheduled_and_retrying(status_corral: Corral) -> None:
    c = status_corral
    queued = c.submit("add", "a=1")
    scheduled = c.submit("add", "a=2", run_at="+1h30m")
    later = c.submit("patient")
    backoff = c.submit("slow_retry")

    before = {p["id"]: p for p in c.list()}
    assert before[queued]["state"] == "queued"
    assert before[later]["state"] == "queued"
    assert before[scheduled]["state"] == "scheduled"
    for p in before.values():
        assert p["status"] == "starting", "the stored status changed"

    c.ok("worker", "--once")
    after = {p["id"]: p for p in c.list()}
    assert after[queued]["state"] == "completed"
    assert after[scheduled]["state"] == "scheduled"
    for pid in (later, backoff):
        p = after[pid]
        assert p["state"] == "retrying", p
        assert p["status"] == "starting", "the stored status changed"
        assert p["state_until"] == p["run_at"]
        # RetryLater(after=3600); a backoff of 3600 s capped by Retry's max_delay, 300 s.
        assert parse_iso(p["run_at"]) >= parse_iso(p["updated_at"]) + timedelta(minutes=4)

    rows = listed(c)
    assert "queued" not in rows[queued] and "completed" in rows[queued]
    expected_words = {scheduled: "scheduled for", later: "retrying at", backoff: "retrying at"}
    for pid, words in expected_words.items():
        p = after[pid]
        # A table's cell says month, day and time under a header that names the zone; `show`
        # says the whole time, zone included.
        cell = parse_iso(p["run_at"]).strftime("%m-%d %H:%M:%S")
        assert f"{words} {cell}" in rows[pid], rows[pid]
        expected = parse_iso(p["run_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert f"status {words} {expected}" in shown(c, pid)


def test_show_tells_queue_priority_tags_lease_and_attempts(
    status_corral: Corral, tmp_path: Path
) -> None:
    c = status_corral
    gate = tmp_path / "gate"
    held = c.submit("hold", f"gate={gate}", priority="7", queue="slow", tag="team=data")
    text = shown(c, held)
    assert "status queued" in text
    assert "queue slow" in text
    assert "priority 7 (higher runs first)" in text
    assert "tags team=data" in text
    assert re.search(r"run at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), text

    worker = c.start_worker()
    running = wait_until(
        lambda: (p := c.show(held))["lease_owner"] and p, timeout=60, what="the lease"
    )
    text = shown(c, held)
    expires = parse_iso(running["lease_expires_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"lease held by {running['lease_owner']} until {expires}" in text, text
    assert running["lease_owner"].split(":")[1] == str(worker.pid)
    gate.write_text("open")
    done = c.wait_status(held, "completed", timeout=60)
    assert c.stop(worker) == 0
    assert done["lease_owner"] is None
    assert done["attempts"] == 1
    text = shown(c, held)
    assert "lease" not in text.split("params")[0]
    assert "attempts 1 (the most tries one iteration took)" in text

    lucky = c.submit("third_time", f"marker={tmp_path / 'tries'}")
    c.ok("worker", "--once")
    p = c.show(lucky)
    assert (p["status"], p["result"], p["attempts"]) == ("completed", "lucky", 3)
    assert "attempts 3 (the most tries one iteration took)" in shown(c, lucky)


#: --run-at as typed -> run_at as stored (UTC): a time without a zone is UTC.
TIMES = {
    "2030-01-31T09:00": "2030-01-31T09:00:00",
    "2030-01-31 09:00:00": "2030-01-31T09:00:00",
    "2030-01-31 09:00:00 UTC": "2030-01-31T09:00:00",  # as displays print it
    "2030-01-31T09:00Z": "2030-01-31T09:00:00",
    "2030-01-31T09:00+02:00": "2030-01-31T07:00:00",
}
#: --run-at as typed -> its delay in seconds.
DELAYS = {
    "+1h30m": 5400,
    "1h30m": 5400,
    "+90s": 90,
    "90s": 90,
    "2d": 172800,
    "+1d12h": 129600,
    "+1h 30m": 5400,
    "+600": 600,
}


def test_a_run_at_without_a_zone_is_utc_like_every_display(status_corral: Corral) -> None:
    c = status_corral
    # Whatever the machine's zone: a time without one means UTC, as displays show.
    c.extra_env["TZ"] = "America/New_York"
    ids = {c.submit("add", "a=1", run_at=typed): stored for typed, stored in TIMES.items()}
    processes = {p["id"]: p for p in c.list()}
    rows = listed(c)
    for pid, stored in ids.items():
        assert processes[pid]["run_at"] == f"{stored}.000+00:00"
        day, time = stored.split("T")
        # Another year than this one: a table's cell gives the date whole, to the minute.
        assert f"scheduled for {day} {time[:5]}" in rows[pid], rows[pid]


def test_a_run_at_delay(status_corral: Corral) -> None:
    c = status_corral
    ids = {c.submit("add", "a=1", run_at=typed): (typed, s) for typed, s in DELAYS.items()}
    for p in c.list():
        typed, seconds = ids[p["id"]]
        delay = (parse_iso(p["run_at"]) - parse_iso(p["created_at"])).total_seconds()
        # run_at is the database's now at submit plus the delay; created_at, its now at insert.
        assert seconds - 60 < delay <= seconds, (typed, delay)
        assert p["state"] == "scheduled"
    for bad in ("+soon", "1x", "+", "tomorrow"):
        r = c.run("submit", "add", "-p", "a=1", "--run-at", bad)
        assert r.returncode == 2 and "--run-at" in r.stderr, (bad, r.stderr)


def test_every_display_marks_its_zone(status_corral: Corral) -> None:
    c = status_corral
    pid = c.submit("add", "a=1")
    r = c.run("list", env=WIDE)
    assert "created (UTC)" in r.stdout.splitlines()[0], r.stdout
    text = shown(c, pid)
    for label in ("run at", "created", "updated"):
        assert re.search(rf"{label} \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), (label, text)
    assert "at (UTC)" in text  # the history's column
    p: dict[str, Any] = c.show(pid)
    for key in ("run_at", "created_at", "updated_at"):
        assert p[key].endswith("+00:00"), p[key]
    help_text = " ".join(c.ok("submit", "--help", app=None).split())
    assert "UTC unless it names a zone" in help_text, help_text
    assert "+1h30m" in help_text
