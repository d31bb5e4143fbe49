"""Jobs for the PostgreSQL fleet tests (many `corral worker` processes on one database).

Every iteration leaves an audit entry in the store it commits: [phase, step, attempt, pid].
The store is saved only with the iteration's fenced commit, so the audit lists exactly the
committed iterations: a duplicate or a gap means a store write landed twice or was lost.
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from corral import App, Context

# CORRAL_TEST_LEASE_SECONDS shortens the lease, so that a claim whose answer was lost in an
# outage is taken over again soon.
app = App(lease_seconds=float(os.environ.get("CORRAL_TEST_LEASE_SECONDS", "30")))


def audit(ctx: Context, phase: str, step: int = 0) -> None:
    entries = ctx.store.setdefault("audit", [])
    assert isinstance(entries, list)
    entries.append([phase, step, ctx.attempt, os.getpid()])


@app.job()
def square(ctx: Context, x: int, sleep: float = 0.0) -> int:
    if sleep:
        time.sleep(sleep)
    audit(ctx, "run")
    return x * x


class StepsParams(BaseModel):
    steps: int
    sleep: float = 0.0


@app.process("steps", params=StepsParams)
class Steps:
    def start(self, ctx: Context[StepsParams]) -> None:
        ctx.store["n"] = 0
        audit(ctx, "start")

    def step(self, ctx: Context[StepsParams]) -> bool:
        if ctx.params.sleep:
            time.sleep(ctx.params.sleep)
        n = ctx.store["n"]
        assert isinstance(n, int)
        ctx.store["n"] = n + 1
        audit(ctx, "step", n + 1)
        return n + 1 >= ctx.params.steps

    def finish(self, ctx: Context[StepsParams]) -> int:
        audit(ctx, "finish")
        n = ctx.store["n"]
        assert isinstance(n, int)
        return n
