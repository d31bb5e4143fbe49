"""docs/fastapi.md: its app and its tests pass under pytest as a user would copy them; and
the API, on a SQLite file, gets its result from the doc's worker command run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Corral
from tests.e2e.test_docs_blocks import commands, write_files

pytest.importorskip("fastapi", reason="the dev extra installs FastAPI")
pytest.importorskip("httpx", reason="the dev extra installs httpx")

#: The API in one process, against the database the worker uses: submit, then wait.
CLIENT = """
import json, sys
from fastapi.testclient import TestClient
import api

with TestClient(api.api) as client:
    made = client.post("/thumbnails", json={"url": "dog.png", "width": 64}).json()
    done = client.get(f"/thumbnails/{made['id']}/result", params={"timeout": 60}).json()
print(json.dumps(done))
"""


def clean_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "PYTEST_"))}
    return {**env, **more}


def test_the_fastapi_guides_tests_pass(tmp_path: Path) -> None:
    files = write_files("fastapi.md", tmp_path)
    assert set(files) == {"tasks.py", "api.py", "test_api.py"}
    tests = files["test_api.py"].read_text().count("\ndef test_")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_api.py"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{tests} passed" in r.stdout, r.stdout


def test_the_api_and_the_docs_worker_command_share_a_database(tmp_path: Path) -> None:
    write_files("fastapi.md", tmp_path)
    line = commands("fastapi.md")["worker"]
    assert line.startswith("corral ")
    corral = Corral(tmp_path, app=None)
    corral.url = f"sqlite:///{tmp_path / 'corral.db'}"
    worker = corral.start(*line.split()[1:])
    try:
        r = subprocess.run(
            [sys.executable, "-c", CLIENT],
            cwd=tmp_path,
            env=clean_env(CORRAL_DATABASE_URL=corral.url),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        done = json.loads(r.stdout)
        assert done["status"] == "completed", done
        assert done["result"] == {"thumbnail": "dog.png?w=64", "width": 64}
        assert corral.stop(worker) == 0
        log = corral.log_of(worker)
        assert "making a 64 px thumbnail of dog.png" in log, log
    finally:
        corral.cleanup()
