"""A database that cannot be reached answers 503 with Retry-After, never 500: SQLite's write
lock held past the busy timeout, and PostgreSQL gone (a TCP proxy in front of it stops)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.http.conftest import api_for, make_app
from tests.integration.test_postgres_outage import Proxy, proxied_url  # noqa: F401


def test_a_locked_sqlite_file_answers_503(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    app = make_app(f"sqlite:///{path}?busy_timeout=0.2")
    try:
        api = api_for(app)
        # Given another process holds the write lock (a worker stopped with SIGSTOP)...
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            r = api.shop.post("/processes", {"job": "add", "params": {"a": 1, "b": 2}})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # ...a submit answers 503 and asks to try again; then it goes through.
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) > 0 and "lock" in r.json()["detail"]
        again = api.shop.post("/processes", {"job": "add", "params": {"a": 1, "b": 2}})
        assert again.status_code == 201
    finally:
        app.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgresql_gone_answers_503_and_recovers(proxied_url: tuple[str, Proxy]) -> None:  # noqa: F811
    url, proxy = proxied_url
    app = make_app(url + ("&" if "?" in url else "?") + "connect_timeout=1")
    try:
        api = api_for(app)
        made = api.submit(api.shop)
        proxy.stop()
        # Each waits out the pool's timeout (10 s): two requests, a read and a write.
        for method, path in (("GET", f"/processes/{made['id']}"), ("POST", "/processes")):
            r = (
                api.shop.post(path, {"job": "add", "params": {"a": 1, "b": 2}})
                if method == "POST"
                else api.shop.get(path)
            )
            assert r.status_code == 503, (path, r.text)
            assert int(r.headers["Retry-After"]) > 0
        proxy.start()
        deadline = time.monotonic() + 30
        while api.shop.get(f"/processes/{made['id']}").status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert api.shop.get(f"/processes/{made['id']}").json()["id"] == made["id"]
    finally:
        app.close()
