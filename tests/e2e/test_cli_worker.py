"""`corral worker` is one command with every budget, and exits with why it stopped; `work`
is the same command under its older name (`work --once` as it always was)."""

from __future__ import annotations

import re

from corral import worker as worker_module
from tests.e2e.conftest import Corral

BUDGET_OPTIONS = (
    "--once",
    "--max-time",
    "--max-memory",
    "--max-iterations",
    "--grace",
    "--concurrency",
    "--queue",
)


def stop_line(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if " stopped: " in line]
    return line


def test_worker_and_work_are_one_command_with_every_budget(corral: Corral) -> None:
    for name in ("worker", "work"):
        text = corral.ok(name, "--help", app=None)
        for option in BUDGET_OPTIONS:
            assert option in text, f"{name} --help lacks {option}:\n{text}"
    worker_help = " ".join(corral.ok("worker", "--help", app=None).split())
    # Every exit code the worker can stop with is documented, with the worker's numbers.
    codes = {
        worker_module.EXIT_OK: "nothing left to do",
        worker_module.EXIT_INTERNAL: "a bug in corral",
        worker_module.EXIT_STORAGE: "the database failed",
        worker_module.EXIT_BUDGET: "a budget was spent",
        worker_module.EXIT_WEDGED: "more handlers stuck past their timeouts",
    }
    for code, words in codes.items():
        assert re.search(rf"\b{code} {words}", worker_help), (code, worker_help)


def test_work_once_drains_and_exits_0_as_it_always_did(corral: Corral) -> None:
    ids = [corral.submit("add", f"a={i}") for i in range(3)]
    for command in ("work", "worker"):
        r = corral.run(command, "--once")
        assert r.returncode == 0, r.stderr
        assert "nothing left to do (idle)" in stop_line(r.stderr)
    assert [corral.show(pid)["result"] for pid in ids] == [2, 3, 4]


def test_a_spent_budget_exits_4(corral: Corral) -> None:
    ids = [corral.submit("add", f"a={i}") for i in range(5)]
    r = corral.run("worker", "--once", "--max-iterations", "2")
    assert r.returncode == 4, r.stderr
    assert "--max-iterations budget was spent" in stop_line(r.stderr)
    assert sorted(p["state"] for p in corral.list()) == ["completed"] * 2 + ["queued"] * 3

    # Past its memory budget from the start (1 MB): it claims nothing and exits 4.
    r = corral.run("work", "--max-memory", "1")
    assert r.returncode == 4, r.stderr
    assert "--max-memory budget was spent" in stop_line(r.stderr)

    # A worker without --once and nothing to do stops when its time is up.
    r = corral.run("worker", "--once", "--queue", "default")
    assert r.returncode == 0, r.stderr
    r = corral.run("worker", "--max-time", "0.5s", "--grace", "0")
    assert r.returncode == 4, r.stderr
    assert "--max-time budget was spent" in stop_line(r.stderr)
    assert [corral.show(pid)["status"] for pid in ids] == ["completed"] * 5


def test_a_signal_exits_0(corral: Corral) -> None:
    worker = corral.start_worker("--grace", "5s", "--concurrency", "2")
    assert corral.stop(worker) == 0
    assert "told to stop (signal)" in stop_line(corral.log_of(worker))


def test_queues_are_repeatable(corral: Corral) -> None:
    a = corral.submit("add", "a=1", queue="a")
    b = corral.submit("add", "a=2", queue="b")
    other = corral.submit("add", "a=3", queue="c")
    corral.ok("worker", "--once", "--queue", "a", "--queue", "b")
    assert [corral.show(pid)["status"] for pid in (a, b, other)] == [
        "completed",
        "completed",
        "starting",
    ]


def test_bad_budgets_exit_2(corral: Corral) -> None:
    for args, word in (
        (("--max-time", "0"), "--max-time"),
        (("--max-time", "soon"), "--max-time"),
        (("--max-memory", "0"), "--max-memory"),
        (("--max-iterations", "0"), "--max-iterations"),
        (("--grace", "a while"), "--grace"),
        (("--concurrency", "0"), "--concurrency"),
    ):
        for command in ("worker", "work"):
            r = corral.run(command, "--once", *args)
            assert r.returncode == 2, (command, args, r.stderr)
            assert word in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not corral.db.exists()
