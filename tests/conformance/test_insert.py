"""Inserting and reading processes: idempotent submit by custom id, all or nothing."""

from __future__ import annotations

import uuid

import pytest

from corral.errors import CustomIdConflict
from corral.model import Status
from corral.storage.base import ProcessFilter, Storage
from tests.conformance.common import T0, new


def test_inserted_process_reads_back_with_its_first_history_event(storage: Storage) -> None:
    p = new(params={"a": 1, "b": [1, 2]}, tags={"team": "x"}, priority=3, queue="q")
    [ins] = storage.process_insert_many([p])
    assert ins.outcome == "created"
    got = storage.process_get(p.id)
    assert got is not None
    assert (got.job, got.params, got.status, got.priority, got.queue, got.tags) == (
        "add",
        {"a": 1, "b": [1, 2]},
        Status.STARTING,
        3,
        "q",
        {"team": "x"},
    )
    assert got.store == {} and got.attempt == 0 and not got.leased
    [event] = storage.history_list(p.id)
    assert (event.kind, event.to_status) == ("submitted", Status.STARTING)


def test_get_of_an_unknown_id_is_none(storage: Storage) -> None:
    assert storage.process_get(str(uuid.uuid4())) is None


def test_same_custom_id_same_job_and_params_returns_the_existing_process(storage: Storage) -> None:
    [first] = storage.process_insert_many([new(custom_id="k", params={"a": 1, "b": 2})])
    [again] = storage.process_insert_many([new(custom_id="k", params={"b": 2, "a": 1})])
    assert again.outcome == "existing"
    assert again.process.id == first.process.id
    assert len(storage.process_list(ProcessFilter())) == 1


def test_custom_id_conflict_raises_and_writes_nothing_of_the_batch(storage: Storage) -> None:
    storage.process_insert_many([new(custom_id="k")])
    batch = [new(custom_id="other"), new(custom_id="k", params={"a": 2})]
    with pytest.raises(CustomIdConflict):
        storage.process_insert_many(batch)
    with pytest.raises(CustomIdConflict):
        storage.process_insert_many([new("sub", custom_id="k")])
    assert storage.process_get(batch[0].id) is None
    assert len(storage.process_list(ProcessFilter())) == 1


def test_one_custom_id_twice_in_a_batch_creates_one_process(storage: Storage) -> None:
    first, again = storage.process_insert_many([new(custom_id="k"), new(custom_id="k")])
    assert (first.outcome, again.outcome) == ("created", "existing")
    assert again.process.id == first.process.id
    with pytest.raises(CustomIdConflict):
        storage.process_insert_many([new(custom_id="j"), new(custom_id="j", params={"a": 2})])
    assert len(storage.process_list(ProcessFilter())) == 1


def test_custom_ids_are_unique_per_client(storage: Storage) -> None:
    a = storage.process_insert_many([new(custom_id="k", client_id="alice")])[0]
    b = storage.process_insert_many([new(custom_id="k", client_id="bob", params={"a": 9})])[0]
    assert (a.outcome, b.outcome) == ("created", "created")
    assert a.process.id != b.process.id


def test_list_filters_by_status_job_and_tags_newest_first(storage: Storage) -> None:
    ids = []
    for i, (job, tags) in enumerate([("a", {"t": "x"}), ("b", {"t": "y"}), ("a", {"t": "y"})]):
        p = new(job, at=T0 + i, tags=tags)
        ids.append(p.id)
        storage.process_insert_many([p])
    assert [p.id for p in storage.process_list(ProcessFilter())] == ids[::-1]
    assert [p.id for p in storage.process_list(ProcessFilter(job="a"))] == [ids[2], ids[0]]
    assert [p.id for p in storage.process_list(ProcessFilter(tags={"t": "y"}))] == [ids[2], ids[1]]
    assert storage.process_list(ProcessFilter(status=Status.COMPLETED)) == []
    assert len(storage.process_list(ProcessFilter(limit=2))) == 2
