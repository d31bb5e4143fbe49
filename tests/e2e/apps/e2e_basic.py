"""Jobs for the end-to-end tests of the CLI, `work` and `execute` (loaded with --app)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from corral import App, Context

# E2E_LEASE_SECONDS shortens the lease (and so how soon a cancel request reaches a handler:
# the lease renewer, every lease/3, brings it).
app = App(lease_seconds=float(os.environ.get("E2E_LEASE_SECONDS", "30")))


def append_line(path: str, line: str) -> None:
    """Append one line atomically (O_APPEND) and durably (fsync) before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@app.job()
def add(ctx: Context, a: int, b: int = 2) -> int:
    return a + b


@app.job()
def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"


@app.job()
def record(ctx: Context, path: str, sleep: float = 0.0) -> str:
    """Leaves evidence of every run: the process id, one line per execution."""
    time.sleep(sleep)
    append_line(path, ctx.process_id)
    return ctx.process_id


@app.job()
def nap(ctx: Context, seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.job()
def boom(ctx: Context, message: str = "kaboom") -> None:
    raise ValueError(message)


@app.job()
async def double(ctx: Context, x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


class CountParams(BaseModel):
    n: int
    path: str | None = None


@app.process("count_to", params=CountParams)
class CountTo:
    """start -> step n times -> finish; the result is the sum 1 + 2 + ... + n."""

    def start(self, ctx: Context[CountParams]) -> None:
        ctx.store.update(i=0, total=0)

    def step(self, ctx: Context[CountParams]) -> bool:
        ctx.store["i"] += 1
        ctx.store["total"] += ctx.store["i"]
        if ctx.params.path:
            append_line(ctx.params.path, f"{ctx.process_id} {ctx.store['i']}")
        ctx.progress(ctx.store["i"], ctx.params.n)
        return bool(ctx.store["i"] >= ctx.params.n)

    def finish(self, ctx: Context[CountParams]) -> dict[str, Any]:
        return {"steps": ctx.store["i"], "total": ctx.store["total"]}


@app.process("async_count", params=CountParams)
class AsyncCount:
    async def step(self, ctx: Context[CountParams]) -> bool:
        await asyncio.sleep(0.001)
        ctx.store["i"] = ctx.store.get("i", 0) + 1
        return bool(ctx.store["i"] >= ctx.params.n)

    async def finish(self, ctx: Context[CountParams]) -> int:
        return int(ctx.store["i"])


class FragileParams(BaseModel):
    marker: str
    fail_at: int = 2


@app.process("fragile", params=FragileParams)
class Fragile:
    """Fails in its `fail_at`-th step; its rollback leaves a marker file."""

    def start(self, ctx: Context[FragileParams]) -> None:
        ctx.store["steps"] = 0

    def step(self, ctx: Context[FragileParams]) -> bool:
        ctx.store["steps"] += 1
        if ctx.store["steps"] >= ctx.params.fail_at:
            raise RuntimeError(f"step {ctx.store['steps']} broke")
        return False

    def rollback(self, ctx: Context[FragileParams]) -> bool:
        Path(ctx.params.marker).write_text(f"rolled back after {ctx.store['steps']} steps\n")
        return True


class GatedParams(BaseModel):
    gate: str
    steps: int = 4
    fail_at: int = 3


@app.process("gated", params=GatedParams)
class Gated:
    """Fails in step `fail_at` while the file `gate` does not exist."""

    def start(self, ctx: Context[GatedParams]) -> None:
        ctx.store.update(starts=ctx.store.get("starts", 0) + 1, done=0)

    def step(self, ctx: Context[GatedParams]) -> bool:
        n = ctx.store["done"] + 1
        if n == ctx.params.fail_at and not Path(ctx.params.gate).exists():
            raise RuntimeError(f"gate closed at step {n}")
        ctx.store["done"] = n
        return bool(n >= ctx.params.steps)

    def finish(self, ctx: Context[GatedParams]) -> dict[str, Any]:
        return dict(ctx.store)

    def rollback(self, ctx: Context[GatedParams]) -> None:
        ctx.store["rollbacks"] = ctx.store.get("rollbacks", 0) + 1


class LoopParams(BaseModel):
    marker: str


@app.process("looper", params=LoopParams)
class Looper:
    """A step of up to 30 s that heartbeats (and so notices a cancel request)."""

    def step(self, ctx: Context[LoopParams]) -> bool:
        append_line(ctx.params.marker, "step")
        for _ in range(600):
            ctx.heartbeat()
            time.sleep(0.05)
        return False

    def rollback(self, ctx: Context[LoopParams]) -> None:
        append_line(ctx.params.marker, "rollback")


@app.handler(status="failing", order=110)
def cleanup(ctx: Context) -> None:
    """The generic rollback of every job without its own."""
