"""The Python side of the Node.js worker example: the job's schema and policies, no
handler. `corral serve` validates what clients submit against it and settles what the
Node worker reports with its retry policy; Python workers never claim it.

    corral --app examples/workers/node/app.py serve
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from corral import App, Retry


class ResizeParams(BaseModel):
    image: str
    width: int = Field(gt=0)
    #: How many steps the worker takes (each one reports progress).
    steps: int = Field(default=5, ge=1, le=1000)


app = App(lease_seconds=float(os.environ.get("CORRAL_LEASE_SECONDS", "30")))

app.external("resize", params=ResizeParams, retry=Retry(attempts=3, backoff=1), start_to_close=60)
