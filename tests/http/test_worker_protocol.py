"""The worker protocol (claim, heartbeat, complete) with a scripted worker, every status
code it answers, on every backend: a normal run, a lease that expires mid-iteration, a
lost claim answer replayed by its claim id, a cancel delivered through the heartbeat, and
the same outcomes leaving the same history as an in-process worker's."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corral import App, Context, Retry
from corral.http.tokens import create_token
from corral.model import Status
from tests.backends import backend_url
from tests.http.conftest import Api, Client, api_for, make_app
from tests.integration.common import drain


class Resize(BaseModel):
    image: str
    width: int


RETRY = Retry(attempts=3, backoff=0.01, jitter=0)


def add_jobs(app: App) -> None:
    app.external("resize", params=Resize, retry=RETRY)
    app.external("thumbs", queue="images")

    @app.job(params=Resize, retry=RETRY)
    def resize_py(ctx: Context[Resize]) -> Any:
        """The Python twin of `resize`: the outcome it is told to have, by its image."""
        if ctx.params.image == "flaky.png" and ctx.attempt == 1:
            raise RuntimeError("boom")
        if ctx.params.image == "bad.png":
            raise RuntimeError("broken for good")
        return {"w": ctx.params.width}


@dataclass
class Proto:
    api: Api
    worker: Client  # a worker token, every queue
    images: Client  # a worker token for the `images` queue only

    @property
    def app(self) -> App:
        return self.api.app

    def claim(self, who: Client | None = None, **body: Any) -> list[dict[str, Any]]:
        body.setdefault("worker", "w1")
        r = (who or self.worker).post("/worker/claim", body)
        assert r.status_code == 200, r.text
        leases: list[dict[str, Any]] = r.json()["leases"]
        return leases

    def complete(self, lease: dict[str, Any], **outcome: Any) -> Any:
        outcome.setdefault("kind", "returned")
        body = {
            "process_id": lease["process_id"],
            "attempt": lease["attempt"],
            "token": lease["token"],
            "outcome": outcome,
        }
        return self.worker.post("/worker/complete", body)


def proto_for(app: App) -> Proto:
    api = api_for(app)
    now = app.clock()
    worker = create_token(app.storage, "fleet", worker=True, now=now)[1]
    images = create_token(app.storage, "fleet", worker=True, queues=["images"], now=now)[1]
    return Proto(api, Client(api.http, worker), Client(api.http, images))


@pytest.fixture
def proto(backend: str, tmp_path: Path) -> Iterator[Proto]:
    with backend_url(backend, tmp_path) as url:
        app = make_app(url)
        add_jobs(app)
        try:
            yield proto_for(app)
        finally:
            app.close()


@pytest.fixture
def short(backend: str, tmp_path: Path) -> Iterator[Proto]:
    """Leases of one second: they expire while a test watches."""
    with backend_url(backend, tmp_path) as url:
        app = make_app(url)
        app.lease_seconds = 1.0
        add_jobs(app)
        try:
            yield proto_for(app)
        finally:
            app.close()


def submit(p: Proto, job: str = "resize", image: str = "a.png") -> str:
    return str(p.api.submit(p.api.shop, job=job, params={"image": image, "width": 64})["id"])


def test_only_worker_tokens_speak_the_protocol(proto: Proto) -> None:
    for path in ("/worker/claim", "/worker/heartbeat", "/worker/complete"):
        assert proto.api.http.post("/api/v1" + path, json={}).status_code == 401
        for who in (proto.api.shop, proto.api.admin):
            r = who.post(path, {"worker": "w1", "leases": []})
            assert r.status_code == 403, (path, r.text)


def test_a_normal_run_with_heartbeats_and_progress(proto: Proto) -> None:
    pid = submit(proto)
    [lease] = proto.claim(jobs=["resize"], max=5)
    assert lease["process_id"] == pid and lease["job"] == "resize"
    assert lease["params"] == {"image": "a.png", "width": 64} and lease["attempt"] == 1
    assert lease["status"] == "starting" and lease["store"] == {}

    beat = {"process_id": pid, "token": lease["token"], "progress": {"done": 3, "total": 10}}
    r = proto.worker.post("/worker/heartbeat", {"worker": "w1", "leases": [beat]})
    assert r.status_code == 200
    assert r.json() == {"leases": [{"process_id": pid, "action": "extend"}], "worker": "continue"}
    running = proto.app.get(pid)
    assert (running.progress_done, running.progress_total) == (3, 10)

    # In-process workers never claim an external job.
    drain(proto.app)
    assert proto.app.get(pid).status is Status.STARTING

    r = proto.complete(lease, result={"w": 64}, store={"out": "a-64.png"})
    assert r.status_code == 200 and r.json() == {"process_id": pid, "status": "completed"}
    done = proto.app.get(pid)
    assert done.status is Status.COMPLETED and done.result == {"w": 64}
    assert done.store == {"out": "a-64.png"}
    # Progress left out of the outcome: what the last heartbeat saved is kept.
    assert (done.progress_done, done.progress_total) == (3, 10)
    # The client reads it back as any other process.
    assert proto.api.shop.get(f"/processes/{pid}").json()["result"] == {"w": 64}


def test_claim_filters_jobs_and_the_tokens_queues(proto: Proto) -> None:
    submit(proto)
    thumb = str(proto.api.submit(proto.api.shop, job="thumbs", params={"any": 1})["id"])
    r = proto.worker.post("/worker/claim", {"worker": "w1", "jobs": ["add", "nope"]})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "jobs", 0], ["body", "jobs", 1]]
    for bad in ({"worker": ""}, {"worker": "w", "max": 0}, {"worker": "w", "wait": 31}, {}):
        assert proto.worker.post("/worker/claim", bad).status_code == 422, bad
    # A token of the `images` queue claims only from it.
    [lease] = proto.claim(proto.images, max=10)
    assert lease["process_id"] == thumb
    assert proto.claim(proto.images, max=10) == []


def test_a_lost_claim_answer_is_replayed_by_its_claim_id(proto: Proto) -> None:
    pid = submit(proto)
    first = proto.worker.post("/worker/claim", {"worker": "w1", "claim_id": "c-1"}).json()
    # The answer was lost: the worker sends the same claim again, and gets the same lease
    # rather than a second one (or none: the process is leased).
    again = proto.worker.post("/worker/claim", {"worker": "w1", "claim_id": "c-1"}).json()
    assert again == first and first["leases"][0]["process_id"] == pid
    assert proto.app.get(pid).attempt == 1
    assert proto.complete(first["leases"][0]).status_code == 200
    # Another id is another claim.
    assert proto.claim(claim_id="c-2") == []


def test_a_late_commit_after_the_lease_expired_is_refused_and_kept(short: Proto) -> None:
    pid = submit(short)
    [late] = short.claim(worker="slow")
    # The slow worker stops heartbeating; another worker's claim waits for the lease to
    # expire and takes the process over.
    [taken] = short.claim(worker="fast", wait=10)
    assert taken["process_id"] == pid and taken["attempt"] == 2

    r = short.complete(late, result="late")
    assert r.status_code == 409
    assert r.json()["reason"] == "superseded" and r.json()["attempt"] == 2
    beat = {"process_id": pid, "token": late["token"]}
    hb = short.worker.post("/worker/heartbeat", {"worker": "slow", "leases": [beat]}).json()
    assert hb["leases"] == [{"process_id": pid, "action": "cancel", "reason": "superseded"}]

    assert short.complete(taken, result="on time").status_code == 200
    done = short.app.get(pid)
    assert done.status is Status.COMPLETED and done.result == "on time"
    kinds = [e.kind for e in short.app.history(pid)]
    assert kinds.count("lease_expired") == 1  # run once more, not twice
    [rejected] = [e for e in short.app.history(pid) if e.kind == "rejected_commit"]
    assert rejected.detail["reason"] == "superseded"
    assert rejected.detail["outcome"] == {"kind": "returned", "result": "late"}


def test_a_commit_after_the_lease_expired_unclaimed_is_refused(short: Proto) -> None:
    pid = submit(short)
    [lease] = short.claim()
    # Nobody took the process over, but its lease ran out: the late worker is refused all
    # the same (it cannot know whether another worker runs it now).
    expires, deadline = lease_expiry(short, pid), short.app.clock() + 10
    while short.app.clock() <= expires and short.app.clock() < deadline:
        threading.Event().wait(0.05)
    r = short.complete(lease, result=1)
    assert r.status_code == 409 and r.json()["reason"] == "lease_expired"
    assert short.app.get(pid).status is Status.STARTING  # left for another claim
    assert [e.kind for e in short.app.history(pid)][-1] == "rejected_commit"


def lease_expiry(p: Proto, pid: str) -> float:
    expires = p.app.get(pid).lease_expires_at
    assert expires is not None
    return expires


def test_a_cancel_is_delivered_through_the_heartbeat(proto: Proto) -> None:
    pid = submit(proto)
    [lease] = proto.claim()
    assert proto.api.shop.post(f"/processes/{pid}/cancel").status_code == 200
    beat = {"process_id": pid, "token": lease["token"]}
    hb = proto.worker.post("/worker/heartbeat", {"worker": "w1", "leases": [beat]}).json()
    assert hb["leases"] == [{"process_id": pid, "action": "cancel", "reason": "cancel_requested"}]
    assert proto.complete(lease, kind="cancelled").json()["status"] == "canceled"
    # A second commit of the same lease: the process is canceled, nothing changes.
    r = proto.complete(lease, kind="returned", result=1)
    assert r.status_code == 409 and r.json()["reason"] == "canceled"
    assert proto.app.get(pid).status is Status.CANCELED


def test_stale_and_unknown_writes_answer_409_and_change_nothing(proto: Proto) -> None:
    pid = submit(proto)
    [lease] = proto.claim()
    wrong = {**lease, "token": lease["token"] + 7}
    r = proto.complete(wrong, result=1)
    assert r.status_code == 409 and r.json()["reason"] == "superseded"
    r = proto.complete({**lease, "attempt": 5}, result=1)
    assert r.status_code == 409 and r.json()["reason"] == "superseded"
    assert proto.app.get(pid).status is Status.STARTING
    missing = {**lease, "process_id": str(uuid.uuid4())}
    r = proto.complete(missing, result=1)
    assert r.status_code == 409 and r.json()["reason"] == "not_found"
    # A worker token of another queue does not see the process either.
    body = {
        "process_id": pid,
        "attempt": 1,
        "token": lease["token"],
        "outcome": {"kind": "cancelled"},
    }
    assert proto.images.post("/worker/complete", body).json()["reason"] == "not_found"
    for bad in (
        {"kind": "later"},
        {"kind": "retry_later"},  # no delay
        {"kind": "retry_later", "delay": -1},
        {"kind": "returned", "store": []},
    ):
        r = proto.complete(lease, **bad)
        assert r.status_code == 422, (bad, r.text)
    assert proto.complete(lease, result=1).status_code == 200


def test_complete_with_next_claims_in_the_same_round_trip(proto: Proto) -> None:
    first, second = submit(proto, image="1.png"), submit(proto, image="2.png")
    [lease] = proto.claim()
    body = {
        "process_id": lease["process_id"],
        "attempt": 1,
        "token": lease["token"],
        "outcome": {"kind": "returned", "result": 1},
        "next": {"worker": "w1", "max": 5},
    }
    r = proto.worker.post("/worker/complete", body).json()
    assert r["process_id"] == first and [le["process_id"] for le in r["leases"]] == [second]


def test_a_claim_waits_for_work_and_is_woken_by_a_submit(proto: Proto) -> None:
    got: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: got.append(proto.claim(wait=20)))
    waiter.start()
    pid = submit(proto)
    waiter.join(timeout=25)
    assert got and [le["process_id"] for le in got[0]] == [pid]


def test_paused_queues_quiet_the_worker(proto: Proto) -> None:
    proto.app.storage.queue_pause("images", True)
    r = proto.images.post("/worker/heartbeat", {"worker": "w1", "leases": []})
    assert r.json() == {"leases": [], "worker": "quiet"}
    r = proto.worker.post("/worker/heartbeat", {"worker": "w1", "leases": []})
    assert r.json()["worker"] == "continue"


# --- the same outcomes, the same history ---------------------------------------------------


def shape(p: Proto, pid: str) -> list[tuple[Any, ...]]:
    """A history without what differs between runs: times, ids, owners, tracebacks."""
    out = []
    for e in p.app.history(pid):
        detail = {
            k: v
            for k, v in e.detail.items()
            if k not in ("owner", "token", "traceback", "previous_owner")
        }
        if isinstance(detail.get("error"), dict):
            detail["error"] = {k: v for k, v in detail["error"].items() if k != "traceback"}
        detail.pop("job", None)
        out.append((e.kind, e.from_status, e.to_status, e.attempt, sorted(detail.items())))
    return out


@pytest.mark.parametrize("image", ["a.png", "flaky.png", "bad.png"])
def test_an_http_worker_and_an_in_process_worker_leave_the_same_history(
    proto: Proto, image: str
) -> None:
    python = str(
        proto.api.submit(proto.api.shop, job="resize_py", params={"image": image, "width": 8})["id"]
    )
    while proto.app.get(python).status not in (Status.COMPLETED, Status.FAILED):
        drain(proto.app)
    remote = submit(proto, image=image)
    while proto.app.get(remote).status not in (Status.COMPLETED, Status.FAILED):
        [lease] = proto.claim(wait=10)
        if image == "bad.png" or (image == "flaky.png" and lease["attempt"] == 1):
            message = "broken for good" if image == "bad.png" else "boom"
            error = {"type": "RuntimeError", "message": message, "retryable": True}
            r = proto.complete(lease, kind="raised", error=error)
        else:
            r = proto.complete(lease, result={"w": 8}, store={})
        assert r.status_code == 200, r.text
    assert proto.app.get(remote).status == proto.app.get(python).status
    assert shape(proto, remote) == shape(proto, python)


def test_an_http_worker_is_in_the_worker_registry(proto: Proto) -> None:
    """Claims, heartbeats and completes keep the worker's registry row, as an in-process
    worker keeps its own: what it runs, when it was last seen."""
    assert proto.claim(worker="idle") == []
    [idle] = proto.app.workers()
    assert (idle.owner, idle.running, idle.app, idle.pid) == ("idle", (), "http:fleet", 0)
    assert idle.jobs == ("resize", "thumbs")  # it named none: every external job

    first, second = submit(proto), submit(proto, image="b.png")
    [a] = proto.claim(worker="w1", jobs=["resize"], max=1)
    [b] = proto.claim(worker="w1", jobs=["resize"], max=1)
    w1 = next(w for w in proto.app.workers() if w.owner == "w1")
    assert set(w1.running) == {first, second} and w1.jobs == ("resize",)
    assert w1.queues is None and w1.host == "testclient"

    # A complete drops what it settled; a heartbeat names everything still held.
    assert proto.complete(a, result=1).status_code == 200
    w1 = next(w for w in proto.app.workers() if w.owner == "w1")
    assert w1.running == (b["process_id"],)
    beat = {"process_id": b["process_id"], "token": b["token"]}
    proto.app.cancel(b["process_id"])  # asked to cancel: held until it completes
    r = proto.worker.post("/worker/heartbeat", {"worker": "w1", "leases": [beat]})
    assert r.json()["leases"][0] == {
        "process_id": b["process_id"],
        "action": "cancel",
        "reason": "cancel_requested",
    }
    w1 = next(w for w in proto.app.workers() if w.owner == "w1")
    assert w1.running == (b["process_id"],) and w1.last_seen_at >= idle.last_seen_at
    # A lease it no longer holds (taken back) leaves the row at the next heartbeat.
    proto.app.storage.lease_release_many({b["process_id"]: b["token"]}, proto.app.clock())
    r = proto.worker.post("/worker/heartbeat", {"worker": "w1", "leases": [beat]})
    assert r.json()["leases"][0]["action"] == "cancel"
    w1 = next(w for w in proto.app.workers() if w.owner == "w1")
    assert w1.running == ()

    # A row the registry forgot (the worker looked dead) comes back with the next call.
    proto.app.storage.worker_remove("w1")
    proto.worker.post("/worker/heartbeat", {"worker": "w1", "leases": []})
    assert "w1" in {w.owner for w in proto.app.workers()}
