"""The codec's shortcuts for bulk inserts give exactly what the plain ways give. No database."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.errors import NotStorable
from corral.model import Process, Status
from corral.storage import codec, columns
from corral.storage.base import NewProcess
from corral.storage.fast import positional_constructor

# Text every backend stores: no lone surrogate, no NUL (the codec refuses both).
storable_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(storable_text, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(storable_text, json_values, max_size=6))
def test_dumps_tree_is_dumps(document: dict[str, Any]) -> None:
    assert codec.dumps_tree(document) == codec.dumps(document)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"b": 1, "a": [1.5, "é", None, True]},
        {'quote"back\\slash': "\n\t\x01\x1f\u2028😀", "not a NUL": "\\u0000"},
        {"big": 10**30, "tiny": 1e-300},
    ],
)
def test_dumps_tree_on_edge_cases(document: dict[str, Any]) -> None:
    assert codec.dumps_tree(document) == codec.dumps(document)


@pytest.mark.parametrize(
    "document",
    [
        {"inf": math.inf},
        {"nan": [1, math.nan]},
        {"nul": "a\x00b"},
        {"surrogate": "file-\udcff.txt"},
        {"deep": eval("[" * 150 + "]" * 150)},
    ],
)
def test_dumps_and_dumps_tree_refuse_the_same_values(document: dict[str, Any]) -> None:
    with pytest.raises(NotStorable) as plain:
        codec.dumps(document, "params")
    with pytest.raises(NotStorable) as tree:
        codec.dumps_tree(document, "params")
    assert str(plain.value) == str(tree.value)
    assert str(plain.value).startswith("params")


def test_new_process_record_is_the_dataclass_built_the_plain_way() -> None:
    new = NewProcess(
        id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        job="add",
        params={"a": 1},
        created_at=10.0,
        run_at=12.5,
        priority=3,
        queue="q",
        custom_id="k",
        client_id="c",
        tags={"t": "v"},
        deadline_at=100.0,
        schedule_to_close=5.0,
        start_to_close=6.0,
        heartbeat_timeout=7.0,
        params_json='{"a":1}',
    )
    plain = Process(
        id=new.id, job="add", params={"a": 1}, status=Status.STARTING, priority=3, queue="q",
        run_at=12.5, custom_id="k", client_id="c", tags={"t": "v"}, created_at=10.0,
        updated_at=10.0, deadline_at=100.0, schedule_to_close=5.0, start_to_close=6.0,
        heartbeat_timeout=7.0, iteration_since=12.5,
    )  # fmt: skip
    record = columns.new_process_record(new)
    assert record == plain
    assert dataclasses.asdict(record) == dataclasses.asdict(plain)
    assert record.tags is not new.tags  # a record of its own
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = Status.RUNNING  # type: ignore[misc]


def test_positional_constructor_takes_every_field_or_nothing() -> None:
    make = positional_constructor(NewProcess)
    fields = [f.name for f in dataclasses.fields(NewProcess)]
    values = [f"v{i}" for i in range(len(fields))]
    built = make(*values)
    assert [getattr(built, name) for name in fields] == values
    with pytest.raises(TypeError, match="takes"):
        make(*values[:-1])


def test_json_cache_encodes_equal_mappings_once_and_others_again() -> None:
    cache = codec.JsonCache()
    assert cache.dumps({"b": "2", "a": "1"}) == '{"a":"1","b":"2"}'
    assert cache.dumps({"a": "1", "b": "2"}) == '{"a":"1","b":"2"}'
    assert cache.dumps({"a": None}) == '{"a":null}'
    assert cache.dumps({}) == "{}"
