"""Jobs for the crash tests (loaded with --app). The lease comes from E2E_LEASE_SECONDS
(default 30 s): the crash tests shorten it so that a killed worker's processes are taken
over within a second or two."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from pydantic import BaseModel

from corral import App, Context, Retry

app = App(lease_seconds=float(os.environ.get("E2E_LEASE_SECONDS", "30")))


def append_line(path: str, line: str) -> None:
    """Append one line atomically (O_APPEND) and durably (fsync) before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class CounterParams(BaseModel):
    steps: int = 30
    audit: str


# Many attempts: under the killer loop one iteration may lose several workers in a row.
@app.process("counter", params=CounterParams, retry=Retry(attempts=20, backoff=0.1))
class Counter:
    """Each step adds 1 to store["count"] and appends "<process id> <count>" to the audit
    file (durably, before returning). The store is exactly-once, the audit at-least-once."""

    def step(self, ctx: Context[CounterParams]) -> bool:
        count = int(ctx.store.get("count", 0)) + 1
        ctx.store["count"] = count
        pause = random.uniform(0, 0.05)
        time.sleep(pause / 2)
        append_line(ctx.params.audit, f"{ctx.process_id} {count}")
        time.sleep(pause / 2)
        ctx.progress(count, ctx.params.steps)
        return count >= ctx.params.steps

    def finish(self, ctx: Context[CounterParams]) -> int:
        return int(ctx.store["count"])


class StuckParams(BaseModel):
    marker: str
    seconds: float = 30.0


@app.process("stuck", params=StuckParams, retry=Retry(attempts=1))
class Stuck:
    """Its start takes `seconds`; its rollback leaves `<marker>.rollback`."""

    def start(self, ctx: Context[StuckParams]) -> None:
        append_line(ctx.params.marker, f"start attempt {ctx.attempt}")
        time.sleep(ctx.params.seconds)

    def step(self, ctx: Context[StuckParams]) -> bool:
        return True

    def rollback(self, ctx: Context[StuckParams]) -> None:
        append_line(ctx.params.marker + ".rollback", ctx.process_id)


@app.job()
def nap_once(ctx: Context, seconds: float, marker: str) -> int:
    """Sleeps `seconds` on its first run only; every run appends a line to `marker`."""
    append_line(marker, f"run attempt {ctx.attempt}")
    runs = len(Path(marker).read_text().splitlines())
    if runs == 1:
        time.sleep(seconds)
    return runs


class SlowParams(BaseModel):
    audit: str
    steps: int = 2
    seconds: float = 1.0


@app.process("slow_counter", params=SlowParams, retry=Retry(attempts=5))
class SlowCounter:
    """Like `counter`, with slow steps; the store also records which worker process
    (pid) committed each step, so that a stale worker's write would show."""

    def step(self, ctx: Context[SlowParams]) -> bool:
        count = int(ctx.store.get("count", 0)) + 1
        ctx.store["count"] = count
        ctx.store["by"] = [*ctx.store.get("by", []), os.getpid()]
        append_line(ctx.params.audit, f"{ctx.process_id} {count} {os.getpid()}")
        time.sleep(ctx.params.seconds)
        return count >= ctx.params.steps

    def finish(self, ctx: Context[SlowParams]) -> list[int]:
        return list(ctx.store["by"])
