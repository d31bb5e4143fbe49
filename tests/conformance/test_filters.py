"""Listing and counting processes: the filters a person types (`corral list`, short ids)."""

from __future__ import annotations

from corral.model import Status
from corral.storage.base import ProcessFilter, Storage
from tests.conformance.common import T0, new


def test_filters_by_queue_custom_id_and_client(storage: Storage) -> None:
    a = new(queue="mail", custom_id="order-1", client_id="shop")
    b = new(queue="mail", custom_id="order-1", client_id="blog", at=T0 + 1)
    c = new(queue="default", at=T0 + 2)
    storage.process_insert_many([a, b, c])

    def ids(**kw: object) -> list[str]:
        return [p.id for p in storage.process_list(ProcessFilter(**kw))]  # type: ignore[arg-type]

    assert ids(queue="mail") == [b.id, a.id]
    assert ids(queue="default") == [c.id]
    assert ids(queue="nowhere") == []
    assert ids(custom_id="order-1") == [b.id, a.id]
    assert ids(custom_id="order-1", client_id="shop") == [a.id]
    assert ids(client_id="blog") == [b.id]
    assert ids(custom_id="order-2") == []


def test_an_id_prefix_finds_the_ids_that_start_with_it(storage: Storage) -> None:
    ps = [new(at=T0 + i) for i in range(20)]
    storage.process_insert_many(ps)
    target = ps[7]
    found = storage.process_list(ProcessFilter(id_prefix=target.id[:18]))
    assert [p.id for p in found] == [target.id]
    assert storage.process_list(ProcessFilter(id_prefix=target.id)) == found
    # Every id starts with the empty prefix, and a prefix of another shape finds nothing.
    assert len(storage.process_list(ProcessFilter(id_prefix="", limit=100))) == 20
    assert storage.process_list(ProcessFilter(id_prefix="zz")) == []


def test_an_id_prefix_is_matched_literally(storage: Storage) -> None:
    # LIKE's wildcards in what a person typed match themselves only.
    storage.process_insert_many([new(), new()])
    assert storage.process_list(ProcessFilter(id_prefix="%")) == []
    assert storage.process_list(ProcessFilter(id_prefix="_")) == []
    assert storage.process_count(ProcessFilter(id_prefix="%")) == 0


def test_count_ignores_the_limit_and_applies_every_filter(storage: Storage) -> None:
    storage.process_insert_many([new("a", queue="q1", tags={"t": "x"}) for _ in range(7)])
    storage.process_insert_many([new("b", queue="q2") for _ in range(3)])
    assert storage.process_count(ProcessFilter(limit=2)) == 10
    assert storage.process_count(ProcessFilter(job="a")) == 7
    assert storage.process_count(ProcessFilter(queue="q2")) == 3
    assert storage.process_count(ProcessFilter(tags={"t": "x"})) == 7
    assert storage.process_count(ProcessFilter(status=Status.STARTING)) == 10
    assert storage.process_count(ProcessFilter(status=Status.COMPLETED)) == 0
    assert storage.process_count(ProcessFilter(job="b", queue="q1")) == 0


def test_queue_counts_are_by_queue_and_status(storage: Storage) -> None:
    assert storage.queue_counts() == {}
    storage.process_insert_many([new(queue="mail") for _ in range(3)] + [new()])
    assert storage.queue_counts() == {
        "mail": {Status.STARTING: 3},
        "default": {Status.STARTING: 1},
    }


def test_id_neighbors_are_the_stored_ids_either_side(storage: Storage) -> None:
    ps = [new(at=T0 + i) for i in range(5)]
    storage.process_insert_many(ps)
    ids = sorted(p.id for p in ps)
    found = storage.process_id_neighbors([ids[0], ids[2], ids[4]])
    assert found == {
        ids[0]: (None, ids[1]),
        ids[2]: (ids[1], ids[3]),
        ids[4]: (ids[3], None),
    }
    # An id that is not stored still has neighbours: where it would go.
    between = ids[2][:-1] + ("0" if ids[2][-1] != "0" else "1")
    if ids[1] < between < ids[3] and between != ids[2]:
        before, after = storage.process_id_neighbors([between])[between]
        assert before in (ids[1], ids[2]) and after in (ids[2], ids[3])
    assert storage.process_id_neighbors([]) == {}
