"""The client endpoints, every status code they answer, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.model import Status
from corral.views import process_json
from tests.http.conftest import Api
from tests.integration.common import drain


def test_requests_without_a_good_token_are_refused(api: Api) -> None:
    assert api.http.get("/api/v1/processes").status_code == 401
    bad = api.http.get("/api/v1/processes", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == "Bearer"
    basic = api.http.get("/api/v1/stats", headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    # A revoked token stops working at once.
    [shop] = [t for t in api.app.storage.token_list() if t.client == "shop"]
    assert api.shop.get("/processes").status_code == 200
    api.app.storage.token_revoke(shop.id, api.app.clock())
    assert api.shop.get("/processes").status_code == 401


def test_submit_created_existing_conflict_and_every_field_error(api: Api) -> None:
    body = {"job": "add", "params": {"a": 1, "b": 2}, "custom_id": "sum-1", "tags": {"t": "x"}}
    created = api.shop.post("/processes", body)
    assert created.status_code == 201
    p = created.json()
    assert p["outcome"] == "created" and p["client_id"] == "shop" and p["tags"] == {"t": "x"}
    # The process JSON is `corral show --json`'s, key for key.
    stored = api.app.get(p["id"])
    assert set(p) - {"outcome"} == set(process_json(stored))

    again = api.shop.post("/processes", body)
    assert again.status_code == 200 and again.json()["id"] == p["id"]
    assert again.json()["outcome"] == "existing"

    other = api.shop.post("/processes", {**body, "params": {"a": 2, "b": 2}})
    assert other.status_code == 409
    assert p["id"] in other.json()["detail"] and other.json()["process"]["id"] == p["id"]

    # The same custom id is another client's own: no conflict across clients.
    theirs = api.blog.post("/processes", {**body, "params": {"a": 2, "b": 2}})
    assert theirs.status_code == 201 and theirs.json()["id"] != p["id"]

    bad = api.shop.post("/processes", {"job": "order", "params": {"quantity": "many"}})
    assert bad.status_code == 422
    locs = [e["loc"] for e in bad.json()["detail"]]
    assert locs == [["body", "params", "item"], ["body", "params", "quantity"]]

    unknown = api.shop.post("/processes", {"job": "nope"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "job"]
    for wrong in (
        {"job": "add", "params": {"a": 1, "b": 2}, "priorty": 3},  # misspelt: refused
        {"job": "add", "params": {"a": 1, "b": 2}, "priority": 2**40},
        {"job": "add", "params": {"a": 1, "b": 2}, "run_at": "2026-01-31T09:00"},  # no zone
        {"job": "add", "params": {"a": 1, "b": 2}, "depends_on": ["not-an-id"]},
        {"job": "add", "params": {"a": 1, "b": 2}, "on_dependency_failure": "shrug"},
        {"job": "add", "params": {"a": 1, "b": 2}, "queue": ""},
        {"job": "add", "params": {"a": 1, "b": 2}, "start_to_close": -1},
        {"job": "add", "params": []},
        "not an object",
    ):
        r = api.shop.post("/processes", wrong)
        assert r.status_code == 422, (wrong, r.text)
        assert isinstance(r.json()["detail"], list)
    broken = api.shop.http.post(
        "/api/v1/processes",
        content=b"{",
        headers={**api.shop._headers(), "content-type": "application/json"},
    )
    assert broken.status_code == 422
    assert api.app.count() == 2  # nothing else was written


def test_submit_options_by_the_names_of_app_submit(api: Api) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    dep = api.submit(api.shop)
    p = api.submit(
        api.shop,
        priority=7,
        queue="mail",
        run_at=later.isoformat(),
        depends_on=[dep["id"]],
        on_dependency_failure="run",
        process_timeout=60,
    )
    assert (p["priority"], p["queue"], p["status"]) == (7, "mail", "waiting")
    assert abs(datetime.fromisoformat(p["run_at"]).timestamp() - later.timestamp()) < 0.01


def test_get_list_filters_and_cursor(api: Api) -> None:
    ids = [
        api.submit(api.shop, params={"a": i, "b": 0}, tags={"n": str(i % 2)})["id"]
        for i in range(7)
    ]
    api.submit(api.shop, job="order", params={"item": "pen", "quantity": 1}, queue="mail")
    got = api.shop.get(f"/processes/{ids[0]}")
    assert got.status_code == 200 and got.json()["params"] == {"a": 0, "b": 0}

    seen: list[str] = []
    cursor = None
    while True:
        page = api.shop.get(
            "/processes",
            params={"job": "add", "limit": 3, **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += [p["id"] for p in page["processes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    def listed(**query: object) -> list[str]:
        r = api.shop.get("/processes", params={"limit": 100, **query})
        assert r.status_code == 200, r.text
        return [p["id"] for p in r.json()["processes"]]

    assert listed(tag="n=1") == [ids[5], ids[3], ids[1]]
    assert len(listed(queue="mail")) == 1 and len(listed(status="starting")) == 8
    assert listed(status="completed") == [] and listed(custom_id="none") == []
    # The created range: from (inclusive) and until (exclusive) a time between two processes.
    c2, c3 = api.app.get(ids[2]).created_at, api.app.get(ids[3]).created_at
    assert c2 < c3
    middle = datetime.fromtimestamp((c2 + c3) / 2, UTC).isoformat()
    assert listed(job="add", created_from=middle) == list(reversed(ids[3:]))
    assert listed(job="add", created_until=middle) == list(reversed(ids[:3]))
    for bad in ({"status": "asleep"}, {"limit": 0}, {"cursor": "garbage!"}, {"tag": "novalue"},
                {"created_from": "2026-01-01T00:00"}):  # fmt: skip
        assert api.shop.get("/processes", params=bad).status_code == 422, bad
    assert api.shop.get("/processes/01234567-89ab-7def-8123-456789abcdef").status_code == 404
    assert api.shop.get("/processes/not-an-id").status_code == 422


def test_cancel_retry_history_graph_explain_and_stats(api: Api) -> None:
    dep = api.submit(api.shop)
    after = api.submit(api.shop, depends_on=[dep["id"]])
    canceled = api.shop.post(f"/processes/{dep['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert canceled.json()["outcome"] == "canceled"
    assert api.app.get(after["id"]).status is Status.CANCELED  # the graph's cascade

    retried = api.shop.post(f"/processes/{dep['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "starting"
    drain(api.app)
    done = api.shop.get(f"/processes/{dep['id']}").json()
    assert done["status"] == "completed" and done["result"] == 3
    # Retrying or canceling what completed is a conflict with its status.
    assert api.shop.post(f"/processes/{dep['id']}/retry").status_code == 409

    first = api.shop.get(f"/processes/{dep['id']}/history", params={"limit": 2}).json()
    rest = api.shop.get(
        f"/processes/{dep['id']}/history", params={"cursor": first["next_cursor"], "limit": 100}
    ).json()
    kinds = [e["kind"] for e in first["events"] + rest["events"]]
    assert kinds == [e.kind for e in api.app.history(dep["id"])] and rest["next_cursor"] is None

    graph = api.shop.get(f"/processes/{after['id']}/graph").json()
    assert graph["edges"] == [[after["id"], dep["id"]]]
    assert {n["id"] for n in graph["nodes"]} == {after["id"], dep["id"]}

    explained = api.shop.get(f"/processes/{after['id']}/explain").json()
    assert [r["code"] for r in explained["reasons"]] == [
        r.code for r in api.app.explain(after["id"])
    ]

    stats = api.shop.get("/stats").json()
    assert stats["by_status"] == {"completed": 1, "canceled": 1}
    assert stats["by_job"] == {"add": {"completed": 1, "canceled": 1}}
    assert stats["by_queue"] == {"default": {"completed": 1, "canceled": 1}}
    minutes = stats["completions_per_minute"]
    assert len(minutes) == 60 and minutes[-1]["completed"] == 1
    assert sum(m["completed"] for m in minutes) == 1
    # Another client's stats count none of these; an admin's count every client's.
    assert api.blog.get("/stats").json()["total"] == 0
    api.submit(api.blog)
    assert api.admin.get("/stats").json()["total"] == 3


def test_batch_writes_a_graph_in_one_transaction(api: Api) -> None:
    existing = api.submit(api.shop)
    body = {
        "custom_id": "nightly",
        "processes": [
            {"key": "fetch", "job": "add", "params": {"a": 1, "b": 1}},
            {
                "key": "report",
                "job": "add",
                "params": {"a": 2, "b": 2},
                "depends_on": ["fetch", existing["id"]],
            },
        ],
    }
    r = api.shop.post("/processes:batch", body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert [p["key"] for p in out["processes"]] == ["fetch", "report"]
    assert [p["status"] for p in out["processes"]] == ["starting", "waiting"]
    assert all(p["client_id"] == "shop" for p in out["processes"])
    again = api.shop.post("/processes:batch", body)
    assert again.status_code == 200 and again.json()["outcome"] == "existing"
    assert again.json()["id"] == out["id"]

    # One bad node: every error said, nothing written.
    before = api.app.count()
    bad = api.shop.post(
        "/processes:batch",
        {"processes": [{"job": "add", "params": {"a": 1, "b": 1}}, {"job": "order", "params": {}},
                       {"job": "add", "params": {"a": 1, "b": 1}, "depends_on": ["later"]}]},
    )  # fmt: skip
    assert bad.status_code == 422
    assert [e["loc"][:4] for e in bad.json()["detail"]] == [
        ["body", "processes", 1, "params"], ["body", "processes", 1, "params"],
    ]  # fmt: skip
    unknown_key = api.shop.post(
        "/processes:batch",
        {
            "processes": [
                {"key": "first", "job": "add", "params": {"a": 1, "b": 1}},
                {"job": "add", "params": {"a": 1, "b": 1}, "depends_on": ["first", "later"]},
            ]
        },
    )
    assert unknown_key.status_code == 422
    assert unknown_key.json()["detail"][0]["loc"] == ["body", "processes", 1, "depends_on", 1]
    assert api.shop.post("/processes:batch", {"processes": []}).status_code == 422
    assert api.app.count() == before


def test_a_client_learns_which_of_its_processes_failed_validation(api: Api) -> None:
    # The error kernel's flow: submit, a worker validates, the client asks what became of each.
    good = api.submit(api.shop, job="checked", params={"item": "pen", "quantity": 2})
    bad = api.submit(api.shop, job="checked", params={"item": "pen", "quantity": 0})
    theirs = api.submit(api.blog, job="checked", params={"item": "ink", "quantity": 0})
    drain(api.app)
    failed = api.shop.get("/processes", params={"status": "failed", "reason": "invalid"}).json()
    assert [p["id"] for p in failed["processes"]] == [bad["id"]]
    shown = api.shop.get(f"/processes/{bad['id']}").json()
    assert shown["error"]["reason"] == "invalid" and "cannot order 0" in shown["error"]["message"]
    assert api.shop.get(f"/processes/{good['id']}").json()["result"] == {"ordered": 2}
    everyone = api.admin.get("/processes", params={"reason": "invalid"}).json()["processes"]
    assert {p["id"] for p in everyone} == {bad["id"], theirs["id"]}
