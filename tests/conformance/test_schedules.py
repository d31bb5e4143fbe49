"""Cron schedules' rows: created once, moved on only from the version read (a second
sweeper writes nothing), with the processes of the occurrences fired inserted in the same
transaction, or nothing at all."""

from __future__ import annotations

import threading

import pytest

from corral.errors import CustomIdConflict
from corral.model import Status
from corral.storage.base import Inserted, ProcessFilter, ScheduleFiring, ScheduleState, Storage
from tests.conformance.common import T0, claim, complete, new

OCC = T0 + 60.0
NIGHTLY = ProcessFilter(job="nightly")


def fire(
    storage: Storage,
    version: int,
    until: float,
    *occurrences: float,
    params: dict[str, int] | None = None,
) -> list[Inserted] | None:
    """Write the row from `version` on to `until`, firing `occurrences` (nightly's)."""
    processes = [
        new("nightly", custom_id=f"schedule:nightly:{o}", at=o, params=params or {})
        for o in occurrences
    ]
    return storage.schedule_fire(
        ScheduleFiring("nightly", version, until, until, processes, occurrences)
    )


def test_a_schedule_first_seen_gets_its_row_once(storage: Storage) -> None:
    assert storage.schedule_list() == []
    assert fire(storage, 0, T0) == []
    assert storage.schedule_list() == [ScheduleState("nightly", T0, 1)]
    # A second sweeper that also saw no row: the row is there, it writes nothing.
    assert fire(storage, 0, T0 + 5) is None
    assert storage.schedule_list() == [ScheduleState("nightly", T0, 1)]


def test_firing_inserts_the_processes_and_moves_the_row_on_together(storage: Storage) -> None:
    fire(storage, 0, T0)
    inserted = fire(storage, 1, OCC + 60, OCC, OCC + 60)
    assert inserted is not None
    assert [i.outcome for i in inserted] == ["created", "created"]
    last = inserted[-1].process
    assert last.custom_id == f"schedule:nightly:{OCC + 60}"
    assert storage.process_get(last.id) is not None
    assert storage.schedule_list() == [
        ScheduleState("nightly", OCC + 60, 2, OCC + 60, last.id, Status.STARTING)
    ]


def test_a_sweeper_behind_the_version_writes_nothing(storage: Storage) -> None:
    fire(storage, 0, T0)
    assert fire(storage, 1, OCC, OCC) is not None
    # Another sweeper read version 1 too: neither its process nor its row is written.
    assert fire(storage, 1, OCC + 60, OCC + 60) is None
    assert storage.process_count(NIGHTLY) == 1
    (state,) = storage.schedule_list()
    assert (state.handled_until, state.version, state.last_occurrence) == (OCC, 2, OCC)


def test_moving_on_without_firing_keeps_the_last_run(storage: Storage) -> None:
    fire(storage, 0, T0)
    [first] = fire(storage, 1, OCC, OCC) or []
    assert fire(storage, 2, OCC + 120) == []
    assert storage.schedule_list() == [
        ScheduleState("nightly", OCC + 120, 3, OCC, first.process.id, Status.STARTING)
    ]


def test_an_occurrence_submitted_already_is_existing_not_a_second_process(
    storage: Storage,
) -> None:
    fire(storage, 0, T0)
    [first] = fire(storage, 1, OCC, OCC) or []
    # The row says OCC is not handled (a row restored from a backup, say): the submit
    # finds the process of that occurrence.
    [again] = fire(storage, 2, OCC, OCC) or []
    assert (again.outcome, again.process.id) == ("existing", first.process.id)
    assert storage.process_count(NIGHTLY) == 1


def test_a_custom_id_conflict_writes_nothing(storage: Storage) -> None:
    fire(storage, 0, T0)
    fire(storage, 1, OCC, OCC)
    with pytest.raises(CustomIdConflict):
        fire(storage, 2, OCC + 60, OCC + 60, OCC, params={"other": 1})
    assert storage.process_count(NIGHTLY) == 1
    (state,) = storage.schedule_list()
    assert (state.handled_until, state.version) == (OCC, 2)


def test_the_last_status_follows_the_process_and_a_pruned_one_reads_as_none(
    storage: Storage,
) -> None:
    fire(storage, 0, T0)
    fire(storage, 1, OCC, OCC)
    [claimed] = claim(storage, now=OCC)
    assert storage.schedule_list()[0].last_status is Status.STARTING
    complete(storage, claimed, now=OCC + 1, to=Status.COMPLETED)
    assert storage.schedule_list()[0].last_status is Status.COMPLETED
    assert storage.process_prune(OCC + 2) == 1
    (state,) = storage.schedule_list()
    assert (state.last_status, state.last_process_id) == (None, claimed.process.id)


def test_sweepers_racing_from_one_version_fire_once(storage: Storage) -> None:
    fire(storage, 0, T0)
    start = threading.Barrier(4)
    results: list[list[Inserted] | None] = []

    def sweeper() -> None:
        start.wait(10)
        results.append(fire(storage, 1, OCC + 60, OCC, OCC + 60))

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [r for r in results if r is not None]
    assert len(results) == 4 and len(won) == 1
    assert [i.outcome for i in won[0]] == ["created", "created"]
    assert storage.process_count(NIGHTLY) == 2
    (state,) = storage.schedule_list()
    assert (state.version, state.last_process_id) == (2, won[0][-1].process.id)
