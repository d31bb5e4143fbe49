"""docs/from-celery-and-rq.md: corral's side of "one job, three ways" runs as written, from
Python and from the shell: the same custom id is one process, scheduled ten minutes out,
and a worker leaves it for then."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.e2e.conftest import Corral
from tests.e2e.test_docs_blocks import blocks, commands, write_files

FROM_PYTHON = """
import json
import billing

p = billing.charge_later(42)
print(json.dumps({"id": p.id, "outcome": p.outcome}))
billing.app.close()
"""


def test_one_job_three_ways(tmp_path: Path) -> None:
    doc = "from-celery-and-rq.md"
    assert set(write_files(doc, tmp_path)) == {"billing.py"}
    assert {b.arg for b in blocks(doc) if b.kind == "not run"} == {
        "Celery, for comparison",
        "RQ, for comparison",
    }
    corral = Corral(tmp_path, app=None)
    run = commands(doc)
    try:
        r = subprocess.run(
            [sys.executable, "-c", FROM_PYTHON],
            cwd=tmp_path,
            env=corral.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert '"outcome": "created"' in r.stdout
        pid = r.stdout.split('"id": "')[1].split('"')[0]

        # The shell's submit of the same order is the same process.
        out = corral.ok(*run["submit"].split()[1:]).split()
        assert out == [pid, "existing"]

        # A worker with nothing due now exits when idle (--once), leaving it scheduled.
        assert corral.run(*run["worker"].split()[1:], "--once").returncode == 0
        p = corral.show(pid)
        assert p["state"] == "scheduled"
        delay = datetime.fromisoformat(p["run_at"]) - datetime.fromisoformat(p["created_at"])
        assert 500 < delay.total_seconds() <= 600
    finally:
        corral.cleanup()
