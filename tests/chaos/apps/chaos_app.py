"""Jobs for the chaos test (loaded with --app by `corral worker` subprocesses).

Every committed iteration leaves an entry `[phase, n, lease_token]` in its process's
store. The store is saved in the same transaction as the iteration's commit and only if
the lease token still holds, so the entries are the audit of the committed iterations:
one per iteration, in order, with strictly increasing fencing tokens.

Every iteration that *runs* also appends a line to an audit file of its worker process
(`$CHAOS_AUDIT_DIR/<pid>.log`) before doing its work: "<process id> <phase> <n> <index>
<token>", where `index` is how many entries the store held when the iteration began.
That file is at least once (a killed iteration leaves its line, its commit never lands),
and it lets the checker catch a stale commit: a committed entry whose place in the store
was also taken by an iteration holding a *later* token means the earlier lease had been
taken over before its commit landed.

`gather` is a node of a task graph: it sums the results of its dependencies.

Two jobs misbehave on purpose: `poison` returns a value no database can store (it must
fail alone, with its own error), and `killer` kills its worker with os._exit (as the OOM
killer would): it must fail alone after its attempts, taking no healthy process with it.

CHAOS_LEASE_SECONDS sets the lease (short, so that killed workers' leases are taken over
soon); CHAOS_MAX_SLEEP_MS the longest pause of an iteration's "work".
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

from pydantic import BaseModel

from corral import App, Context, Retry

app = App(lease_seconds=float(os.environ.get("CHAOS_LEASE_SECONDS", "1.0")))

#: Under the killer loop an iteration may lose its worker several times in a row, and a
#: PostgreSQL restart makes every running iteration lose its lease: many attempts, short
#: backoff. `attempts` also bounds how often a killed iteration is tried again.
RETRY = Retry(attempts=50, backoff=0.05, max_delay=0.5)

_MAX_SLEEP = float(os.environ.get("CHAOS_MAX_SLEEP_MS", "20")) / 1000
_audit_fd: int | None = None
_audit_lock = threading.Lock()


def _audit_line(line: str) -> None:
    global _audit_fd
    directory = os.environ.get("CHAOS_AUDIT_DIR")
    if not directory:
        return
    with _audit_lock:
        if _audit_fd is None:
            path = os.path.join(directory, f"{os.getpid()}.log")
            _audit_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # One write(2) on an O_APPEND file: the line lands whole. A SIGKILL does not lose it
    # (it is in the kernel's page cache), so no fsync is needed.
    os.write(_audit_fd, (line + "\n").encode())


def iteration(ctx: Context[Any], phase: str, n: int) -> None:
    """Record this iteration (file now, store with the commit), then do a little work."""
    entries = ctx.store.setdefault("audit", [])
    assert isinstance(entries, list)
    _audit_line(f"{ctx.process_id} {phase} {n} {len(entries)} {ctx.lease_token}")
    entries.append([phase, n, ctx.lease_token])
    time.sleep(random.uniform(0.001, max(_MAX_SLEEP, 0.001)))


@app.job(retry=RETRY)
def square(ctx: Context[Any], x: int) -> int:
    iteration(ctx, "run", 0)
    return x * x


class CounterParams(BaseModel):
    steps: int


@app.process("counter", params=CounterParams, retry=RETRY)
class Counter:
    """`steps` steps, each adding 1 to store["count"]; the result is the count."""

    def start(self, ctx: Context[CounterParams]) -> None:
        ctx.store["count"] = 0
        iteration(ctx, "start", 0)

    def step(self, ctx: Context[CounterParams]) -> bool:
        count = ctx.store["count"]
        assert isinstance(count, int)
        ctx.store["count"] = count + 1
        iteration(ctx, "step", count + 1)
        return count + 1 >= ctx.params.steps

    def finish(self, ctx: Context[CounterParams]) -> int:
        iteration(ctx, "finish", 0)
        count = ctx.store["count"]
        assert isinstance(count, int)
        return count


@app.job(retry=RETRY)
def gather(ctx: Context[Any]) -> int:
    """A node of a task graph: the sum of its dependencies' results, read once they have
    all completed (it fails if one is not: the checker sees it)."""
    iteration(ctx, "run", 0)
    seen = ctx.dependencies
    if not seen or any(d["status"] != "completed" for d in seen.values()):
        raise RuntimeError(f"ran before its dependencies completed: {seen}")
    total = sum(v for v in ctx.dependency_results.values() if isinstance(v, int))
    return total


#: The exit code of a worker killed by `killer`.
KILLER_EXIT = 70
KILLER_ATTEMPTS = 3


@app.job(retry=Retry(attempts=KILLER_ATTEMPTS))
def killer(ctx: Context[Any]) -> None:
    time.sleep(random.uniform(0.001, max(_MAX_SLEEP, 0.001)))
    os._exit(KILLER_EXIT)


@app.job(retry=RETRY)
def poison(ctx: Context[Any], kind: str) -> object:
    undecodable = os.fsdecode(b"name-\xff")  # a file name that is not UTF-8
    if kind == "store":
        ctx.store["file"] = undecodable
        return None
    return {"ratio": float("nan")} if kind == "nan" else undecodable
