"""The API's routes, a module per area: `processes` (a client's processes), `bulk` (cancel
or retry everything a filter matches), `stats`. The worker protocol comes as a module of
its own beside these, with its router, added to `ROUTERS`."""

from __future__ import annotations

from fastapi import APIRouter

from corral.http.routes import bulk, processes, stats

ROUTERS: list[APIRouter] = [processes.router, bulk.router, stats.router]
