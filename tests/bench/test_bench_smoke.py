"""The benchmark suite's smoke run: every workload once on corral, tiny sizes, in seconds.

It runs `python bench/run.py --smoke` as CI would and checks that it exits 0 (no workload
broke) and printed the results table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke_runs_every_workload_and_prints_a_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert "| workload | unit | corral (SQLite)" in out, out
    rows = ("W1 enqueue", "W2 drain", "W3 latency p50", "W4 claim", "W5 graph submit")
    for row in (*rows, "W5 graph drain", "W6"):
        assert f"| {row}" in out, f"no {row} row in:\n{out}"
    assert "error:" not in out.split("**corral against")[0], out
