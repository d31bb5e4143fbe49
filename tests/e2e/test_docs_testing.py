"""docs/testing.md: its jobs and its tests, written out as a user would copy them, pass
under pytest in a directory of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_docs_blocks import blocks, write_files


def test_the_testing_guide_runs(tmp_path: Path) -> None:
    files = write_files("testing.md", tmp_path)
    assert set(files) == {"tasks.py", "test_tasks.py"}
    tests = [
        line for line in files["test_tasks.py"].read_text().splitlines() if "def test_" in line
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "PYTEST_"))}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "test_tasks.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(tests)} passed" in r.stdout, r.stdout
    # Nothing but the in-memory database: no file was created beside the tests.
    assert not list(tmp_path.glob("*.db*")), list(tmp_path.iterdir())
    assert all(b.kind == "file" for b in blocks("testing.md"))
