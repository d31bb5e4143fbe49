"""Ids a person can type, lists that fit a terminal, and watching work: `list` in 80
columns with short ids, ids by prefix or custom id, `list` filters and what lies past
--limit, `queues`, `workers`, `show --follow`, and `--json` from every command."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Corral, wait_until

APP = """
import time
from pathlib import Path

from pydantic import BaseModel

from corral import App, Context

app = App(lease_seconds=float(__import__("os").environ.get("E2E_LEASE_SECONDS", "30")))


@app.job()
def add(ctx: Context, a: int, b: int = 2) -> int:
    return a + b


@app.job(queue="mail")
def send(ctx: Context, to: str) -> str:
    return f"sent to {to}"


@app.job()
def hold(ctx: Context, gate: str) -> str:
    ctx.progress(1, 4)
    while not Path(gate).exists():
        ctx.heartbeat()
        time.sleep(0.05)
    ctx.progress(4, 4)
    return "released"


@app.job()
def boom(ctx: Context) -> None:
    raise ValueError("kaboom")


class Gate(BaseModel):
    gate: str


@app.process("stepper", params=Gate)
class Stepper:
    # Four steps, each saving its progress; the second waits for the gate file.
    def step(self, ctx: Context[Gate]) -> bool:
        done = ctx.store.get("done", 0) + 1
        if done == 2:
            while not Path(ctx.params.gate).exists():
                ctx.heartbeat()
                time.sleep(0.05)
        ctx.store["done"] = done
        ctx.progress(done, 4)
        return done >= 4

    def finish(self, ctx: Context[Gate]) -> str:
        return "released"
