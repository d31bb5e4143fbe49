"""The OpenAPI document describes the answers as they are: its models name the keys that
corral.views gives (the shape `corral show --json` prints), and real answers of every
route validate against them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from corral.http import answers
from corral.views import event_json, process_json
from tests.http.conftest import Api
from tests.integration.common import drain


def keys(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_the_models_name_the_keys_of_the_views(api: Api) -> None:
    made = api.app.submit("add", {"a": 1, "b": 2})
    p = api.app.get(made.id)
    assert keys(answers.ProcessView) == set(process_json(p))
    assert keys(answers.EventView) == set(event_json(api.app.history(p.id)[0]))


def check(model: type[BaseModel], r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    model.model_validate(r.json())
    found: dict[str, Any] = r.json()
    return found


def test_every_answer_validates_against_its_model(api: Api) -> None:
    shop = api.shop
    first = check(
        answers.SubmittedView,
        shop.post("/processes", {"job": "add", "params": {"a": 1, "b": 2}}),
        201,
    )
    failing = check(
        answers.SubmittedView,
        shop.post("/processes", {"job": "checked", "params": {"item": "x", "quantity": 0}}),
        201,
    )
    keyed = {"job": "add", "params": {"a": 1, "b": 2}, "custom_id": "k"}
    check(answers.SubmittedView, shop.post("/processes", keyed), 201)
    check(
        answers.ConflictView,
        shop.post("/processes", {"job": "add", "params": {"a": 2, "b": 2}, "custom_id": "k"}),
        409,
    )
    batch = {
        "processes": [
            {"key": "a", "job": "add", "params": {"a": 1, "b": 1}},
            {"job": "add", "params": {"a": 1, "b": 1}, "depends_on": ["a"]},
        ]
    }
    out = check(answers.BatchView, shop.post("/processes:batch", batch), 201)
    drain(api.app)
    pid = first["id"]
    check(answers.ProcessView, shop.get(f"/processes/{failing['id']}"))  # with its error
    check(answers.ProcessPage, shop.get("/processes"))
    check(answers.HistoryPage, shop.get(f"/processes/{pid}/history"))
    check(answers.GraphView, shop.get(f"/processes/{out['processes'][1]['id']}/graph"))
    check(answers.ExplainView, shop.get(f"/processes/{pid}/explain"))
    check(answers.StatsView, shop.get("/stats"))
    check(answers.ProcessView, shop.post(f"/processes/{failing['id']}/retry"))
    check(answers.CancelView, shop.post(f"/processes/{failing['id']}/cancel"))
    check(answers.Detail, shop.post(f"/processes/{pid}/cancel"), 409)
    check(answers.Detail, shop.get("/processes/01234567-89ab-7def-8123-456789abcdef"), 404)
    check(answers.FieldErrors, shop.post("/processes", {"job": "nope"}), 422)
    check(answers.Detail, api.http.get("/api/v1/stats"), 401)
