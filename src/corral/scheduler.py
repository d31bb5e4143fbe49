"""Cron schedules at work: the recovery sweep (one leader across the fleet) fires what the
pure rules of `corral.schedules` say is due, and `corral schedules` reads where each one
stands. See docs/graphs.md, "Schedules".

Where a schedule stands lives in a row of its own (`corral_schedule`), written in the
transaction that submits its occurrences: the latest occurrence handled, fired or
dropped, and the last one fired with its process. Deriving it from the processes'
custom ids instead could not remember an occurrence dropped (missed, or overlapping a
run), nor when a schedule was first seen, and would forget everything once the processes
are pruned. The row's version fences two sweepers: the second one's write finds it moved
and writes nothing; and should an occurrence ever be submitted twice, its custom id
makes the second submit `existing`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.errors import CorralError, StorageError
from corral.jobs import Job, Registry
from corral.model import Status
from corral.schedules import Schedule, firing, next_run, occurrence_iso
from corral.storage.base import NewProcess, ScheduleFiring, ScheduleState, Storage

if TYPE_CHECKING:
    from corral.app import App

log = logging.getLogger("corral.schedules")

#: Makes the process of one occurrence: (job, custom id, now) -> NewProcess.
MakeProcess = Callable[[Job, str, float], NewProcess]


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as `corral schedules` shows it: its last run (the occurrence, its process
    and that process's status now: None when none ran, or it was pruned) and its next."""

    job: str
    schedule: Schedule
    last_occurrence: float | None
    last_process_id: str | None
    last_status: Status | None
    next_run: float


def scheduled(registry: Registry) -> list[tuple[Job, Schedule]]:
    """The jobs that have a schedule, by name."""
    return [
        (job, job.schedule) for _, job in sorted(registry.jobs.items()) if job.schedule is not None
    ]


def describe(registry: Registry, states: Sequence[ScheduleState], now: float) -> list[ScheduleInfo]:
    by_name = {s.name: s for s in states}
    found = []
    for job, schedule in scheduled(registry):
        state = by_name.get(schedule.name)
        found.append(
            ScheduleInfo(
                job=job.name,
                schedule=schedule,
                last_occurrence=None if state is None else state.last_occurrence,
                last_process_id=None if state is None else state.last_process_id,
                last_status=None if state is None else state.last_status,
                next_run=next_run(schedule, now),
            )
        )
    return found


class Scheduler:
    """Fires the schedules of a registry's jobs (the recovery sweep calls `fire`)."""

    def __init__(self, storage: Storage, registry: Registry, make: MakeProcess) -> None:
        self.storage = storage
        self.registry = registry
        self.make = make

    @classmethod
    def of(cls, app: App) -> Scheduler:
        return cls(app.storage, app.registry, app._occurrence)

    def fire(self, now: float) -> int:
        """Submit every occurrence due at `now`; the processes created. A schedule that
        cannot fire (its occurrence's custom id taken by another submit) is logged and
        left for the next sweep; the database failing stops the sweep."""
        jobs = scheduled(self.registry)
        if not jobs:
            return 0  # no read at all for an app without schedules
        states = {s.name: s for s in self.storage.schedule_list()}
        created = 0
        for job, schedule in jobs:
            try:
                created += self._fire(job, schedule, states.get(schedule.name), now)
            except StorageError:
                raise
            except CorralError as exc:
                log.error("schedule %s did not fire: %s", schedule.name, exc)
        return created

    def _fire(self, job: Job, schedule: Schedule, state: ScheduleState | None, now: float) -> int:
        if state is None:
            # First seen: occurrences from now on fire, none from before it existed.
            self.storage.schedule_fire(ScheduleFiring(schedule.name, 0, now, now))
            return 0
        running = state.last_status is not None and not state.last_status.terminal
        due = firing(schedule, state.handled_until, now, previous_running=running)
        if not due.fire and due.cursor == state.handled_until:
            return 0  # nothing due since the last sweep
        processes = [self.make(job, custom_id, now) for custom_id in due.ids]
        inserted = self.storage.schedule_fire(
            ScheduleFiring(schedule.name, state.version, due.cursor, now, processes, due.fire)
        )
        if inserted is None:
            log.debug("schedule %s: another sweeper fired it first", schedule.name)
            return 0
        if due.missed_first is not None and due.missed_last is not None:
            log.warning(
                "schedule %s missed its occurrences from %s to %s (missed=%s)",
                schedule.name,
                occurrence_iso(due.missed_first),
                occurrence_iso(due.missed_last),
                schedule.missed.value,
            )
        for occurrence in due.overlapped:
            log.info(
                "schedule %s skipped %s: its previous run has not ended (overlap=skip)",
                schedule.name,
                occurrence_iso(occurrence),
            )
        for i in inserted:
            log.info("schedule %s fired %s: process %s", schedule.name, i.process.custom_id,
                     i.process.id)  # fmt: skip
        return sum(1 for i in inserted if i.outcome == "created")

    def next_due(self, now: float) -> float | None:
        """The earliest next occurrence of any schedule after `now` (None: no schedule)."""
        times = [next_run(schedule, now) for _, schedule in scheduled(self.registry)]
        return min(times, default=None)
