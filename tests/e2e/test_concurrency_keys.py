"""Concurrency keys with real worker processes (docs/flow-control.md), on SQLite and
PostgreSQL: three workers never run more processes of a key at once than its limit; a
worker frozen with SIGSTOP while it holds a slot blocks that key only until its lease
expires; 1,000 processes over 10 keys drain with no key starved.

The job appends a line to a log file as each run starts and another as it ends (one
`write` of a short line to a file opened for appending: lines never interleave), so the
log's order is the order in which runs started and ended across the workers."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.backends import backend_url
from tests.e2e.conftest import Corral, wait_until

APP = """
import os
import time

from corral import App, Context

app = App(lease_seconds=float(os.environ.get("E2E_LEASE_SECONDS", "30")))
RUNS = os.environ["E2E_RUNS"]


def note(line: str) -> None:
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@app.job(concurrency=2, concurrency_key="customer")
def charge(ctx: Context, customer: str, hold: float = 0.0) -> None:
    note(f"start {customer} {ctx.process_id}")
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        time.sleep(0.01)
    note(f"end {customer} {ctx.process_id}")


# A lock held by one process at a time, shared by two jobs through a key function.
@app.job(concurrency=1, concurrency_key=lambda p: "printer")
def hold_printer(ctx: Context, seconds: float) -> None:
    note(f"start printer {ctx.process_id}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    note(f"end printer {ctx.process_id}")


@app.job(concurrency=1, concurrency_key=lambda p: "printer", queue="quick")
def print_page(ctx: Context) -> None:
    note(f"start printer {ctx.process_id}")
    note(f"end printer {ctx.process_id}")


# A key function that knows some customers only.
@app.job(concurrency=1, concurrency_key=lambda p: {"acme": "acme-api"}[p.customer])
def picky(ctx: Context, customer: str) -> None: ...
"""

#: Many processes in one transaction, through the public API: [job, [params...]] on stdin.
SUBMIT_BATCH = """
import json, sys
from corral.loader import load_app
app = load_app(sys.argv[1])
job, items = json.load(sys.stdin)
print(json.dumps([s.id for s in app.submit_many(job, items)]))
app.close()
"""


@pytest.fixture(params=["sqlite", "postgres"])
def c(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Corral]:
    app = tmp_path / "keyed.py"
    app.write_text(APP)
    with backend_url(str(request.param), tmp_path) as url:
        corral = Corral(tmp_path, app)
        corral.url = url
        corral.extra_env["E2E_RUNS"] = str(tmp_path / "runs.log")
        corral.extra_env["E2E_LEASE_SECONDS"] = "2"
        try:
            yield corral
        finally:
            corral.cleanup()


def runs(c: Corral) -> list[tuple[str, str, str]]:
    """(start or end, key, process id) in the order they happened."""
    path = c.cwd / "runs.log"
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]


def most_at_once(events: list[tuple[str, str, str]]) -> Counter[str]:
    """Per key, the most runs under way at one time."""
    now: Counter[str] = Counter()
    most: Counter[str] = Counter()
    for what, key, _ in events:
        now[key] += 1 if what == "start" else -1
        most[key] = max(most[key], now[key])
    return most


def submit_batch(c: Corral, job: str, items: list[dict[str, object]]) -> list[str]:
    return c._script(SUBMIT_BATCH, [str(c.app)], [job, items])  # type: ignore[no-any-return]


def drained(c: Corral, count: int) -> bool:
    ends = sum(1 for what, _, _ in runs(c) if what == "end")
    return ends >= count


def test_three_workers_never_run_more_of_a_key_than_its_limit(c: Corral) -> None:
    submit_batch(c, "charge", [{"customer": f"c{i % 3}", "hold": 0.05} for i in range(60)])
    workers = [c.start_worker("--concurrency", "4") for _ in range(3)]
    wait_until(lambda: drained(c, 60), timeout=120, interval=0.2, what="60 runs")
    for w in workers:
        assert c.stop(w) == 0
    events = runs(c)
    assert len(events) == 120
    # Twelve slots for six: each key full at times, never past its limit.
    assert most_at_once(events) == Counter({"c0": 2, "c1": 2, "c2": 2})
    assert {p["status"] for p in c.list()} == {"completed"}


def test_a_frozen_worker_blocks_its_key_only_until_its_lease_expires(c: Corral) -> None:
    holder = c.start_worker("--concurrency", "1")
    long_one = c.submit("hold_printer", "seconds=600")
    wait_until(lambda: ("start", "printer", long_one) in runs(c), timeout=60, what="the long run")
    # A second worker, for the quick queue only: it can never take the long one over.
    quick = c.start_worker("--concurrency", "2", "--queue", "quick")
    page = c.submit("print_page")
    # While the holder renews its lease, the key is full: `corral why` names the holder.
    reasons = wait_until(
        lambda: {r["code"]: r["message"] for r in c.json("why", page)["reasons"]}.get(
            "concurrency_full"
        ),
        timeout=30,
        what="the page to wait for the printer",
    )
    assert f"'printer' is full (1 of 1): held by {long_one}" in reasons
    assert c.show(page)["status"] == "starting" and ("start", "printer", page) not in runs(c)
    assert "key 'printer': 1 of 1 slots held now" in c.ok("show", page)
    c.kill(holder, signal.SIGSTOP)
    try:
        done = c.wait_status(page, "completed", timeout=60)
        frozen = c.show(long_one)  # nobody renews nor takes it over: its last lease
    finally:
        c.kill(holder, signal.SIGKILL)
    # The page ran once the frozen lease had expired, not before.
    expired_at = datetime.fromisoformat(frozen["lease_expires_at"])
    assert datetime.fromisoformat(done["finished_at"]) >= expired_at
    assert runs(c)[-2:] == [("start", "printer", page), ("end", "printer", page)]
    assert c.stop(quick) == 0


def test_a_thousand_processes_over_ten_keys_drain_with_no_key_starved(c: Corral) -> None:
    """Twenty slots of keys (ten keys of two) and 24 worker slots: every key runs from the
    start, though its processes come after hundreds of others in claim order."""
    workers = [c.start_worker("--concurrency", "8") for _ in range(3)]
    for w in workers:
        wait_until(lambda w=w: " started (concurrency" in c.log_of(w), timeout=60)
    # Submitted key by key: the claim order (oldest first) meets the first key's hundred
    # before any other's, and must look past them while that key is full.
    items: list[dict[str, object]] = [
        {"customer": f"k{i // 100}", "hold": 0.02} for i in range(1000)
    ]
    assert len(submit_batch(c, "charge", items)) == 1000
    wait_until(lambda: drained(c, 1000), timeout=300, interval=0.5, what="1,000 runs")
    for w in workers:
        assert c.stop(w) == 0
    events = runs(c)
    assert Counter(key for what, key, _ in events if what == "start") == Counter(
        {f"k{k}": 100 for k in range(10)}
    )
    first_start = {}
    last_end = {}
    for i, (what, key, _) in enumerate(events):
        if what == "start":
            first_start.setdefault(key, i)
        else:
            last_end[key] = i
    # No key waited for another to drain: each had started before the first one was done.
    assert max(first_start.values()) < min(last_end.values())
    assert max(most_at_once(events).values()) == 2
    assert len(c.list("--status", "completed")) == 1000


def test_a_key_function_that_fails_at_submit_is_one_line_and_writes_nothing(c: Corral) -> None:
    r = c.run("submit", "picky", "-p", "customer=globex")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "its concurrency_key function raised KeyError: 'globex'" in r.stderr
    assert c.list() == []
    c.submit("picky", "customer=acme")
    assert [p["params"] for p in c.list()] == [{"customer": "acme"}]
