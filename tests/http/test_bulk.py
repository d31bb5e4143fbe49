"""Bulk actions on a filter: POST /processes:cancel and /processes:retry change every
process the list's filters match (not one page), in chunks; a dry run counts and shows a
sample and changes nothing; each change's history names the token's client."""

from __future__ import annotations

from typing import Any

import pytest

from corral import bulk, model
from corral.model import Process, Status
from corral.storage.base import ProcessFilter, Storage, Update
from tests.http.conftest import Api
from tests.integration.common import drain


def _status(api: Api, pid: str) -> str:
    found: str = api.admin.get(f"/processes/{pid}").json()["status"]
    return found


def _last_event(api: Api, pid: str) -> dict[str, Any]:
    events: list[dict[str, Any]] = api.admin.get(f"/processes/{pid}/history").json()["events"]
    return events[-1]


def test_a_filtered_set_of_failed_processes_is_counted_then_retried(api: Api) -> None:
    bad = [
        api.submit(api.shop, job="checked", params={"item": "pen", "quantity": 0})["id"]
        for _ in range(5)
    ]
    good = api.submit(api.shop, job="checked", params={"item": "pen", "quantity": 1})["id"]
    theirs = api.submit(api.blog, job="checked", params={"item": "ink", "quantity": 0})["id"]
    drain(api.app)
    where = {"status": "failed", "reason": "invalid"}

    preview = api.shop.post("/processes:retry", {**where, "dry_run": True, "sample": 2})
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["action"], body["dry_run"], body["count"]) == ("retry", True, 5)
    assert len(body["sample"]) == 2 and {p["id"] for p in body["sample"]} <= set(bad)
    assert all(_status(api, pid) == "failed" for pid in bad)  # a dry run changes nothing
    # An admin's preview counts every client's.
    assert api.admin.post("/processes:retry", {**where, "dry_run": True}).json()["count"] == 6

    done = api.shop.post("/processes:retry", where).json()
    assert (done["dry_run"], done["count"], done["sample"]) == (False, 5, None)
    for pid in bad:
        assert _status(api, pid) == "starting"  # it failed validating: it starts again
        event = _last_event(api, pid)
        assert event["detail"]["by"] == "shop" and event["detail"]["bulk"] == "retry"
    assert _status(api, theirs) == "failed"  # another client's: not touched
    assert _status(api, good) == "completed"
    # Nothing matches any more.
    assert api.shop.post("/processes:retry", where).json()["count"] == 0


def test_cancel_matching_walks_every_chunk_and_leaves_ended_processes_alone(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "CHUNK", 2)  # five processes: three chunks
    queued = [api.submit(api.shop, params={"a": i, "b": 0})["id"] for i in range(5)]
    ended = api.submit(api.shop, job="order", params={"item": "x", "quantity": 1})["id"]
    drain(api.app)
    assert _status(api, ended) == "completed"
    more = [api.submit(api.shop, params={"a": i, "b": 1})["id"] for i in range(5)]
    answer = api.shop.post("/processes:cancel", {"job": "add"}).json()
    # The first five completed with the drain; the five submitted after it are canceled.
    assert answer["count"] == 5
    assert {_status(api, pid) for pid in more} == {"canceled"}
    assert {_status(api, pid) for pid in queued} == {"completed"}
    assert _last_event(api, more[0])["detail"] == {
        "reason": "canceled",
        "by": "shop",
        "bulk": "cancel",
    }
    assert api.shop.post("/processes:cancel", {"job": "add"}).json()["count"] == 0


def test_bad_filters_are_refused_with_every_field_error(api: Api) -> None:
    r = api.shop.post(
        "/processes:cancel",
        {"status": "sleeping", "created_from": "2026-01-01T00:00:00", "colour": "red"},
    )
    assert r.status_code == 422
    fields = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert fields == {("body", "status"), ("body", "created_from"), ("body", "colour")}
    assert api.shop.post("/processes:retry", {"sample": 1000, "dry_run": True}).status_code == 422


class _Racing:
    """A storage whose first bulk update finds one process written meanwhile (its
    version moved), as when a worker commits between the read and the write."""

    def __init__(self, inner: Storage, victim: str) -> None:
        self._inner, self._victim, self.raced = inner, victim, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def process_update_many(self, updates: list[Update]) -> list[str]:
        if not self.raced:
            self.raced = True
            p = self._inner.process_get(self._victim)
            assert p is not None
            moved = model.Change.of(p).with_(store={"touched": True})
            assert self._inner.process_update(p.id, p.version, moved, p.updated_at)
        return self._inner.process_update_many(updates)


def test_a_process_written_meanwhile_is_decided_again_not_skipped(api: Api) -> None:
    ids = [api.submit(api.shop, params={"a": i, "b": 0})["id"] for i in range(3)]
    racing = _Racing(api.app.storage, ids[1])
    where = ProcessFilter(job="add", client_id="shop")
    changed = bulk.apply(racing, where, bulk.CANCEL, by="shop", clock=api.app.clock)  # type: ignore[arg-type]
    assert racing.raced and sorted(changed) == sorted(ids)
    found = [api.app.storage.process_get(pid) for pid in ids]
    assert all(isinstance(p, Process) and p.status is Status.CANCELED for p in found)
