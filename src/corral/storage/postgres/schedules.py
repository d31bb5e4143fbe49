"""Cron schedules: each schedule's row in corral_schedule (docs/graphs.md, "Schedules"),
moved on only from the version the sweeper read, in the transaction that inserts the
processes of the occurrences fired."""

from __future__ import annotations

from typing import Any

from corral.model import Status
from corral.storage.base import Inserted, ScheduleFiring, ScheduleState
from corral.storage.postgres.connection import Connected, verb

# The insert of a submit with custom ids, on our connection inside our transaction (inserts.py
# stays the one place that builds it).
from corral.storage.postgres.inserts import _insert_args, _insert_rows
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import as_time


class Schedules(Connected):
    """schedule_list, schedule_fire."""

    @verb
    def schedule_list(self) -> list[ScheduleState]:
        return [_state(r) for r in self._rows(Q["schedule_list"], {})]

    @verb
    def schedule_fire(self, firing: ScheduleFiring) -> list[Inserted] | None:
        f = firing
        if len(f.processes) != len(f.occurrences):
            raise ValueError("schedule_fire: one occurrence per process")
        args = {
            "name": f.name,
            "handled_until": as_time(f.handled_until),
            "now": as_time(f.now),
            "version": f.expected_version,
        }
        query = Q["schedule_create"] if f.expected_version == 0 else Q["schedule_advance"]
        with self._connection() as conn, conn.transaction():
            # The row first: a sweeper that lost the race writes nothing.
            if not self._rows(query, args, conn):
                return None
            if not f.processes:
                return []
            query_name, insert = _insert_args(f.processes, None, self._notify_param)
            inserted = _insert_rows(conn, f.processes, query_name, insert)
            fired = {
                "name": f.name,
                "occurrence": as_time(f.occurrences[-1]),
                "process_id": inserted[-1].process.id,
            }
            self._rows(Q["schedule_fired"], fired, conn)
        self.notify_local()
        return inserted


def _state(row: tuple[Any, ...]) -> ScheduleState:
    name, handled_until, version, last_occurrence, last_process_id, status = row
    return ScheduleState(
        name=name,
        handled_until=float(handled_until),
        version=int(version),
        last_occurrence=None if last_occurrence is None else float(last_occurrence),
        last_process_id=last_process_id,
        last_status=None if status is None else Status(status),
    )
