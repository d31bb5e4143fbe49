"""`corral work --once` and `corral execute`, end to end on a SQLite file."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EXAMPLE, Corral, history_kinds, wait_until

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STATS = re.compile(r"stopped: [^()]*\(([\w -]+)\); (\d+) iterations?: (\d+) completed")


def worker_stats(text: str) -> tuple[str, int, int]:
    """(stopped_by, iterations, completed) from a worker's last words on stderr."""
    match = STATS.search(" ".join(text.split()))
    assert match, f"no worker statistics in:\n{text}"
    return match.group(1), int(match.group(2)), int(match.group(3))


def executed_id(r: subprocess.CompletedProcess[str]) -> str:
    match = re.search(r"process (" + UUID.pattern + ")", r.stderr)
    assert match, r.stderr
    return match.group(1)


def completed_transitions(process: dict[str, Any]) -> int:
    return sum(
        1 for e in process["history"] if e["kind"] == "transition" and e["to"] == "completed"
    )


def test_work_once_drains_simple_and_multi_step_processes(corral: Corral) -> None:
    items: list[tuple[str, dict[str, Any]]] = []
    items += [("add", {"a": i, "b": 100}) for i in range(10)]
    items += [("count_to", {"n": n}) for n in range(1, 6)]
    items += [("greet", {"name": name}) for name in ("ann", "42", "true")]
    items += [("double", {"x": 7}), ("async_count", {"n": 4})]
    ids = corral.submit_many(items)

    r = corral.run("work", "--once", "--concurrency", "2")
    assert r.returncode == 0, r.stderr
    stopped_by, iterations, completed = worker_stats(r.stderr)
    assert stopped_by == "idle"
    assert completed == len(items)
    # One iteration per simple job; start + n steps + finish per count_to; async_count has
    # no start handler but its `starting` still takes an iteration (that moves it on).
    assert iterations == 10 + sum(n + 2 for n in range(1, 6)) + 3 + 1 + (4 + 2)

    expected: list[Any] = [100 + i for i in range(10)]
    expected += [{"steps": n, "total": n * (n + 1) // 2} for n in range(1, 6)]
    expected += ["hello ann", "hello 42", "hello true", 14, 4]
    processes = corral.show_many(ids)
    assert [p["status"] for p in processes] == ["completed"] * len(items)
    assert [p["result"] for p in processes] == expected
    assert all(completed_transitions(p) == 1 for p in processes)
    assert all(p["attempt"] == 0 and p["error"] is None for p in processes)


def test_two_work_once_at_the_same_time_cooperate(corral: Corral, tmp_path: Path) -> None:
    runs, steps = tmp_path / "runs.log", tmp_path / "steps.log"
    items: list[tuple[str, dict[str, Any]]] = [
        ("record", {"path": str(runs), "sleep": 0.05}) for _ in range(60)
    ]
    items += [("count_to", {"n": 5, "path": str(steps)}) for _ in range(6)]
    ids = corral.submit_many(items)

    workers = [corral.start("work", "--once") for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=120) == 0, corral.log_of(w)
    stats = [worker_stats(corral.log_of(w)) for w in workers]
    print("iterations per worker:", [s[1] for s in stats])
    assert [s[0] for s in stats] == ["idle", "idle"]
    assert sum(s[1] for s in stats) == 60 + 6 * 7, "an iteration ran twice (or not at all)"
    assert all(s[1] > 0 for s in stats), f"one worker did nothing: {stats}"

    record_ids, count_ids = ids[:60], ids[60:]
    ran = Counter(runs.read_text().split())
    assert ran == Counter(record_ids), "some record job ran twice or never"
    stepped = Counter(steps.read_text().splitlines())
    assert stepped == Counter(f"{pid} {i}" for pid in count_ids for i in range(1, 6))

    processes = corral.show_many(ids)
    assert {p["status"] for p in processes} == {"completed"}
    assert [p["result"] for p in processes[:60]] == record_ids
    assert all(p["result"] == {"steps": 5, "total": 15} for p in processes[60:])
    assert all(completed_transitions(p) == 1 for p in processes)
    assert not any("lease_expired" in history_kinds(p) for p in processes)


def test_work_once_max_time_stops_with_work_left(corral: Corral) -> None:
    ids = corral.submit_many([("nap", {"seconds": 0.4}) for _ in range(10)])
    started = time.monotonic()
    r = corral.run("work", "--once", "--max-time", "1", "--concurrency", "1")
    elapsed = time.monotonic() - started
    assert r.returncode == 4, r.stderr  # a budget spent: the exit code of a recycled worker
    assert worker_stats(r.stderr)[0] == "max-time"
    assert elapsed < 10, f"work --once --max-time 1 took {elapsed:.1f}s"
    statuses = Counter(p["status"] for p in corral.show_many(ids))
    assert statuses["completed"] >= 1, statuses
    assert statuses["starting"] >= 1, statuses
    assert set(statuses) == {"completed", "starting"}, statuses
    # What is left is not held by anyone: the next run takes it at once.
    r = corral.run("work", "--once", "--concurrency", "4")
    assert r.returncode == 0, r.stderr
    assert {p["status"] for p in corral.show_many(ids)} == {"completed"}


def test_execute_completed_exits_0_and_failed_exits_1(corral: Corral) -> None:
    r = corral.run("execute", "add", "-p", "a=20", "-p", "b=22")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    done = corral.show(executed_id(r))
    assert (done["status"], done["result"]) == ("completed", 42)

    r = corral.run("execute", "boom", "-p", "message=kapow")
    assert r.returncode == 1, r.stderr
    failed = corral.show(executed_id(r))
    assert failed["status"] == "failed"
    error = failed["error"]
    assert (error["type"], error["message"]) == ("ValueError", "kapow")
    assert "Traceback" in error["traceback"]
    assert "ValueError: kapow" in error["traceback"]
    assert "e2e_basic.py" in error["traceback"], "the traceback should reach the job's code"
    moves = [(e["from"], e["to"]) for e in failed["history"] if e["kind"] == "transition"]
    # boom has no rollback of its own: the generic `cleanup` handler runs in failing.
    assert moves == [("starting", "failing"), ("failing", "failed")]
    assert "error" in history_kinds(failed)


@pytest.mark.slow
def test_execute_create_data_file(corral: Corral, tmp_path: Path) -> None:
    target = tmp_path / "out" / "people.jsonl"
    r = corral.run(
        "execute",
        "create_data_file",
        "-p",
        f"filename={target}",
        "-p",
        "total=20000",
        app=EXAMPLE,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    lines = target.read_text().splitlines()
    assert len(lines) == 20000
    for line in lines:
        person = json.loads(line)
        assert set(person) == {"name", "email", "birthdate", "city", "job"}
    process = corral.show(executed_id(r))
    assert process["status"] == "completed"
    assert process["result"] == {"filename": str(target), "lines": 20000}
    assert process["progress"] == {"done": 20000, "total": 20000}
    assert not (target.parent / ".create_data_file").exists(), "the working directory is left"


def test_failing_process_runs_its_rollback(corral: Corral, tmp_path: Path) -> None:
    marker = tmp_path / "rolled-back"
    r = corral.run("execute", "fragile", "-p", f"marker={marker}", "-p", "fail_at=3")
    assert r.returncode == 1, r.stderr
    assert marker.read_text() == "rolled back after 2 steps\n"
    process = corral.show(executed_id(r))
    assert process["status"] == "failed"
    assert process["error"]["type"] == "RuntimeError"
    assert process["error"]["message"] == "step 3 broke"
    assert process["store"] == {"steps": 2}, "the failed step's store must not be saved"
    moves = [(e["from"], e["to"]) for e in process["history"] if e["kind"] == "transition"]
    assert moves == [("starting", "running"), ("running", "failing"), ("failing", "failed")]


def test_async_jobs(corral: Corral) -> None:
    r = corral.run("execute", "double", "-p", "x=21")
    assert r.returncode == 0, r.stderr
    assert corral.show(executed_id(r))["result"] == 42
    r = corral.run("execute", "async_count", "-p", "n=3")
    assert r.returncode == 0, r.stderr
    process = corral.show(executed_id(r))
    assert (process["status"], process["result"], process["store"]) == ("completed", 3, {"i": 3})


def test_workers_log_at_info_by_default(corral: Corral) -> None:
    # The explicit option works: only the default is wrong.
    r = corral.run("--log-level", "INFO", "work", "--once")
    assert " started (concurrency 10)" in r.stderr, r.stderr
    r = corral.run("work", "--once")
    assert r.returncode == 0, r.stderr
    assert "INFO corral.worker" in r.stderr, r.stderr
    assert " started (concurrency 10)" in r.stderr, r.stderr


def test_retry_resumes_a_failed_process_where_it_stopped(corral: Corral, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    r = corral.run("execute", "gated", "-p", f"gate={gate}")
    assert r.returncode == 1, r.stderr
    pid = executed_id(r)
    failed = corral.show(pid)
    assert failed["status"] == "failed"
    assert failed["error"]["message"] == "gate closed at step 3"
    assert failed["store"] == {"starts": 1, "done": 2, "rollbacks": 1}

    gate.touch()
    assert corral.ok("retry", pid).split() == [pid, "running"]
    corral.ok("work", "--once")
    done = corral.show(pid)
    assert done["status"] == "completed"
    assert done["error"] is None
    # Resumed in `running` with its store: start did not run again, steps 1-2 were kept.
    assert done["result"] == {"starts": 1, "done": 4, "rollbacks": 1}
    assert ("failed", "running") in [
        (e["from"], e["to"]) for e in done["history"] if e["kind"] == "transition"
    ]


def test_cancel_a_running_process_rolls_it_back(corral: Corral, tmp_path: Path) -> None:
    corral.extra_env["E2E_LEASE_SECONDS"] = "1.5"  # the renewer brings the request
    marker = tmp_path / "looper"
    pid = corral.submit("looper", f"marker={marker}")
    worker = corral.start_worker()
    wait_until(lambda: marker.exists(), timeout=30, what="the step to start")
    out = corral.ok("cancel", pid)
    assert out.split() == [pid, "cancel", "requested"]
    process = corral.wait_status(pid, "canceled", "failed", "completed", timeout=20)
    assert corral.stop(worker) == 0, corral.log_of(worker)
    assert process["status"] == "canceled"
    assert process["error"] is None
    assert marker.read_text().splitlines() == ["step", "rollback"]
    moves = [(e["from"], e["to"]) for e in process["history"] if e["kind"] == "transition"]
    assert moves[-2:] == [("running", "failing"), ("failing", "canceled")]
    assert "cancel_requested" in history_kinds(process)
