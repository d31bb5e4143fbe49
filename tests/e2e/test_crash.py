"""The crash guarantees, with real workers killed by SIGKILL (and stopped by SIGTERM).

Every process reaches an end whatever happens to the workers; a store write lands exactly
once (fenced by the lease token); a worker that died mid-iteration makes its process
retry the iteration, or fail and roll back once its attempts are spent; SIGTERM lets the
running iteration commit, or gives its lease back when the grace period runs out.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SHORT_LEASE_EXAMPLE, Corral, history_kinds, wait_until


def transitions(process: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["from"], e["to"]) for e in process["history"] if e["kind"] == "transition"]


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- a. the example, its worker killed three times --------------------------------------------


@pytest.mark.slow
def test_create_data_file_survives_sigkill(corral: Corral, tmp_path: Path) -> None:
    corral.app = SHORT_LEASE_EXAMPLE  # the example with a 2 s lease
    target = tmp_path / "people.jsonl"
    pid = corral.submit(
        "create_data_file",
        f"filename={target}",
        "total=60000",
        "per_iteration=2000",
        "chunk=100",
    )

    def done() -> float:
        return corral.show(pid)["progress"]["done"] or 0

    killed_at = []
    for threshold in (10000, 26000, 42000):
        worker = corral.start_worker()
        wait_until(
            lambda t=threshold: done() >= t, timeout=90, interval=0.5, what=f"{threshold} people"
        )
        corral.kill(worker)  # SIGKILL, most likely in the middle of a step
        killed_at.append(done())
    worker = corral.start_worker()
    process = corral.wait_status(pid, "completed", "failed", timeout=120)
    assert corral.stop(worker) == 0, corral.log_of(worker)

    kinds = Counter(history_kinds(process))
    print(f"killed at {killed_at}; lease_expired events: {kinds['lease_expired']}")
    assert process["status"] == "completed", process["error"]
    assert process["store"]["written"] == 60000
    assert process["result"] == {"filename": str(target), "lines": 60000}
    assert kinds["lease_expired"] >= 1, "no kill landed mid-iteration"
    lines = target.read_text().splitlines()
    assert len(lines) == 60000
    people = [json.loads(line) for line in lines]
    assert all(set(p) == {"name", "email", "birthdate", "city", "job"} for p in people)
    # A step re-run after a kill must first drop what the killed step wrote.
    duplicates = len(lines) - len(set(lines))
    assert duplicates == 0, f"{duplicates} duplicate lines"
    assert process["store"]["offset"] == target.stat().st_size


# --- b. fenced store writes under a killer loop -------------------------------------------------

PROCESSES, STEPS, WORKERS = 20, 30, 3


@pytest.mark.slow
def test_store_writes_are_exactly_once_under_sigkill(crash_corral: Corral, tmp_path: Path) -> None:
    corral = crash_corral
    audit = tmp_path / "audit.log"
    ids = corral.submit_many(
        [("counter", {"steps": STEPS, "audit": str(audit)}) for _ in range(PROCESSES)]
    )

    def start_worker() -> subprocess.Popen[bytes]:
        return corral.start_worker("--concurrency", "2")

    rng = random.Random()
    workers = [start_worker() for _ in range(WORKERS)]
    kills = 0
    chaos_started = time.monotonic()
    # About 10 s of chaos, while there is work left to disturb.
    while time.monotonic() < chaos_started + 10 and len(lines_of(audit)) < PROCESSES * STEPS:
        time.sleep(rng.uniform(0.3, 1.0))
        victim = rng.choice(workers)
        corral.kill(victim)
        kills += 1
        workers[workers.index(victim)] = start_worker()
    chaos = time.monotonic() - chaos_started
    audit_lines_at_end_of_chaos = len(lines_of(audit))
    for w in workers:
        corral.kill(w)
    last = start_worker()
    wait_until(
        lambda: {p["status"] for p in corral.list("--job", "counter")} <= {"completed", "failed"},
        timeout=120,
        interval=0.5,
        what="every counter process to end",
    )
    assert corral.stop(last) == 0, corral.log_of(last)

    processes = corral.show_many(ids)
    lines = lines_of(audit)
    pairs = Counter(tuple(line.split()) for line in lines)
    counts: dict[str, set[int]] = defaultdict(set)
    for process_id, count in pairs:
        counts[process_id].add(int(count))
    duplicate_lines = len(lines) - len(pairs)
    lease_expired = sum(history_kinds(p).count("lease_expired") for p in processes)
    lease_lost = sum(history_kinds(p).count("lease_lost") for p in processes)
    print(
        f"\n{PROCESSES} processes x {STEPS} steps, {kills} kills in {chaos:.1f}s, "
        f"{len(lines)} audit lines "
        f"({audit_lines_at_end_of_chaos} during the chaos), {duplicate_lines} duplicate "
        f"audit lines, {lease_expired} lease_expired and {lease_lost} lease_lost events"
    )

    assert kills >= 3, "the work ended before the chaos could disturb it"
    assert [p["status"] for p in processes] == ["completed"] * PROCESSES, [
        (p["id"], p["status"], p["error"]) for p in processes if p["status"] != "completed"
    ]
    # Exactly once: every committed step added 1 to the store, none twice, none lost.
    assert [p["store"]["count"] for p in processes] == [STEPS] * PROCESSES
    assert [p["result"] for p in processes] == [STEPS] * PROCESSES
    # At least once: the audit (written before the commit) covers every step, and may
    # repeat a step whose worker died before committing it; nothing beyond the last step.
    assert set(counts) == set(ids)
    for process_id in ids:
        assert counts[process_id] == set(range(1, STEPS + 1)), process_id
    assert lease_expired >= 1, "no kill landed mid-iteration"


@pytest.mark.slow
def test_a_stale_workers_commit_is_fenced(crash_corral: Corral, tmp_path: Path) -> None:
    """A worker frozen (SIGSTOP) past its lease wakes up after another took the process
    over: it learns that its lease is lost (from its renewer or its fenced commit) and its
    store write never lands."""
    corral = crash_corral
    audit = tmp_path / "audit.log"
    pid = corral.submit("slow_counter", f"audit={audit}", "steps=2", "seconds=2")
    stale = corral.start_worker()
    wait_until(lambda: lines_of(audit), timeout=30, what="the first step to start")
    stale.send_signal(signal.SIGSTOP)
    try:
        fresh = corral.start_worker()
        # The fresh worker takes the expired lease over, commits step 1, starts step 2.
        wait_until(
            lambda: any(line.split()[1] == "2" for line in lines_of(audit)),
            timeout=30,
            what="another worker to take over",
        )
    finally:
        stale.send_signal(signal.SIGCONT)
    process = corral.wait_status(pid, "completed", "failed", timeout=30)
    for w in (stale, fresh):
        assert corral.stop(w) == 0, corral.log_of(w)

    assert process["status"] == "completed"
    assert process["store"]["count"] == 2
    assert process["store"]["by"] == [fresh.pid, fresh.pid], (stale.pid, fresh.pid)
    assert process["result"] == [fresh.pid, fresh.pid]
    assert "lease_expired" in history_kinds(process)
    # The stale worker noticed (at its commit, or when renewing) and dropped its outcome.
    stale_log = " ".join(corral.log_of(stale).split())
    assert re.search(r"\b1 leases lost\b", stale_log), stale_log
    assert [line.split()[1:] for line in lines_of(audit)] == [
        ["1", str(stale.pid)],
        ["1", str(fresh.pid)],
        ["2", str(fresh.pid)],
    ]


# --- c. attempts spent: failing, rollback, failed ---------------------------------------------


@pytest.mark.slow
def test_killed_worker_with_attempts_spent_fails_and_rolls_back(
    crash_corral: Corral, tmp_path: Path
) -> None:
    corral = crash_corral
    marker = tmp_path / "stuck"
    pid = corral.submit("stuck", f"marker={marker}", "seconds=30")  # Retry(attempts=1)
    worker = corral.start_worker()
    wait_until(lambda: lines_of(marker), timeout=30, what="the start handler to run")
    corral.kill(worker)

    worker = corral.start_worker()
    process = corral.wait_status(pid, "failed", "completed", "canceled", timeout=30)
    assert corral.stop(worker) == 0, corral.log_of(worker)

    assert process["status"] == "failed"
    assert process["error"]["reason"] == "lease_lost"
    assert process["error"]["type"] == "LeaseExpired"
    assert "lease_expired" in history_kinds(process)
    assert transitions(process) == [("starting", "failing"), ("failing", "failed")]
    assert lines_of(marker) == ["start attempt 1"], "the start ran again with no attempts left"
    assert lines_of(Path(f"{marker}.rollback")) == [pid], "the rollback did not run once"


# --- d. SIGTERM: finish the iteration, or give the lease back after the grace -------------------


@pytest.mark.slow
def test_sigterm_lets_the_running_iteration_commit(crash_corral: Corral, tmp_path: Path) -> None:
    corral = crash_corral
    corral.extra_env["E2E_LEASE_SECONDS"] = "30"
    marker = tmp_path / "nap"
    pid = corral.submit("nap_once", "seconds=2", f"marker={marker}")
    worker = corral.start_worker()
    wait_until(lambda: lines_of(marker), timeout=30, what="the iteration to start")
    signaled = time.monotonic()
    assert corral.stop(worker) == 0, corral.log_of(worker)
    waited = time.monotonic() - signaled
    log = corral.log_of(worker)
    assert "Traceback" not in log, log

    process = corral.show(pid)
    assert (process["status"], process["result"]) == ("completed", 1), log
    assert "released" not in history_kinds(process)
    assert waited >= 1.0, f"the worker exited {waited:.1f}s after SIGTERM, before its iteration"
    assert lines_of(marker) == ["run attempt 1"]


@pytest.mark.slow
def test_sigterm_after_grace_releases_the_lease(crash_corral: Corral, tmp_path: Path) -> None:
    corral = crash_corral
    corral.extra_env["E2E_LEASE_SECONDS"] = "30"  # a lease that would take long to expire
    marker = tmp_path / "nap"
    pid = corral.submit("nap_once", "seconds=60", f"marker={marker}")
    worker = corral.start_worker("--grace", "1")
    wait_until(lambda: lines_of(marker), timeout=30, what="the iteration to start")
    signaled = time.monotonic()
    assert corral.stop(worker) == 0, corral.log_of(worker)
    assert time.monotonic() - signaled < 10, "the worker did not give up after its grace"

    process = corral.show(pid)
    assert process["status"] == "starting"
    assert "released" in history_kinds(process), corral.log_of(worker)
    assert process["attempt"] == 0, "a released iteration must not use up an attempt"

    started = time.monotonic()
    r = corral.run("work", "--once")
    assert r.returncode == 0, r.stderr
    took = time.monotonic() - started
    process = corral.show(pid)
    assert (process["status"], process["result"]) == ("completed", 2), r.stderr
    assert "lease_expired" not in history_kinds(process)
    assert took < 15, f"the next worker took {took:.1f}s: it waited for the lease to expire"
    assert lines_of(marker) == ["run attempt 1", "run attempt 1"]


@pytest.mark.slow
def test_a_second_sigterm_releases_at_once(crash_corral: Corral, tmp_path: Path) -> None:
    corral = crash_corral
    corral.extra_env["E2E_LEASE_SECONDS"] = "30"
    marker = tmp_path / "nap"
    pid = corral.submit("nap_once", "seconds=60", f"marker={marker}")
    worker = corral.start_worker()  # the default grace: 30 s
    wait_until(lambda: lines_of(marker), timeout=30, what="the iteration to start")
    signaled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert worker.poll() is None, "the first SIGTERM must let the iteration run on"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, corral.log_of(worker)
    assert time.monotonic() - signaled < 10
    process = corral.show(pid)
    assert process["status"] == "starting"
    assert "released" in history_kinds(process)


@pytest.mark.slow
def test_a_worker_whose_database_file_is_deleted_stops_with_a_clear_error(
    corral: Corral,
) -> None:
    corral.submit("add", "a=1", "b=2")
    worker = corral.start_worker()
    wait_until(lambda: " started (concurrency" in corral.log_of(worker), timeout=30)
    wait_until(lambda: corral.list()[0]["status"] == "completed", timeout=30)
    for path in corral.cwd.glob("corral.db*"):
        path.unlink()
    # It notices within its idle wait, drains, and exits 3 (a storage error), saying why.
    assert worker.wait(timeout=30) == 3, corral.log_of(worker)
    log = corral.log_of(worker)
    assert "deleted or replaced" in log and "Traceback" not in log, log
