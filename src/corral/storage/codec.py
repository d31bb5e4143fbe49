"""JSON encoding shared by the SQL backends. Never pickle: parameters and results are JSON.

Every document is encoded one way, strictly, whatever the backend: canonical text (sorted
keys, no spaces), finite numbers only, no lone surrogate (text must be UTF-8), no NUL
character (PostgreSQL's text and jsonb refuse it), nesting at most MAX_DEPTH deep. What
passes here is accepted by every backend, so a value is refused before anything is
written, the same on SQLite as on PostgreSQL, with `NotStorable` naming what was wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic_core

from corral.errors import NotStorable
from corral.model import JSON, ErrorInfo, Event, Status

if TYPE_CHECKING:
    from corral.storage.base import NewProcess

T = TypeVar("T")

#: The deepest nesting of lists and objects a stored document may have.
MAX_DEPTH = 100

# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# A NUL escaped by the encoder: an odd number of backslashes before u0000.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def dumps(value: JSON, what: str = "value") -> str:
    """Canonical JSON: equal values give equal text (idempotent submit compares it).
    Raises NotStorable, naming `what`, for a value no backend can store."""
    if value is None:
        return "null"
    if value == {} and isinstance(value, dict):
        return "{}"
    try:
        text: str = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotStorable(_why(value, exc, what)) from None
    return _checked(text, value, what)


# The C encoder behind _ENCODER, made once and without its cycle check: json's own
# encode() makes one per call (the larger part of the time for small documents).
_TREE_ENCODER = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", True, False, False
    )
)


def dumps_tree(value: dict[str, JSON], what: str = "value") -> str:
    """`dumps` of a document that is a tree, no list or dict inside itself (parameters fresh
    from pydantic's JSON serialization are): the same text, faster."""
    if _TREE_ENCODER is None or not value:
        return dumps(value, what)
    try:
        text = "".join(_TREE_ENCODER(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotStorable(_why(value, exc, what)) from None
    return _checked(text, value, what)


def _checked(text: str, value: JSON, what: str) -> str:
    """`text` if every backend can store it; else NotStorable naming where it goes wrong.
    Cheap for the common document: each test is one pass of C over the text."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise NotStorable(
                f"{what}{_where(value, _has_surrogate)}: holds a lone surrogate (text that is "
                "not valid Unicode, such as a file name decoded with os.fsdecode); encode it "
                "first, e.g. as text with errors='replace' or as base64"
            ) from None
    if "\\u0000" in text and _NUL.search(text):
        raise NotStorable(
            f"{what}{_where(value, _has_nul)}: holds a NUL character (\\x00), which "
            "PostgreSQL cannot store; remove it or encode the text"
        ) from None
    # Brackets bound the depth from above: only a document with many of them is walked.
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise NotStorable(f"{what}: nested more than {MAX_DEPTH} levels deep") from None
    return text


def _why(value: JSON, exc: BaseException, what: str) -> str:
    """The message of NotStorable for a value the encoder refused with `exc`."""
    if isinstance(exc, RecursionError):
        return f"{what}: nested more than {MAX_DEPTH} levels deep"
    bad = _find(value, _not_finite)
    if bad is not None:
        where = f"{what}{_at(bad[0])}"
        return f"{where}: {bad[1]!r} is not a finite number; JSON has no NaN or infinity"
    bad = _find(value, _too_long)
    if bad is not None:
        return (
            f"{what}{_at(bad[0])}: an integer of more than {_int_digits()} digits, more than "
            "Python turns into text; store it as a string"
        )
    bad = _find(value, _mixed_keys)
    if bad is not None:
        return (
            f"{what}{_at(bad[0])}: object keys of different types (such as 1 and 'a', as in a "
            "Counter) cannot be stored; make them all strings"
        )
    bad = _find(value, lambda v: not isinstance(v, _JSON_TYPES), keys=True)
    if bad is not None:
        kind = "key" if bad[2] else "value"
        return (
            f"{what}{_at(bad[0])}: a {kind} of type {type(bad[1]).__name__} is not JSON (use "
            "str, int, float, bool, None, list or dict)"
        )
    return f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def _not_finite(v: object) -> bool:
    return isinstance(v, float) and (v != v or v in (_INF, -_INF))


def _mixed_keys(v: object) -> bool:
    return isinstance(v, dict) and len({type(k) for k in v}) > 1


_INF = float("inf")
_JSON_TYPES = (str, int, float, bool, type(None), list, tuple, dict)


def _int_digits() -> int:
    import sys

    return sys.get_int_max_str_digits() or 0


def _too_long(v: object) -> bool:
    if not isinstance(v, int) or isinstance(v, bool):
        return False
    limit = _int_digits()
    return bool(limit) and abs(v).bit_length() > limit * 3.3


def _has_surrogate(v: object) -> bool:
    if not isinstance(v, str) or v.isascii():
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _has_nul(v: object) -> bool:
    return isinstance(v, str) and "\x00" in v


def _where(value: JSON, test: Callable[[object], bool]) -> str:
    bad = _find(value, test, keys=True)
    return "" if bad is None else _at(bad[0])


def _at(path: tuple[str | int, ...]) -> str:
    """A path as it follows a name: `.a[2].b`."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _find(
    value: JSON, test: Callable[[object], bool], *, keys: bool = False
) -> tuple[tuple[str | int, ...], object, bool] | None:
    """The first place in `value` (path, the value, whether it is a key) passing `test`,
    walking at most MAX_DEPTH levels; None if there is none. Slow: error paths only."""
    stack: list[tuple[tuple[str | int, ...], object]] = [((), value)]
    while stack:
        path, v = stack.pop()
        if test(v):
            return path, v, False
        if len(path) > MAX_DEPTH:
            continue
        if isinstance(v, dict):
            for k, item in v.items():
                if keys and test(k):
                    return (*path, str(k)), k, True
                stack.append(((*path, str(k)), item))
        elif isinstance(v, list | tuple):
            stack.extend(((*path, i), item) for i, item in enumerate(v))
    return None


def depth(value: JSON) -> int:
    """How deeply lists and objects nest in `value` (0 for a scalar), counted up to
    MAX_DEPTH + 1 at most."""
    deepest = 0
    stack: list[tuple[int, object]] = [(0, value)]
    while stack:
        level, v = stack.pop()
        if isinstance(v, dict | list | tuple):
            level += 1
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            items = v.values() if isinstance(v, dict) else v
            stack.extend((level, item) for item in items if isinstance(item, dict | list | tuple))
    return deepest


def to_json_value(value: object, what: str) -> JSON:
    """`value` as JSON data, the way parameters are: what pydantic can turn into JSON
    (datetime, date, Decimal, UUID, Enum, sets, pydantic models, dataclasses...) is
    turned into it; anything else raises NotStorable naming `what` and the type."""
    if value is None or type(value) in (str, int, bool):
        return value
    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception as exc:  # pydantic's serialization errors, and a bad bytes value
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotStorable(
            f"{what}: a value of type {type(value).__name__} cannot be stored as JSON ({detail})"
        ) from None


def safe_text(text: str) -> str:
    """`text` that every backend can store: lone surrogates and NUL characters escaped.
    For what corral writes of a user's making (error messages, tracebacks, reasons)."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def loads(text: str | None) -> JSON:
    if text is None or text == "null":
        return None
    if text == "{}":
        return {}
    return json.loads(text)


def error_dumps(error: ErrorInfo | None) -> str | None:
    return None if error is None else dumps(error.to_json(), "error")


def error_loads(text: str | None) -> ErrorInfo | None:
    return None if text is None else ErrorInfo.from_json(json.loads(text))


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
