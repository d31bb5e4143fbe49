"""Children spawned by a running process (`ctx.spawn`), on every backend: they exist only
if the spawning iteration commits, a retried iteration does not spawn twice, the parent
waits for them and resumes where it left off, reading them in `ctx.dependencies`."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from corral import App, Context, Retry
from corral.model import Status
from tests.integration.common import drain


class PlanParams(BaseModel):
    ns: list[int]
    fail_first: bool = False


@pytest.fixture
def fan(app: App) -> App:
    @app.job()
    def part(ctx: Context[Any], n: int) -> int:
        if n < 0:
            raise ValueError("negative part")
        return n * 10

    @app.process("plan", params=PlanParams, retry=Retry(attempts=3, backoff=0.0))
    class Plan:
        """The error-kernel's planning step: split the job into parts, then gather them."""

        def start(self, ctx: Context[Any]) -> None:
            ctx.store["parts"] = [ctx.spawn("part", {"n": n}) for n in ctx.params.ns]
            if ctx.attempt == 1 and ctx.params.fail_first:
                raise RuntimeError("the first try dies after spawning")

        def step(self, ctx: Context[Any]) -> bool:
            seen = ctx.dependencies
            ctx.store["seen"] = {k: v["status"] for k, v in seen.items()}
            results = ctx.dependency_results.values()
            ctx.store["total"] = sum(v for v in results if isinstance(v, int))
            return True

        def finish(self, ctx: Context[Any]) -> int:
            return int(ctx.store["total"])

    return app


def test_a_parent_waits_for_its_children_then_resumes_with_their_results(fan: App) -> None:
    p = fan.submit("plan", {"ns": [1, 2, 3], "fail_first": False})
    drain(fan)
    done = fan.get(p.id)
    assert done.status is Status.COMPLETED and done.result == 60
    parts = done.store["parts"]
    assert isinstance(parts, list) and len(parts) == 3
    assert [fan.get(c).status for c in parts] == [Status.COMPLETED] * 3
    assert fan.dependencies(p.id) == (sorted(parts), [])
    moves = [(e.from_status, e.to_status) for e in fan.history(p.id) if e.kind == "transition"]
    assert moves == [
        (Status.STARTING, Status.WAITING),
        (Status.WAITING, Status.RUNNING),
        (Status.RUNNING, Status.ENDING),
        (Status.ENDING, Status.COMPLETED),
    ]


def test_a_retried_iteration_does_not_spawn_twice(fan: App) -> None:
    p = fan.submit("plan", {"ns": [4, 5], "fail_first": True})
    drain(fan)
    done = fan.get(p.id)
    assert done.status is Status.COMPLETED and done.result == 90
    # Only the committed try's children exist: two parts, not four.
    assert len(fan.list(job="part", limit=100)) == 2


def test_a_failed_child_is_seen_by_its_parent(fan: App) -> None:
    p = fan.submit("plan", {"ns": [1, -1], "fail_first": False})
    drain(fan)
    done = fan.get(p.id)
    assert done.status is Status.COMPLETED and done.result == 10
    assert sorted(done.store["seen"].values()) == ["completed", "failed"]  # type: ignore[union-attr]


def test_a_function_job_cannot_spawn(app: App) -> None:
    @app.job()
    def lone(ctx: Context[Any]) -> None:
        ctx.spawn("lone")

    p = app.submit("lone")
    drain(app)
    failed = app.get(p.id)
    assert failed.status is Status.FAILED and failed.error is not None
    assert "is a function: spawn children from a multi-step process" in failed.error.message
