"""The FastAPI application of `corral serve`: the API under /api/v1, its OpenAPI document
at /openapi.json and interactive docs at /docs, over one corral App (its jobs validate
what is submitted; its database holds everything, so several servers may share one)."""

from __future__ import annotations

from fastapi import FastAPI

from corral.app import App
from corral.http import errors
from corral.http.routes import ROUTERS

PREFIX = "/api/v1"


def create_app(corral: App) -> FastAPI:
    """The HTTP API over `corral` (`uvicorn.run(create_app(app))`)."""
    api = FastAPI(
        title="corral",
        summary="Durable jobs and multi-step processes over HTTP.",
        version="1",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.corral = corral
    errors.install(api)
    for router in ROUTERS:
        api.include_router(router, prefix=PREFIX, responses=errors.RESPONSES)
    return api
