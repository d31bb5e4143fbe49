"""The HTTP API over every backend: an App with a few jobs, a TestClient on its API, and
tokens for two clients and an admin."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corral import App, Context, Invalid
from corral.http import create_app
from corral.http.tokens import create_token
from tests.backends import backend_url

with warnings.catch_warnings():
    # Starlette asks for httpx2 beside its test client; httpx (what we have) still works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

API = "/api/v1"


class Order(BaseModel):
    item: str
    quantity: int


def make_app(url: str) -> App:
    app = App(url)

    @app.job()
    def add(ctx: Context, a: int, b: int) -> int:
        return a + b

    @app.job(params=Order)
    def order(ctx: Context[Order]) -> str:
        return ctx.params.item

    @app.process("checked", params=Order)
    class Checked:
        """The error kernel's flow: a worker validates what a client submitted."""

        def validate(self, ctx: Context[Order]) -> None:
            if ctx.params.quantity < 1:
                raise Invalid(f"cannot order {ctx.params.quantity} of {ctx.params.item}")

        def start(self, ctx: Context[Order]) -> None:
            pass

        def step(self, ctx: Context[Order]) -> bool:
            return True

        def finish(self, ctx: Context[Order]) -> object:
            return {"ordered": ctx.params.quantity}

    return app


@dataclass
class Client:
    """A TestClient speaking for one token."""

    http: Any
    token: str

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.http.get(API + path, headers=self._headers(), **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.http.post(API + path, json=json, headers=self._headers(), **kw)


@dataclass
class Api:
    app: App
    http: Any
    shop: Client
    blog: Client
    admin: Client

    def submit(self, who: Client, **body: Any) -> dict[str, Any]:
        body.setdefault("job", "add")
        body.setdefault("params", {"a": 1, "b": 2})
        r = who.post("/processes", body)
        assert r.status_code in (200, 201), r.text
        found: dict[str, Any] = r.json()
        return found


def api_for(app: App) -> Api:
    http = TestClient(create_app(app))
    now = app.clock()
    tokens = {
        name: create_token(app.storage, name, admin=name == "ops", now=now)[1]
        for name in ("shop", "blog", "ops")
    }
    return Api(
        app,
        http,
        Client(http, tokens["shop"]),
        Client(http, tokens["blog"]),
        Client(http, tokens["ops"]),
    )


@pytest.fixture
def api(backend: str, tmp_path: Path) -> Iterator[Api]:
    with backend_url(backend, tmp_path) as url:
        app = make_app(url)
        try:
            yield api_for(app)
        finally:
            app.close()
