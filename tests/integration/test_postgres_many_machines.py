"""Many machines, one PostgreSQL database: four `corral worker` processes, each with its own
pool of slots and connections (as if on four machines), work through 10,000 processes
submitted in bulk, simple jobs and multi-step processes mixed. Nothing is lost, nothing is
left unfinished, and every iteration's store write lands exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_until
from tests.integration.fleet import fleet, stop_line, wait_started

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKERS = 4
CONCURRENCY = 4
SIMPLE = 8_000
MULTI = 2_000  # of 3, 4 or 5 steps: 2 + steps iterations each
BATCHES = 10
#: Measured from the first submit to the last completion on the 2-core CI machine: 28 s at
#: first, 11 to 25 s since workers commit and claim in one round trip (800 to 1,800
#: iterations/s, depending on what else runs); the bound leaves room for a loaded machine.
BUDGET = 90.0


def test_four_workers_on_one_database_run_10000_processes_exactly_once(tmp_path: Path) -> None:
    with fleet(tmp_path) as f:
        workers = [f.corral.start_worker("--concurrency", str(CONCURRENCY)) for _ in range(WORKERS)]
        wait_started(f.corral, workers)
        began = time.monotonic()
        # Bulk submits while the fleet is already at work, as a busy application would.
        simple, multi = SIMPLE // BATCHES, MULTI // BATCHES
        for b in range(BATCHES):
            f.submit(range(b * simple, (b + 1) * simple), [3 + i % 3 for i in range(multi)])
        submitted = time.monotonic() - began
        assert len(f.simple) + len(f.multi) == SIMPLE + MULTI == 10_000
        wait_until(lambda: f.unfinished() == 0, timeout=BUDGET, interval=0.5, what="the fleet")
        elapsed = time.monotonic() - began
        codes = [f.corral.stop(w) for w in workers]
        logs = [f.corral.log_of(w) for w in workers]
        assert codes == [0] * WORKERS, logs
        by_pid = f.check_exactly_once()
        # Every worker took its share: the claims spread over the four processes.
        iterations = f.expected_iterations
        assert set(by_pid) == {w.pid for w in workers}
        assert min(by_pid.values()) > iterations * 0.05, by_pid
        stops = [stop_line(log) for log in logs]
        assert [s[0] for s in stops] == ["signal"] * WORKERS
        assert sum(s[2] for s in stops) == SIMPLE + MULTI  # completions the workers counted
        assert sum(s[3] for s in stops) == 0  # failed
        assert sum(s[4] for s in stops) == 0  # leases lost
        # No lease expired or was lost, and no history says otherwise.
        notes = f.query(
            "SELECT process_id, kind, detail FROM corral_history "
            "WHERE kind IN ('lease_expired', 'lease_lost')"
        )
        assert notes == []
        print(
            f"\n{SIMPLE + MULTI} processes, {iterations} iterations, {WORKERS} workers x "
            f"{CONCURRENCY}: submitted in {submitted:.1f} s, all done in {elapsed:.1f} s "
            f"({iterations / elapsed:.0f} iterations/s); per worker {sorted(by_pid.values())}"
        )
