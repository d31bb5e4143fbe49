"""The API's routes, a module per area: `processes` (a client's processes), `bulk` (cancel
or retry everything a filter matches), `stats`, and `worker` (the worker protocol)."""

from __future__ import annotations

from fastapi import APIRouter

from corral.http.routes import bulk, processes, stats, worker

ROUTERS: list[APIRouter] = [processes.router, bulk.router, stats.router, worker.router]
