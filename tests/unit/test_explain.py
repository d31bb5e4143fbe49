"""Why a process is not running: each reason, from a process, the paused queues, the worker
registry and the time. No database."""

from __future__ import annotations

from dataclasses import replace

from corral.explain import explain
from corral.graph import DependencyRow
from corral.model import Process, Status
from corral.storage.base import ConcurrencySlots, KeyHolder, WorkerInfo

NOW = 1_000_000.0


def process(**kw: object) -> Process:
    fields: dict[str, object] = {
        "id": "01a23000-13a0-7c01-8f84-64772860c54c",
        "job": "add",
        "params": {},
        "status": Status.STARTING,
        "run_at": NOW - 1,
        "created_at": NOW - 1,
        "updated_at": NOW - 1,
    }
    fields.update(kw)
    return Process(**fields)  # type: ignore[arg-type]


def worker(**kw: object) -> WorkerInfo:
    fields: dict[str, object] = {
        "owner": "box:1:aa",
        "host": "box",
        "pid": 1,
        "app": "tasks.py",
        "jobs": ["add"],
        "queues": None,
        "concurrency": 2,
        "started_at": NOW - 100,
        "last_seen_at": NOW - 1,
    }
    fields.update(kw)
    return WorkerInfo(**fields)  # type: ignore[arg-type]


def codes(
    p: Process, *, paused: tuple[str, ...] = (), workers: list[WorkerInfo] | None = None
) -> list[str]:
    found = explain(
        p, NOW, paused=paused, workers=[worker()] if workers is None else workers, stale_after=30
    )
    return [r.code for r in found]


def test_a_runnable_process_with_a_free_worker_is_next() -> None:
    assert codes(process()) == ["runnable"]


def test_ended_and_running_say_so_alone() -> None:
    assert codes(process(status=Status.COMPLETED), paused=("*",), workers=[]) == ["ended"]
    running = process(lease_owner="w9", lease_token=3, lease_expires_at=NOW + 20)
    [reason] = explain(running, NOW, paused=(), workers=[], stale_after=30)
    assert reason.code == "leased" and "w9" in reason.message and "UTC" in reason.message


def test_every_reason_that_holds_is_given() -> None:
    p = process(
        run_at=NOW + 3600,
        lease_token=2,
        lease_owner="dead",
        lease_expires_at=NOW - 5,
        queue="mail",
        cancel_requested=True,
    )
    assert codes(p, paused=("mail",), workers=[]) == [
        "lease_expired",
        "retrying",
        "queue_paused",
        "no_worker",
        "cancel_requested",
    ]


def test_scheduled_is_a_first_run_retrying_a_later_one() -> None:
    assert codes(process(run_at=NOW + 60)) == ["scheduled"]
    assert codes(process(run_at=NOW + 60, lease_token=1)) == ["retrying"]


def test_a_waiting_process_names_the_dependencies_it_waits_for() -> None:
    deps = [
        DependencyRow("dep-a", Status.COMPLETED, 1),
        DependencyRow("dep-b", Status.RUNNING),
        DependencyRow("dep-c", Status.WAITING),
    ]
    [reason] = explain(
        process(status=Status.WAITING), NOW, paused=(), workers=[worker()], stale_after=30,
        dependencies=deps,
    )  # fmt: skip
    assert reason.code == "waiting_on_dependencies"
    assert reason.message == (
        "it waits for 2 dependencies to end: dep-b (running), dep-c (waiting)"
    )


def test_an_ended_process_says_so_and_every_queue_paused_counts() -> None:
    assert codes(process(status=Status.COMPLETED)) == ["ended"]
    [msg] = [
        r.message
        for r in explain(process(), NOW, paused=("*",), workers=[worker()], stale_after=30)
        if r.code == "queue_paused"
    ]
    assert "every queue" in msg


def test_which_worker_could_run_it() -> None:
    p = process(queue="mail")
    gone = worker(last_seen_at=NOW - 31)
    assert codes(p, workers=[gone]) == ["no_worker"]
    [none] = explain(p, NOW, paused=(), workers=[gone], stale_after=30)
    assert "no worker is running" in none.message
    other_job = worker(jobs=["send"])
    [msg] = explain(p, NOW, paused=(), workers=[other_job], stale_after=30)
    assert "registers its job 'add'" in msg.message
    other_queue = worker(queues=["default"])
    [msg] = explain(p, NOW, paused=(), workers=[other_queue], stale_after=30)
    assert "serves its queue 'mail'" in msg.message
    busy = worker(running=["a", "b"])
    assert codes(p, workers=[busy]) == ["workers_busy"]
    assert codes(p, workers=[busy, replace(busy, owner="x", running=["c"])]) == ["runnable"]


def slots(limit: int, *holders: tuple[str, str, float]) -> ConcurrencySlots:
    return ConcurrencySlots("charge:acme", limit, [KeyHolder(*h) for h in holders])


def test_a_full_concurrency_key_names_its_holders_and_their_leases() -> None:
    full = slots(2, ("p1", "w1", NOW + 5), ("p2", "w2", NOW + 9))
    [reason] = explain(process(), NOW, paused=(), workers=[worker()], stale_after=30, slots=full)
    assert reason.code == "concurrency_full"
    assert "'charge:acme' is full (2 of 2)" in reason.message
    assert "p1 (worker w1, lease until 1970-01-12 13:46:45 UTC)" in reason.message
    assert "p2 (worker w2, lease until 1970-01-12 13:46:49 UTC)" in reason.message


def test_a_key_with_a_free_slot_holds_nothing_back() -> None:
    one = slots(2, ("p1", "w1", NOW + 5))
    found = explain(process(), NOW, paused=(), workers=[worker()], stale_after=30, slots=one)
    assert [r.code for r in found] == ["runnable"]


def test_a_full_key_is_one_reason_among_the_others() -> None:
    full = slots(1, ("p1", "w1", NOW + 5))
    found = explain(
        process(run_at=NOW + 60), NOW, paused=("*",), workers=[], stale_after=30, slots=full
    )
    assert [r.code for r in found] == ["scheduled", "queue_paused", "concurrency_full", "no_worker"]
