"""Jobs for tests/integration/test_clock_skew.py: workers on machines whose clocks disagree.

A process started with CORRAL_TEST_CLOCK_SKEW=S runs with its wall clock S seconds off:
`time.time()` and `time.time_ns()` are shifted when this module is imported, before the
worker reads any time, as on a machine whose clock is wrong. Every handler call notes its
start in table skew_attempt, by the server's clock: what the test measures retries with.
"""

from __future__ import annotations

import os
import time

SKEW = float(os.environ.get("CORRAL_TEST_CLOCK_SKEW", "0"))
if SKEW:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + SKEW
    time.time_ns = lambda: _time_ns() + int(SKEW * 1e9)

import psycopg  # noqa: E402

from corral import App, Context, Retry  # noqa: E402

#: Short leases: a lease taken by a worker whose clock is ahead, or given by one whose
#: clock is behind, would show within seconds.
app = App(lease_seconds=float(os.environ.get("CORRAL_TEST_LEASE_SECONDS", "2")))
#: The delay before a failed try is tried again.
BACKOFF = 2.0
TIMEOUTS = {"start_to_close": 30.0, "heartbeat_timeout": 10.0}


def note_attempt(ctx: Context, job: str) -> None:
    with psycopg.connect(os.environ["CORRAL_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO skew_attempt (process_id, job, attempt, skew, at) "
            "VALUES (%s, %s, %s, %s, extract(epoch FROM clock_timestamp()))",
            (ctx.process_id, job, ctx.attempt, SKEW),
        )


@app.job(**TIMEOUTS)
def beat(ctx: Context, seconds: float = 3.0) -> int:
    """Runs longer than a lease, heartbeating: only renewals keep it."""
    note_attempt(ctx, "beat")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.heartbeat()
        time.sleep(0.2)
    return 1


@app.job(retry=Retry(attempts=3, backoff=BACKOFF, jitter=0.0), **TIMEOUTS)
def flaky(ctx: Context) -> int:
    """Fails its first try: the second comes BACKOFF seconds later."""
    note_attempt(ctx, "flaky")
    if ctx.attempt == 1:
        raise RuntimeError("the first try fails")
    return ctx.attempt
