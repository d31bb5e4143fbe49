"""`corral serve` for real: a subprocess on a free port, tokens made and revoked with
`corral token`, a process submitted over HTTP, run by `corral worker`, read back; on
SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.backends import backend_url
from tests.e2e.conftest import Corral, wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_serve_submit_run_and_read(corral: Corral, tmp_path: Path, kind: str) -> None:
    with backend_url(kind, tmp_path) as url:
        corral.url = url
        # A token is printed once, alone on the last line.
        made = corral.ok("token", "create", "--client", "shop", app=None).splitlines()
        token = made[-1]
        assert len(token) >= 40 and " " not in token and "shop" in made[0]
        listed = corral.json("token", "list", app=None)
        assert [t["client"] for t in listed] == ["shop"] and token not in str(listed)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = corral.start("serve", "--port", str(port))
        wait_until(lambda: up(base) or server.poll() is not None, timeout=60, what="serve")
        assert server.poll() is None, corral.log_of(server)
        auth = {"Authorization": f"Bearer {token}"}
        api = f"{base}/api/v1"

        r = httpx.post(f"{api}/processes", json={"job": "add", "params": {"a": 40}}, headers=auth)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        assert httpx.get(f"{api}/processes", headers=auth).json()["processes"][0]["id"] == pid
        assert httpx.get(f"{api}/processes/{pid}").status_code == 401

        corral.ok("worker", "--once")
        shown = httpx.get(f"{api}/processes/{pid}", headers=auth).json()
        assert (shown["status"], shown["result"], shown["client_id"]) == ("completed", 42, "shop")
        # The CLI shows the same process in the same shape.
        cli = corral.show(pid)
        assert {k: cli[k] for k in shown} == shown

        corral.ok("token", "revoke", listed[0]["id"][:13], app=None)
        assert httpx.get(f"{api}/processes/{pid}", headers=auth).status_code == 401

        # SIGTERM: requests in flight finish, then it stops (uvicorn ends by the signal
        # it caught, as a shell expects of a program stopped by one).
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        log = corral.log_of(server)
        # uvicorn's lines come in corral's log format: the access log, then its shutdown.
        assert f'"GET /api/v1/processes/{pid} HTTP/1.1" 200' in log
        assert "Finished server process" in log


def test_serve_needs_the_app(corral: Corral) -> None:
    r = corral.run("serve", app=None)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--app" in r.stderr
    bad = corral.run("token", "create", "--client", " ", app=None)
    assert bad.returncode == 2 and "client" in bad.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_serve_applies_the_timeouts_where_no_worker_runs(
    corral: Corral, tmp_path: Path, kind: str
) -> None:
    """Where only HTTP workers run, no `corral worker` sweeps: the server does. A process
    nobody claims ends `failed` by its schedule-to-close timeout with no worker started."""
    with backend_url(kind, tmp_path) as url:
        corral.url = url
        token = corral.ok("token", "create", "--client", "shop", app=None).splitlines()[-1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = corral.start("serve", "--port", str(port))
        wait_until(lambda: up(base) or server.poll() is not None, timeout=60, what="serve")
        assert server.poll() is None, corral.log_of(server)
        auth = {"Authorization": f"Bearer {token}"}
        api = f"{base}/api/v1"
        body = {"job": "add", "params": {"a": 1}, "schedule_to_close": 1}
        r = httpx.post(f"{api}/processes", json=body, headers=auth)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]

        def ended() -> bool:
            return httpx.get(f"{api}/processes/{pid}", headers=auth).json()["status"] == "failed"

        wait_until(ended, timeout=60, what="the timeout applied by serve")
        shown = httpx.get(f"{api}/processes/{pid}", headers=auth).json()
        assert "schedule_to_close" in str(shown["error"]), shown
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