"""

JOBS = {"add", "send", "hold", "boom", "stepper"}

NARROW = {"COLUMNS": "80"}


@pytest.fixture
def c(corral: Corral, tmp_path: Path) -> Corral:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    return corral


def rows(c: Corral, *args: str) -> list[str]:
    r = c.run("list", *args, env=NARROW)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_list_fits_80_columns_and_its_short_ids_can_be_typed_back(c: Corral) -> None:
    # Ids made close together share their first characters (the time they were made).
    batch = c.submit_many([("add", {"a": i}) for i in range(30)])
    alone = c.submit("send", "to=ann@example.com")
    lines = rows(c)
    assert len(lines) == 1 + 31, lines  # a header and one line a process: no row wraps
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    shorts = {line.split()[0] for line in lines[1:]}
    short_of = {}
    for pid in [*batch, alone]:
        (short,) = [s for s in shorts if pid.startswith(s)]
        assert 8 <= len(short) < len(pid)
        short_of[pid] = short
    # A short id names its process back (a few of them: each is a command to start).
    for pid in [batch[0], batch[17], alone]:
        assert c.show(short_of[pid])["id"] == pid


def test_an_ambiguous_prefix_lists_the_candidates(c: Corral) -> None:
    first, second = c.submit_many([("add", {"a": 1}), ("add", {"a": 2})])
    # Ids made within the same 65 seconds share their first 8 characters (the time).
    assert first[:8] == second[:8]
    r = c.run("show", first[:8])
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "starts more than one id" in line and first in line and second in line, line
    assert len(r.stderr.strip().splitlines()) == 1
    # Too short, or not an id's characters: said before anything is opened.
    for bad in ("0193", "order-17"):
        r = c.run("cancel", bad)
        assert r.returncode == 2 and "first 8 or more characters" in r.stderr, r.stderr
    r = c.run("show", "ffffffff")
    assert r.returncode == 2 and "no process id starts with ffffffff" in r.stderr


def test_a_process_by_its_custom_id(c: Corral) -> None:
    pid = c.submit("add", "a=1", custom_id="order-17")
    assert c.json("show", "--custom-id", "order-17")["id"] == pid
    canceled = c.json("cancel", "--custom-id", "order-17")
    assert (canceled["id"], canceled["outcome"]) == (pid, "canceled")
    retried = c.json("retry", "--custom-id", "order-17")
    assert (retried["id"], retried["status"]) == (pid, "starting")
    c.ok("worker", "--once")
    assert c.json("wait", "--custom-id", "order-17")["result"] == 3
    r = c.run("show", "--custom-id", "order-18")
    assert r.returncode == 2 and "no process with custom id 'order-18'" in r.stderr
    r = c.run("show", pid, "--custom-id", "order-17")
    assert r.returncode == 2 and "not both" in r.stderr
    r = c.run("show")
    assert r.returncode == 2 and "give its ID, or --custom-id" in r.stderr


def test_list_filters_and_says_what_lies_past_the_limit(c: Corral) -> None:
    c.submit_many([("add", {"a": i}) for i in range(7)])
    mail = c.submit("send", "to=bob@example.com", tag="team=ops")
    keyed = c.submit("add", "a=99", custom_id="nightly-1")
    assert [p["id"] for p in c.list("--queue", "mail")] == [mail]
    assert [p["id"] for p in c.list("--tag", "team=ops")] == [mail]
    assert [p["id"] for p in c.list("--custom-id", "nightly-1")] == [keyed]
    assert c.list("--queue", "nowhere") == []
    lines = rows(c, "--limit", "3")
    assert len(lines) == 1 + 3 + 1
    assert lines[-1] == "6 more past --limit 3", lines
    assert not rows(c, "--limit", "9")[-1].endswith("--limit 9")


def test_list_by_several_tags_keeps_the_processes_with_all_of_them(c: Corral) -> None:
    def submit(*tags: str) -> str:
        args = [x for t in tags for x in ("--tag", t)]
        return str(c.json("submit", "add", "-p", "a=1", *args)["id"])

    ops_prod = submit("team=ops", "env=prod")
    ops_dev = submit("team=ops", "env=dev")
    web_prod = submit("team=web", "env=prod")
    submit()
    assert [p["id"] for p in c.list("--tag", "team=ops")] == [ops_dev, ops_prod]
    assert [p["id"] for p in c.list("--tag", "team=ops", "--tag", "env=prod")] == [ops_prod]
    assert [p["id"] for p in c.list("--tag", "env=dev", "--tag", "team=ops")] == [ops_dev]
    assert c.list("--tag", "team=web", "--tag", "env=dev") == []
    assert [p["id"] for p in c.list("--tag", "env=prod", "--limit", "1")] == [web_prod]


def test_queues_lists_counts_by_status_and_paused_ones(c: Corral) -> None:
    c.submit_many([("add", {"a": i}) for i in range(3)])
    c.submit("send", "to=x@example.com")
    assert c.json("pause", "--queue", "mail") == {"queue": "mail", "paused": True}
    found = {q["queue"]: q for q in c.json("queues")}
    assert found["default"] == {"queue": "default", "paused": False, "counts": {"starting": 3}}
    assert found["mail"] == {"queue": "mail", "paused": True, "counts": {"starting": 1}}
    c.ok("worker", "--once")
    found = {q["queue"]: q for q in c.json("queues")}
    assert found["default"]["counts"] == {"completed": 3}
    assert found["mail"]["counts"] == {"starting": 1}  # paused: not run
    text = c.ok("queues")
    assert "mail" in text and "paused" in text and "3 completed" in text
    assert c.json("resume", "--queue", "mail") == {"queue": "mail", "paused": False}


def test_workers_are_registered_while_they_run_and_gone_when_they_stop(
    c: Corral, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    held = c.submit("hold", f"gate={gate}")
    assert c.json("workers") == []
    worker = c.start_worker("--concurrency", "3", "--queue", "default")
    listed = wait_until(
        lambda: [w for w in c.json("workers") if held in w["running"]],
        timeout=60,
        what="the worker to show what it runs",
    )
    (w,) = listed
    assert (w["pid"], w["concurrency"], w["queues"], w["state"]) == (
        worker.pid,
        3,
        ["default"],
        "running",
    )
    assert w["app"].endswith("tasks.py") and set(w["jobs"]) == JOBS
    assert w["host"] and w["started_at"] <= w["last_seen_at"]
    text = c.ok("workers")
    assert f":{worker.pid}" in text and "running" in text and "1/3" in text
    gate.touch()
    assert c.stop(worker) == 0
    assert c.json("workers") == []  # a worker that stops leaves the registry


def test_a_dead_worker_shows_as_gone_once_its_row_is_stale(c: Corral) -> None:
    c.extra_env["E2E_LEASE_SECONDS"] = "1"
    c.submit("add", "a=1")
    worker = c.start_worker()
    wait_until(lambda: c.json("workers"), timeout=60, what="the worker's row")
    c.kill(worker, signal.SIGKILL)
    (w,) = wait_until(
        lambda: [w for w in c.json("workers") if w["state"] == "gone"],
        timeout=30,
        what="the dead worker to show as gone",
    )
    assert w["pid"] == worker.pid
    assert "gone" in c.ok("workers")


def test_show_follow_watches_until_the_end(c: Corral, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    held = c.submit("stepper", f"gate={gate}")
    follower = c.start("show", held[:13], "--follow", "--json")
    worker = c.start_worker()
    wait_until(lambda: c.show(held)["progress"]["done"] == 1, timeout=60, what="progress")
    # Its live line on stderr shows the progress saved so far.
    wait_until(lambda: "1/4" in c.log_of(follower), timeout=30, what="the live progress")
    assert follower.poll() is None  # still watching
    gate.touch()
    assert follower.wait(timeout=60) == 0
    shown = json.loads(c.log_of(follower).strip().splitlines()[-1])
    assert (shown["id"], shown["status"], shown["result"]) == (held, "completed", "released")
    assert shown["progress"] == {"done": 4.0, "total": 4.0}
    failing = c.submit("boom")
    r = c.run("show", failing, "--follow")
    assert r.returncode == 1
    assert "failed" in r.stdout
    c.stop(worker)


def test_progress_is_seen_while_one_long_iteration_runs(c: Corral, tmp_path: Path) -> None:
    # A lease of 1 s: the worker renews (and saves the reported progress) every ~0.33 s.
    c.extra_env["E2E_LEASE_SECONDS"] = "1"
    gate = tmp_path / "gate"
    held = c.submit("hold", f"gate={gate}")
    follower = c.start("show", held, "--follow")
    worker = c.start_worker()
    running = wait_until(
        lambda: (p := c.show(held))["progress"]["done"] == 1 and p,
        timeout=60,
        what="the progress of the running iteration",
    )
    assert running["status"] == "starting" and running["lease_owner"]  # still its first call
    assert running["progress"] == {"done": 1.0, "total": 4.0}
    wait_until(lambda: "1/4" in c.log_of(follower), timeout=30, what="the live progress")
    gate.touch()
    assert follower.wait(timeout=60) == 0
    assert c.show(held)["progress"] == {"done": 4.0, "total": 4.0}
    c.stop(worker)


def test_why_names_every_reason_a_process_is_not_running(c: Corral, tmp_path: Path) -> None:
    def why(ref: str) -> list[str]:
        return [r["code"] for r in c.json("why", ref)["reasons"]]

    mail = c.submit("send", "to=x@example.com")
    later = c.submit("add", "a=1", run_at="+1h")
    c.ok("pause", "--queue", "mail")
    assert why(mail) == ["queue_paused", "no_worker"]
    assert why(later) == ["scheduled", "no_worker"]
    text = c.ok("why", mail[:13])
    assert "its queue 'mail' is paused" in text and "no worker is running" in text
    # A worker that serves only the default queue: the mail process still has none.
    gate = tmp_path / "gate"
    held = c.submit("hold", f"gate={gate}")
    worker = c.start_worker("--queue", "default")
    wait_until(lambda: c.show(held)["lease_owner"], timeout=60, what="the worker to run it")
    c.ok("resume", "--queue", "mail")
    reasons = c.json("why", mail)["reasons"]
    assert [r["code"] for r in reasons] == ["no_worker"]
    assert "serves its queue 'mail'" in reasons[0]["message"]
    assert why(held) == ["leased"]
    gate.touch()
    c.wait_status(held, "completed", timeout=60)
    assert why(held) == ["ended"]
    c.stop(worker)


def test_execute_prints_the_result_and_json(c: Corral) -> None:
    r = c.run("execute", "add", "-p", "a=40")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"
    r = c.run("execute", "send", "-p", "to=z@example.com", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert (shown["status"], shown["result"]) == ("completed", "sent to z@example.com")
    r = c.run("execute", "boom", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"]["type"] == "ValueError"


def test_every_command_that_prints_speaks_json(c: Corral) -> None:
    pid = c.submit("boom")
    c.ok("worker", "--once")
    retried = c.json("retry", pid)
    assert (retried["id"], retried["status"]) == (pid, "starting")
    # It ran before: its rollback runs first, so the cancel is a request.
    canceled = c.json("cancel", pid[:13])
    assert (canceled["id"], canceled["outcome"]) == (pid, "cancel requested")
    c.ok("worker", "--once")
    assert c.show(pid)["status"] == "canceled"
    assert c.json("prune", "--older-than", "0s", "--dry-run") == {
        "would_prune": 1,
        "by_job": {"boom": 1},
    }
    assert "would prune 1 processes" in c.ok("prune", "--older-than", "0s", "--dry-run")
    assert c.show(pid)["status"] == "canceled"  # a dry run deletes nothing
    assert c.json("prune", "--older-than", "0s") == {"pruned": 1}
    jobs = c.json("jobs")
    assert {j["name"] for j in jobs} == JOBS
