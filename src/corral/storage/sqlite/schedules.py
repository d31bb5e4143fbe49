"""Cron schedules, in the caller's write transaction: each schedule's row (docs/graphs.md,
"Schedules"), moved on only from the version the sweeper read, with the processes of the
occurrences fired inserted beside it."""

from __future__ import annotations

import sqlite3

from corral.model import Status
from corral.storage.base import Inserted, ScheduleFiring, ScheduleState
from corral.storage.sqlite.inserts import insert_many
from corral.storage.sqlite.sql import Q


def list_schedules(conn: sqlite3.Connection) -> list[ScheduleState]:
    return [
        ScheduleState(
            name=name,
            handled_until=handled_until,
            version=version,
            last_occurrence=last_occurrence,
            last_process_id=last_process_id,
            last_status=None if status is None else Status(status),
        )
        for name, handled_until, version, last_occurrence, last_process_id, status in conn.execute(
            Q["schedule_list"]
        )
    ]


def fire(conn: sqlite3.Connection, firing: ScheduleFiring) -> list[Inserted] | None:
    """The row first (a sweeper that lost the race writes nothing), then the processes."""
    f = firing
    if f.expected_version == 0:
        cur = conn.execute(Q["schedule_create"], (f.name, f.handled_until, f.now))
    else:
        cur = conn.execute(
            Q["schedule_advance"], (f.handled_until, f.now, f.name, f.expected_version)
        )
    if cur.rowcount != 1:
        return None
    if not f.processes:
        return []
    inserted = insert_many(conn, f.processes, None)
    conn.execute(Q["schedule_fired"], (f.occurrences[-1], inserted[-1].process.id, f.name))
    return inserted
