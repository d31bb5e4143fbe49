"""Task graphs with real `corral` processes: the pushdep example (examples/tech_eco.py)
submitted as one batch and drained by a worker, `corral show` listing an `eco`'s
dependencies, `corral graph` counting the batch, `corral why` naming the dependencies a
process waits for, and `corral submit --depends-on` with a failure that cancels the
dependent, naming its root cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Corral

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tech_eco.py"

APP = """
from pydantic import BaseModel

from corral import App, Context

app = App()


@app.job()
def step(ctx: Context, n: int) -> int:
    if n < 0:
        raise ValueError("negative")
    return n


class PlanParams(BaseModel):
    parts: int


@app.process("plan", params=PlanParams)
class Plan:
    def start(self, ctx: Context) -> None:
        for n in range(ctx.params.parts):
            ctx.spawn("step", {"n": n})

    def finish(self, ctx: Context) -> int:
        return sum(ctx.dependency_results.values())
"""


def test_the_tech_eco_graph_drains_in_dependency_order(corral: Corral) -> None:
    corral.app = EXAMPLE
    submitted = subprocess.run(
        [sys.executable, str(EXAMPLE), corral.url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    batch = submitted.stdout.strip()
    before = corral.json("graph", batch, "--json")
    assert before["counts"]["waiting"] == 10 and before["counts"]["starting"] == 11
    eco = next(n for n in before["nodes"] if n["job"] == "eco")
    why = corral.ok("why", eco["id"])
    assert "it waits for 2 dependencies to end" in why
    corral.ok("worker", "--once")
    after = corral.json("graph", batch, "--json")
    assert after["done"] and after["counts"]["completed"] == 21
    shown = corral.json("show", eco["id"], "--json")
    assert [d["status"] for d in shown["dependencies"]] == ["completed", "completed"]
    assert shown["result"]["saving"] == -12.5 * shown["result"]["i"]
    # Each eco became runnable (and so ran) only once both of its dependencies had ended.
    shows = {p["id"]: p for p in corral.show_many([n["id"] for n in after["nodes"]])}
    for dependent, dependency in after["edges"]:
        [promoted] = [e for e in shows[dependent]["history"] if e["to"] == "starting"]
        assert promoted["detail"] == {"reason": "dependencies_done"}
        assert shows[dependency]["finished_at"] <= promoted["at"]
    text = corral.ok("graph", batch)
    assert f"batch {batch}: 21 processes, done: 21 completed" in text


def test_submit_depends_on_and_a_failure_cancels_the_dependent(
    corral: Corral, tmp_path: Path
) -> None:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    bad = corral.submit("step", "n=-1")
    good = corral.submit("step", "n=2")
    child = corral.ok("submit", "step", "-p", "n=3", "--depends-on", bad, "--depends-on", good)
    child_id = child.split()[0]
    assert corral.show(child_id)["status"] == "waiting"
    fan_in = corral.ok(
        "submit", "step", "-p", "n=4", "--depends-on", bad[:30], "--on-dependency-failure", "run"
    ).split()[0]
    corral.ok("worker", "--once")
    assert corral.show(bad)["status"] == "failed"
    shown = corral.json("show", child_id, "--json")
    assert shown["status"] == "canceled"
    last = shown["history"][-1]
    assert last["detail"] == {"reason": "dependency_failed", "caused_by": bad, "root_cause": bad}
    assert corral.show(fan_in)["status"] == "completed"
    # Retrying the failed one says what depends on it; --with-dependents resumes them.
    hint = corral.ok("retry", bad)
    assert "corral retry --with-dependents" in hint
    corral.ok("worker", "--once")  # it fails again; the child stays canceled
    assert corral.show(child_id)["status"] == "canceled"
    resumed = corral.json("retry", bad, "--with-dependents", "--json")
    assert resumed["resumed_dependents"] == [child_id]
    assert corral.show(child_id)["status"] == "waiting"
    r = corral.run("submit", "step", "-p", "n=1", "--on-dependency-failure", "sometimes")
    assert r.returncode == 2 and "on_dependency_failure must be" in r.stderr
    r = corral.run("submit", "step", "-p", "n=1", "--depends-on", "nonsense")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_execute_drives_a_process_and_the_children_it_spawns(
    corral: Corral, tmp_path: Path
) -> None:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    out = corral.run("execute", "plan", "-p", "parts=4", "--json")
    assert out.returncode == 0, out.stderr
    assert '"result": 6' in out.stdout
    parts = corral.json("list", "--job", "step", "--json")
    assert sorted(p["status"] for p in parts) == ["completed"] * 4


def test_jobs_shows_each_job_limits_schedule_and_policy(corral: Corral, tmp_path: Path) -> None:
    app = tmp_path / "limits.py"
    app.write_text(
        "from corral import App, Context\n"
        "app = App()\n"
        "@app.job(concurrency=2, concurrency_key='customer', rate='5/s')\n"
        "def call(ctx: Context, customer: str) -> None: ...\n"
        "@app.job(cron='0 3 * * *', timezone='Europe/Paris', on_dependency_failure='run')\n"
        "def nightly(ctx: Context) -> None: ...\n"
    )
    corral.app = app
    by_name = {j["name"]: j for j in corral.json("jobs", "--json")}
    assert (by_name["call"]["concurrency"], by_name["call"]["concurrency_key"]) == (2, "customer")
    assert by_name["call"]["rate"] == "5/s"
    assert by_name["nightly"]["cron"] == "0 3 * * * (Europe/Paris)"
    assert by_name["nightly"]["on_dependency_failure"] == "run"
    text = corral.ok("jobs")
    assert "at most 2 running per customer; starts at most 5/s" in text
