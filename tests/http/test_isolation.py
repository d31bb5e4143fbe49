"""Per-client isolation: a client token sees and acts on its own processes only. Every
route that names a process, called with another client's process, answers exactly as
for an id that names nothing; lists, stats, graphs and dependencies leave them out; an
admin token sees them all."""

from __future__ import annotations

from typing import Any

from tests.http.conftest import Api, Client

MISSING = "01234567-89ab-7def-8123-456789abcdef"


def process_routes(api: Api) -> list[tuple[str, str]]:
    # Every route of a process the OpenAPI document publishes: a new one joins the walk by
    # itself.
    paths = api.http.get("/openapi.json").json()["paths"]
    found = [
        (method.upper(), path)
        for path, operations in paths.items()
        if "{process_id}" in path
        for method in operations
    ]
    assert len(found) >= 6, found
    return found


def call(who: Client, method: str, path: str, process_id: str) -> Any:
    url = path.removeprefix("/api/v1").replace("{process_id}", process_id)
    return who.post(url) if method == "POST" else who.get(url)


def test_every_route_answers_another_clients_process_as_a_missing_one(api: Api) -> None:
    mine = api.submit(api.shop, custom_id="private")["id"]
    before = api.app.get(mine)
    for method, path in process_routes(api):
        theirs = call(api.blog, method, path, mine)
        missing = call(api.blog, method, path, MISSING)
        assert theirs.status_code == missing.status_code == 404, (method, path)
        assert theirs.json() == {"detail": f"no process with id {mine}"}
        assert missing.json() == {"detail": f"no process with id {MISSING}"}
        assert dict(theirs.headers).keys() == dict(missing.headers).keys()
    # Nothing the walk did touched the process (cancel and retry were refused).
    assert api.app.get(mine) == before
    for method, path in process_routes(api):
        if method == "GET":
            assert call(api.shop, method, path, mine).status_code == 200, path
            assert call(api.admin, method, path, mine).status_code == 200, path


def test_lists_stats_graphs_and_dependencies_leave_other_clients_out(api: Api) -> None:
    mine = api.submit(api.shop, custom_id="same-key", tags={"team": "x"})
    theirs = api.submit(api.blog, custom_id="same-key", tags={"team": "x"})
    assert mine["id"] != theirs["id"]

    def ids(who: Client, **query: object) -> list[str]:
        return [p["id"] for p in who.get("/processes", params=query).json()["processes"]]

    assert ids(api.shop) == [mine["id"]]
    assert ids(api.shop, custom_id="same-key") == [mine["id"]]
    assert ids(api.shop, tag="team=x") == [mine["id"]]
    assert ids(api.blog) == [theirs["id"]]
    assert set(ids(api.admin)) == {mine["id"], theirs["id"]}
    assert api.shop.get("/stats").json()["total"] == 1
    assert api.admin.get("/stats").json()["total"] == 2

    # Depending on another client's process is refused as depending on a missing one.
    foreign = api.blog.post("/processes", {"job": "add", "params": {"a": 1, "b": 1},
                                            "depends_on": [mine["id"]]})  # fmt: skip
    missing = api.blog.post("/processes", {"job": "add", "params": {"a": 1, "b": 1},
                                            "depends_on": [MISSING]})  # fmt: skip
    assert foreign.status_code == missing.status_code == 422
    assert foreign.json()["detail"][0]["msg"] == f"no process with id {mine['id']}"
    batch = api.blog.post(
        "/processes:batch",
        {"processes": [{"job": "add", "params": {"a": 1, "b": 1}, "depends_on": [mine["id"]]}]},
    )
    assert batch.status_code == 422

    # A dependent of another client (through the Python API) is left out of the graph.
    other = api.app.submit("add", {"a": 1, "b": 1}, client_id="blog", depends_on=[mine["id"]])
    shown = api.shop.get(f"/processes/{mine['id']}/graph").json()
    assert [n["id"] for n in shown["nodes"]] == [mine["id"]] and shown["edges"] == []
    seen_by_admin = api.admin.get(f"/processes/{mine['id']}/graph").json()
    assert seen_by_admin["edges"] == [[other.id, mine["id"]]]
