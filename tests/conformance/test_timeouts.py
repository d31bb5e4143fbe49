"""The timeouts (docs/timeouts.md) as the storage finds them for the recovery sweep."""

from __future__ import annotations

from corral.model import Status
from corral.storage.base import Storage
from tests.conformance.common import T0, claim, complete, new


def test_timed_out_finds_each_expired_timeout_by_its_cause(storage: Storage) -> None:
    deadline = new(deadline_at=T0 + 10)
    scheduled = new(schedule_to_close=5.0)
    started = new(start_to_close=3.0)
    quiet = new(heartbeat_timeout=2.0)
    fine = new(deadline_at=T0 + 1000, schedule_to_close=1000.0)
    storage.process_insert_many([deadline, scheduled, started, quiet, fine])
    for p in (started, quiet):
        claim(storage, process_ids=[p.id], lease=100)
    assert storage.process_timed_out(T0 + 1, 10) == []
    found = {(t.process.id, t.cause) for t in storage.process_timed_out(T0 + 11, 10)}
    assert found == {
        (deadline.id, "process_timeout"),
        (scheduled.id, "schedule_to_close"),
        (started.id, "start_to_close"),
        (quiet.id, "heartbeat_timeout"),
    }


def test_renewed_heartbeats_push_the_heartbeat_timeout_back(storage: Storage) -> None:
    p = new(heartbeat_timeout=2.0)
    storage.process_insert_many([p])
    [c] = claim(storage, lease=100)
    storage.lease_renew_many("w1", {p.id: c.token}, T0 + 5, 100, {p.id: T0 + 4.5})
    assert storage.process_timed_out(T0 + 6, 10) == []
    [t] = storage.process_timed_out(T0 + 7, 10)
    assert t.cause == "heartbeat_timeout" and t.process.heartbeat_at == T0 + 4.5


def test_a_finished_or_committed_iteration_stops_its_timeouts(storage: Storage) -> None:
    p = new(deadline_at=T0 + 10, start_to_close=1.0, schedule_to_close=5.0)
    storage.process_insert_many([p])
    [c] = claim(storage)
    complete(storage, c, now=T0 + 0.5, to=Status.COMPLETED)
    assert storage.process_timed_out(T0 + 100, 10) == []
