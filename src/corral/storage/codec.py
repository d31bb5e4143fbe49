"""JSON encoding shared by the SQL backends. Never pickle: parameters and results are JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, TypeVar

from corral.model import JSON, ErrorInfo, Event, Process, Status

if TYPE_CHECKING:
    from corral.storage.base import NewProcess

T = TypeVar("T")


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(value: JSON) -> str:
    """Canonical JSON: equal values give equal text (idempotent submit compares it)."""
    if value is None:
        return "null"
    if value == {} and isinstance(value, dict):
        return "{}"
    return _ENCODER.encode(value)


# The C encoder behind _ENCODER, made once and without its cycle check: json's own
# encode() makes one per call (the larger part of the time for small documents).
_TREE_ENCODER = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", True, False, True
    )
)


def dumps_tree(value: dict[str, JSON]) -> str:
    """`dumps` of a document that is a tree, no list or dict inside itself (parameters fresh
    from pydantic's JSON serialization are): the same text, faster."""
    if _TREE_ENCODER is None or not value:
        return dumps(value)
    return "".join(_TREE_ENCODER(value, 0))


def loads(text: str | None) -> JSON:
    if text is None or text == "null":
        return None
    if text == "{}":
        return {}
    return json.loads(text)


def error_dumps(error: ErrorInfo | None) -> str | None:
    return None if error is None else dumps(error.to_json())


def error_loads(text: str | None) -> ErrorInfo | None:
    return None if text is None else ErrorInfo.from_json(json.loads(text))


#: Column order of every SELECT that builds a Process.
PROCESS_COLUMNS = (
    "id, job, params, status, store, result, error, progress_done, progress_total, priority, "
    "queue, run_at, attempt, lease_owner, lease_token, lease_expires_at, cancel_requested, "
    "stopped_status, custom_id, client_id, tags, created_at, updated_at, finished_at, version, "
    "deadline_at, schedule_to_close, start_to_close, heartbeat_timeout, iteration_since, "
    "claimed_at, heartbeat_at"
)


def process_from_row(row: Any) -> Process:
    return Process(
        id=row[0],
        job=row[1],
        params=loads(row[2]),
        status=Status(row[3]),
        store=loads(row[4]),
        result=loads(row[5]),
        error=error_loads(row[6]),
        progress_done=row[7],
        progress_total=row[8],
        priority=row[9],
        queue=row[10],
        run_at=row[11],
        attempt=row[12],
        lease_owner=row[13],
        lease_token=row[14],
        lease_expires_at=row[15],
        cancel_requested=bool(row[16]),
        stopped_status=Status(row[17]) if row[17] else None,
        custom_id=row[18],
        client_id=row[19],
        tags=loads(row[20]),
        created_at=row[21],
        updated_at=row[22],
        finished_at=row[23],
        version=row[24],
        deadline_at=row[25],
        schedule_to_close=row[26],
        start_to_close=row[27],
        heartbeat_timeout=row[28],
        iteration_since=row[29],
        claimed_at=row[30],
        heartbeat_at=row[31],
    )


def positional_constructor(cls: type[T]) -> Callable[..., T]:
    """`cls(*values)` for a frozen dataclass with slots, every field given in declaration
    order, in half the time: the dataclass's own __init__ sets each field through
    `object.__setattr__` (the class is frozen); this sets the slots directly. For the
    records a batch insert makes by the thousand, from values already checked."""
    if not (dataclasses.is_dataclass(cls) and hasattr(cls, "__slots__")):
        raise TypeError(f"{cls.__name__} is not a dataclass with slots")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}.__post_init__ would be skipped")
    setters = tuple(getattr(cls, f.name).__set__ for f in dataclasses.fields(cls))
    new = object.__new__

    count = len(setters)

    def construct(*values: Any) -> T:
        if len(values) != count:
            raise TypeError(f"{cls.__name__} takes {count} values, not {len(values)}")
        obj = new(cls)
        for set_value, value in zip(setters, values):  # noqa: B905 - lengths checked above
            set_value(obj, value)
        return obj

    return construct


_process = positional_constructor(Process)


def new_process_record(new: NewProcess) -> Process:
    """The Process a backend stores for a NewProcess, without reading it back."""
    return _process(
        new.id, new.job, new.params, new.status, {}, None, None, None, None, new.priority,
        new.queue, new.run_at, 0, None, 0, None, False, None, new.custom_id, new.client_id,
        dict(new.tags), new.created_at, new.created_at, None, 0, new.deadline_at,
        new.schedule_to_close, new.start_to_close, new.heartbeat_timeout, new.run_at, None,
        None,
    )  # fmt: skip


def submitted_detail(new: NewProcess) -> dict[str, JSON]:
    """The detail of a new process's first history line, its `submitted` event."""
    return {"job": new.job, "custom_id": new.custom_id}


def params_json(new: NewProcess) -> str:
    """The stored text of a new process's parameters."""
    return dumps(new.params) if new.params_json is None else new.params_json


class JsonCache:
    """`dumps` of the value given last time, when this one is equal: what the processes of
    one batch share (their tags, their first event's detail) is encoded once. For mappings
    whose values are strings or None, where equal values have equal text (unlike 1 and 1.0)."""

    __slots__ = ("_text", "_value")

    def __init__(self) -> None:
        self._value: object = _NOTHING
        self._text = ""

    def dumps(self, value: Mapping[str, JSON]) -> str:
        if value is not self._value and value != self._value:
            self._text = dumps(dict(value))
            self._value = value
        return self._text


_NOTHING = object()


HISTORY_COLUMNS = "process_id, at, kind, from_status, to_status, attempt, detail"


def event_to_row(event: Event, process_id: str | None = None) -> tuple[Any, ...]:
    return (
        process_id or event.process_id,
        event.at,
        event.kind,
        event.from_status.value if event.from_status else None,
        event.to_status.value if event.to_status else None,
        event.attempt,
        dumps(dict(event.detail)),
    )


def event_from_row(row: Any) -> Event:
    return Event(
        process_id=row[0],
        at=row[1],
        kind=row[2],
        from_status=Status(row[3]) if row[3] else None,
        to_status=Status(row[4]) if row[4] else None,
        attempt=row[5],
        detail=loads(row[6]),
    )
