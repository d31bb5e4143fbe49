"""History: appended with the changes it explains, pruned with its process."""

from __future__ import annotations

from corral import model
from corral.model import Status
from corral.storage.base import Storage
from tests.conformance.common import T0, claim, complete, new


def test_history_append_adds_events_without_touching_the_process(storage: Storage) -> None:
    p = new()
    storage.process_insert_many([p])
    before = storage.process_get(p.id)
    storage.history_append(
        [model.Event("lease_lost", T0 + 1, process_id=p.id, detail={"owner": "w1"})]
    )
    assert storage.process_get(p.id) == before
    assert storage.history_list(p.id)[-1].detail == {"owner": "w1"}


def test_history_reads_a_page_in_order(storage: Storage) -> None:
    p, other = new(), new()
    storage.process_insert_many([p, other])
    notes = [
        model.Event("lease_lost", T0 + i, process_id=p.id, detail={"n": i}) for i in range(1, 8)
    ]
    storage.history_append([*notes, model.Event("lease_lost", T0, process_id=other.id)])
    whole = storage.history_list(p.id)
    assert [e.detail.get("n") for e in whole] == [None, 1, 2, 3, 4, 5, 6, 7]  # created first
    assert storage.history_list(p.id, 2, 3) == whole[2:5]
    assert storage.history_list(p.id, 6, 3) == whole[6:]
    assert storage.history_list(p.id, 8, 3) == []
    assert storage.history_list(p.id, 3) == whole[3:]


def test_prune_deletes_old_terminal_processes_and_their_history(storage: Storage) -> None:
    old, recent, active = new(), new(), new()
    storage.process_insert_many([old, recent, active])
    for pid, at in ((old.id, T0 + 1), (recent.id, T0 + 100)):
        [c] = claim(storage, now=at, process_ids=[pid])
        complete(storage, c, now=at, to=Status.COMPLETED)
    # A dry run says what would go, by job, and writes nothing.
    assert storage.process_prunable(T0 + 50) == {"add": 1}
    assert storage.process_prunable(T0 + 500) == {"add": 2}
    assert storage.process_prunable(T0) == {}
    assert storage.process_get(old.id) is not None
    assert storage.process_prune(T0 + 50) == 1
    assert storage.process_get(old.id) is None and storage.history_list(old.id) == []
    assert storage.process_prunable(T0 + 50) == {}
    assert storage.process_get(recent.id) is not None
    assert storage.process_get(active.id) is not None
