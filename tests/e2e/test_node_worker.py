"""The Node.js worker of examples/workers/node/ against a real `corral serve`, on SQLite and
PostgreSQL: a normal run with heartbeats and progress, and a cancel delivered through the
heartbeat. Skipped where `node` is missing, except in CI (CI=true), where it must run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import backend_url
from tests.e2e.conftest import Corral, wait_until
from tests.e2e.test_http_serve import free_port, up

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).resolve().parents[2] / "examples" / "workers" / "node"
NODE = shutil.which("node")


def require_node() -> str:
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node (Node.js 20 or later) is needed for the worker protocol's e2e test")
        pytest.skip("node is not installed")
    return NODE


class Served:
    """`corral serve` with the Node example's app, a client token and a worker token."""

    def __init__(self, corral: Corral, base: str, client: str, worker: str) -> None:
        self.corral, self.base, self.worker_token = corral, base, worker
        self.auth = {"Authorization": f"Bearer {client}"}

    def submit(self, **params: Any) -> str:
        body = {"job": "resize", "params": params}
        r = httpx.post(f"{self.base}/api/v1/processes", json=body, headers=self.auth)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def get(self, pid: str) -> dict[str, Any]:
        r = httpx.get(f"{self.base}/api/v1/processes/{pid}", headers=self.auth)
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found

    def node(self, *args: str, **env: str) -> subprocess.Popen[str]:
        environ = {
            **os.environ,
            "CORRAL_URL": self.base,
            "CORRAL_TOKEN": self.worker_token,
            "CORRAL_WORKER": "node-e2e",
            "STEP_MS": "50",
            "HEARTBEAT_MS": "100",
            **env,
        }
        return subprocess.Popen(
            [require_node(), str(NODE_DIR / "worker.mjs"), *args],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, corral: Corral, tmp_path: Path) -> Iterator[Served]:
    require_node()
    with backend_url(request.param, tmp_path) as url:
        corral.url = url
        corral.app = NODE_DIR / "app.py"
        client = corral.ok("token", "create", "--client", "shop").splitlines()[-1]
        worker = corral.ok("token", "create", "--client", "fleet", "--worker").splitlines()[-1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = corral.start("serve", "--port", str(port))
        wait_until(lambda: up(base) or server.poll() is not None, timeout=60, what="serve")
        assert server.poll() is None, corral.log_of(server)
        yield Served(corral, base, client, worker)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_the_node_worker_runs_an_external_job(served: Served) -> None:
    pid = served.submit(image="cat.png", width=64, steps=5)
    # Python workers never claim it.
    served.corral.ok("worker", "--once")
    assert served.get(pid)["status"] == "starting"

    node = served.node("--once")
    out, _ = node.communicate(timeout=60)
    assert node.returncode == 0, out
    shown = served.get(pid)
    assert shown["status"] == "completed", out
    assert shown["result"] == {"image": "cat.png", "width": 64, "output": "cat-64.png"}
    assert shown["progress"]["done"] == 5 and shown["progress"]["total"] == 5
    assert '"message":"committed"' in out


def test_a_cancel_reaches_the_node_worker_through_its_heartbeat(served: Served) -> None:
    pid = served.submit(image="big.png", width=8, steps=1000)
    node = served.node()
    try:
        # Its heartbeats carry its progress while the iteration runs.
        wait_until(
            lambda: (served.get(pid)["progress"]["done"] or 0) >= 2, timeout=30, what="progress"
        )
        r = httpx.post(f"{served.base}/api/v1/processes/{pid}/cancel", headers=served.auth)
        assert r.status_code == 200, r.text
        wait_until(lambda: served.get(pid)["status"] == "canceled", timeout=30, what="cancel")
    finally:
        node.send_signal(signal.SIGTERM)
        out, _ = node.communicate(timeout=30)
    assert node.returncode == 0, out
    assert '"status":"canceled"' in out
