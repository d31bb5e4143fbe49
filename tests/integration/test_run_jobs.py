"""Jobs and multi-step processes run to their end: results, stores, async handlers, slots.

On every backend, the App and a worker in one Python process (the command line's side is
in tests/e2e)."""

from __future__ import annotations

import asyncio
import threading
import time

from pydantic import BaseModel

from corral import (
    App,
    Context,
    Status,
)
from tests.integration.common import drain, kinds


def test_a_simple_job_completes_with_its_result(app: App) -> None:
    @app.job()
    def add(ctx: Context, a: int, b: int) -> int:
        return a + b

    p = app.submit("add", {"a": 1, "b": 2})
    assert (p.outcome, p.status) == ("created", Status.STARTING)
    drain(app)
    done = app.wait(p.id, timeout=5)
    assert (done.status, done.result, done.attempt) == (Status.COMPLETED, 3, 0)
    assert kinds(app, p.id) == ["submitted", "transition"]


def test_a_multi_step_process_keeps_its_store_between_iterations(app: App) -> None:
    seen: list[str] = []

    class Params(BaseModel):
        steps: int

    @app.process("count", params=Params)
    class Count:
        def start(self, ctx: Context[Params]) -> None:
            seen.append("start")
            ctx.store["n"] = 0

        def step(self, ctx: Context[Params]) -> bool:
            seen.append("step")
            ctx.store["n"] += 1
            ctx.progress(ctx.store["n"], ctx.params.steps)
            return bool(ctx.store["n"] >= ctx.params.steps)

        def finish(self, ctx: Context[Params]) -> dict[str, int]:
            seen.append("finish")
            return {"n": ctx.store["n"]}

    p = app.submit("count", {"steps": 4})
    drain(app)
    done = app.get(p.id)
    assert seen == ["start", "step", "step", "step", "step", "finish"]
    assert (done.status, done.store, done.result) == (Status.COMPLETED, {"n": 4}, {"n": 4})
    assert (done.progress_done, done.progress_total) == (4, 4)
    moves = [(e.from_status, e.to_status) for e in app.history(p.id) if e.kind == "transition"]
    assert moves == [
        (Status.STARTING, Status.RUNNING),
        (Status.RUNNING, Status.ENDING),
        (Status.ENDING, Status.COMPLETED),
    ]


def test_async_handlers_work_like_plain_ones(app: App) -> None:
    @app.job()
    async def slow_add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a + b

    @app.process("async_steps")
    class AsyncSteps:
        async def step(self, ctx: Context) -> bool:
            await asyncio.sleep(0)
            ctx.store["n"] = ctx.store.get("n", 0) + 1
            return bool(ctx.store["n"] == 3)

    a = app.submit("slow_add", {"a": 2, "b": 3})
    b = app.submit("async_steps")
    drain(app, concurrency=2)
    assert app.get(a.id).result == 5
    assert app.get(b.id).store == {"n": 3} and app.get(b.id).status is Status.COMPLETED


def test_concurrent_slots_complete_every_process_once(app: App) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    @app.job()
    def note(i: int) -> int:
        time.sleep(0.002)
        with lock:
            calls.append(i)
        return i

    ids = [app.submit("note", {"i": i}).id for i in range(60)]
    drain(app, concurrency=4)
    assert sorted(calls) == list(range(60))
    assert {app.get(pid).status for pid in ids} == {Status.COMPLETED}
