"""A process that kills its worker (os._exit, as the OOM killer would), and innocent ones
that may run beside it. Both allow two tries of an iteration: enough for an innocent
process to survive one crash it did not cause, not two."""

from __future__ import annotations

import os
import time

from corral import App, Retry

app = App(lease_seconds=float(os.environ.get("E2E_LEASE_SECONDS", "1.0")))


@app.job(retry=Retry(attempts=2))
def innocent(x: int) -> int:
    time.sleep(0.5)
    return x


@app.job(retry=Retry(attempts=2))
def killer() -> None:
    time.sleep(0.1)  # long enough for its innocent neighbours to be running
    os._exit(70)
