"""Jobs for the supervisor tests (loaded with --app): a quick job that records each run of
it in a file (E2E_RUNS), so that a test can tell that every process ran exactly once. The
lease comes from E2E_LEASE_SECONDS (default 3 s: the registry's rows, refreshed with the
renewals, then say within a second what each worker runs). With E2E_DIE_AT_START set, a
worker started by a supervisor dies as it loads the app (the crash-loop test)."""

from __future__ import annotations

import os
import time

from corral import App

if os.environ.get("E2E_DIE_AT_START") and os.environ.get("CORRAL_SUPERVISOR_PID"):
    os._exit(9)

app = App(lease_seconds=float(os.environ.get("E2E_LEASE_SECONDS", "3")))


@app.job
def tick(n: int) -> int:
    time.sleep(float(os.environ.get("E2E_TICK_SECONDS", "0.01")))
    fd = os.open(os.environ["E2E_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{n}\n".encode())
    finally:
        os.close(fd)
    return n
