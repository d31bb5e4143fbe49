"""The API's routes, a module per area: `processes` (a client's processes), `stats`. The
worker protocol and the bulk actions on a filter come as modules of their own beside
these, each with its router, added to `ROUTERS`."""

from __future__ import annotations

from fastapi import APIRouter

from corral.http.routes import processes, stats, worker

ROUTERS: list[APIRouter] = [processes.router, stats.router, worker.router]
