"""A process that kills its worker (os._exit, the OOM killer) takes down what that worker
ran beside it once, but is never claimed again beside them: a worker takes over one
expired lease at a time. Real `corral worker` processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import backend_url
from tests.e2e.conftest import Corral

KILLER_APP = Path(__file__).parent / "apps" / "e2e_killer.py"
INNOCENTS = 3


@pytest.fixture(params=["sqlite", "postgres"])
def killer_corral(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Corral]:
    with backend_url(str(request.param), tmp_path) as url:
        c = Corral(tmp_path, KILLER_APP)
        c.url = url
        c.extra_env["E2E_LEASE_SECONDS"] = "1.0"
        try:
            yield c
        finally:
            c.cleanup()


@pytest.mark.slow
def test_a_worker_killer_fails_alone(killer_corral: Corral) -> None:
    c = killer_corral
    killer = c.submit("killer")
    innocents = [c.submit("innocent", f"x={x}") for x in range(INNOCENTS)]
    # One worker claims all four at once: the killer takes the innocents down with it.
    workers = [c.start_worker("--concurrency", "4")]
    deaths = 0
    deadline = time.monotonic() + 90
    while True:
        # The dead first: a worker the killer took down just now is counted and replaced
        # before the test decides that everything has ended.
        for i, w in enumerate(workers):
            if w.poll() is not None:
                assert w.returncode == 70, c.log_of(w)[-2000:]
                deaths += 1
                workers[i] = c.start_worker("--concurrency", "4")
        processes = {p["id"]: p for p in c.list()}
        if all(processes[pid]["status"] in ("completed", "failed") for pid in processes):
            break
        assert time.monotonic() < deadline, {pid: p["status"] for pid, p in processes.items()}
        if len(workers) < 2:
            workers.append(c.start_worker("--concurrency", "4"))
        time.sleep(0.2)
    for w in workers:
        assert c.stop(w) == 0, c.log_of(w)[-2000:]
    shown = {pid: c.show(pid) for pid in [killer, *innocents]}
    # The killer failed on its own account, after its two tries...
    assert shown[killer]["status"] == "failed", shown[killer]
    assert shown[killer]["error"]["type"] == "LeaseExpired"
    assert deaths == 2
    # ...and every innocent completed, taken over once at most.
    for x, pid in enumerate(innocents):
        assert (shown[pid]["status"], shown[pid]["result"]) == ("completed", x), shown[pid]
        expired = [e for e in shown[pid]["history"] if e["kind"] == "lease_expired"]
        assert len(expired) <= 1, shown[pid]["history"]
