"""One clock for the fleet: three `corral worker` processes on one PostgreSQL database, one
of them on a machine whose clock is five minutes fast and one on a machine whose clock is
five minutes slow, with 2-second leases, timeouts and retries with backoff.

Every time a worker compares or writes (lease expiry, start_to_close and heartbeat
timeouts, the sweep's leadership, run_at) is the server's, so: no worker takes a lease from
a live one, no process times out or fails, whichever worker leads the sweep, and a retry
runs its backoff after the failure (not early, not five minutes late), whoever failed it
and whoever retries it. Processes are submitted from each of the three clocks too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from corral.loader import load_app
from corral.recovery import LEADER
from tests.backends import backend_url
from tests.e2e.conftest import Corral, wait_until
from tests.integration.fleet import stop_line, wait_started

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SKEW_APP = Path(__file__).resolve().parent / "apps" / "skew_fleet.py"
#: Each worker's clock, off by this many seconds.
CLOCKS = {"fast": 300.0, "slow": -300.0, "right": 0.0}
LEASE = 2.0
BACKOFF = 2.0  # as in apps/skew_fleet.py
#: A retry runs once its run_at passes and an idle worker looks (at least once a second):
#: this much past BACKOFF leaves room for a loaded machine, and none for a clock 300 s off.
LATE = 10.0
#: Processes of each job that each client submits in each round.
BEATS, FLAKY = 2, 2
OWNER = re.compile(r"worker (\S+) started \(concurrency")


def query(url: str, statement: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, args)
        return cur.fetchall() if cur.description else []


def test_workers_whose_clocks_disagree_keep_leases_timeouts_and_backoff(tmp_path: Path) -> None:
    with backend_url("postgres", tmp_path) as url:
        corral = Corral(tmp_path, SKEW_APP)
        corral.url = url
        corral.extra_env["CORRAL_TEST_LEASE_SECONDS"] = str(LEASE)
        app = load_app(str(SKEW_APP))
        app.use_database(url)
        app.storage.migrate()  # the schema exists before the workers race to open it
        app.close()
        query(
            url,
            "CREATE TABLE skew_attempt (process_id text, job text, attempt int, skew float8, "
            "at float8)",
        )
        try:
            workers = {}
            for name, skew in CLOCKS.items():
                corral.extra_env["CORRAL_TEST_CLOCK_SKEW"] = str(skew)
                workers[name] = corral.start_worker("--concurrency", "3")
            wait_started(corral, list(workers.values()))
            owners = {n: OWNER.search(corral.log_of(w)).group(1) for n, w in workers.items()}  # type: ignore[union-attr]
            submitted: list[str] = []
            for leader in CLOCKS:
                # This worker leads the recovery sweep (timeouts) for the round: it keeps the
                # leadership as long as it renews it in time by the server's clock.
                query(
                    url,
                    "INSERT INTO corral_leader (name, owner, expires_at) "
                    "VALUES (%s, %s, clock_timestamp() + interval '30 seconds') "
                    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                    "expires_at = excluded.expires_at",
                    LEADER,
                    owners[leader],
                )
                # Processes come from a client on each of the three machines.
                ids = []
                for client_skew in CLOCKS.values():
                    corral.extra_env["CORRAL_TEST_CLOCK_SKEW"] = str(client_skew)
                    ids += corral.submit_many(
                        [("beat", {"seconds": 3.0})] * BEATS + [("flaky", {})] * FLAKY
                    )
                submitted += ids
                wait_until(
                    lambda ids=ids: query(  # type: ignore[misc]
                        url,
                        "SELECT count(*) = %s FROM corral_process WHERE id = ANY(%s) "
                        "AND status IN ('completed', 'failed', 'canceled')",
                        len(ids),
                        ids,
                    )[0][0],
                    timeout=60,
                    interval=0.2,
                    what=f"the processes of the round led by the {leader} worker",
                )
                # No lease taken from a live worker, no timeout, no failure.
                notes = query(
                    url,
                    "SELECT process_id, kind, detail FROM corral_history "
                    "WHERE kind IN ('lease_expired', 'lease_lost', 'timeout', 'released')",
                )
                assert notes == [], f"the round led by the {leader} worker"
                [(holder,)] = query(url, "SELECT owner FROM corral_leader WHERE name = %s", LEADER)
                assert holder == owners[leader], f"the {leader} worker lost the sweep's lead"
            codes = {n: corral.stop(w) for n, w in workers.items()}
            logs = {n: corral.log_of(w) for n, w in workers.items()}
        finally:
            corral.cleanup()
        assert codes == dict.fromkeys(CLOCKS, 0), logs

        # Every process completed, and no worker counted a failure or a lost lease.
        statuses = query(url, "SELECT status, count(*) FROM corral_process GROUP BY status")
        assert statuses == [("completed", len(submitted))]
        for name, log in logs.items():
            _, _, _, failed, lost = stop_line(log)
            assert (failed, lost) == (0, 0), (name, log[-2000:])

        # Every worker took part, each on its own clock.
        attempts = query(url, "SELECT process_id, job, attempt, skew, at FROM skew_attempt")
        assert {a[3] for a in attempts} == set(CLOCKS.values())
        # Each flaky process: its second try BACKOFF seconds after its first, by the server's
        # clock, whichever workers ran the two.
        tries: dict[str, dict[int, tuple[float, float]]] = {}
        for pid, job, attempt, skew, at in attempts:
            if job == "flaky":
                tries.setdefault(pid, {})[attempt] = (skew, at)
        assert len(tries) == FLAKY * len(CLOCKS) ** 2
        for pid, by_attempt in tries.items():
            assert sorted(by_attempt) == [1, 2], (pid, by_attempt)
            (first_skew, first), (second_skew, second) = by_attempt[1], by_attempt[2]
            waited = second - first
            assert BACKOFF - 0.05 <= waited <= BACKOFF + LATE, (
                f"process {pid} failed on the worker {first_skew:+g} s off and was tried "
                f"again {waited:.3f} s later on the one {second_skew:+g} s off; the backoff "
                f"is {BACKOFF} s"
            )
        print(
            f"\n{len(submitted)} processes; retries waited "
            f"{min(b[2][1] - b[1][1] for b in tries.values()):.3f} to "
            f"{max(b[2][1] - b[1][1] for b in tries.values()):.3f} s (backoff {BACKOFF} s); "
            f"iterations per clock: "
            f"{ {s: sum(1 for a in attempts if a[3] == s) for s in CLOCKS.values()} }"
        )
