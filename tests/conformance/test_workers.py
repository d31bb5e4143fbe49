"""The worker registry: who runs, where, what it serves and what it holds right now."""

from __future__ import annotations

from corral.storage.base import Storage, WorkerInfo
from tests.conformance.common import T0


def info(owner: str, *, started: float = T0, **kw: object) -> WorkerInfo:
    fields: dict[str, object] = {
        "host": "box-1",
        "pid": 4242,
        "app": "tasks.py",
        "jobs": ["add", "mail"],
        "queues": None,
        "concurrency": 10,
        "started_at": started,
        "last_seen_at": started,
    }
    fields.update(kw)
    return WorkerInfo(owner=owner, **fields)  # type: ignore[arg-type]


def test_a_registered_worker_reads_back_as_written(storage: Storage) -> None:
    assert storage.worker_list() == []
    w = info("box-1:4242:aa", queues=["mail", "default"], running=["p1"])
    storage.worker_register(w)
    assert storage.worker_list() == [w]


def test_workers_are_listed_oldest_first_and_registering_again_replaces(
    storage: Storage,
) -> None:
    storage.worker_register(info("b", started=T0 + 5))
    storage.worker_register(info("a", started=T0))
    assert [w.owner for w in storage.worker_list()] == ["a", "b"]
    again = info("b", started=T0 + 9, concurrency=3)
    storage.worker_register(again)
    assert storage.worker_list()[1] == again
    assert len(storage.worker_list()) == 2


def test_seen_refreshes_the_time_and_what_it_runs(storage: Storage) -> None:
    storage.worker_register(info("a"))
    assert storage.worker_seen("a", T0 + 10, ["p1", "p2"])
    (w,) = storage.worker_list()
    assert (w.last_seen_at, list(w.running), w.started_at) == (T0 + 10, ["p1", "p2"], T0)
    assert storage.worker_seen("a", T0 + 20, [])
    assert list(storage.worker_list()[0].running) == []
    # A worker whose row is gone learns it, and registers again.
    assert not storage.worker_seen("nobody", T0 + 20, [])


def test_remove_and_prune(storage: Storage) -> None:
    storage.worker_register(info("a"))
    storage.worker_register(info("b"))
    storage.worker_register(info("c"))
    storage.worker_seen("c", T0 + 100, [])
    storage.worker_remove("a")
    storage.worker_remove("a")  # no error the second time
    assert [w.owner for w in storage.worker_list()] == ["b", "c"]
    assert storage.worker_prune(T0 + 50) == 1
    assert [w.owner for w in storage.worker_list()] == ["c"]
