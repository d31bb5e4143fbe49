"""The process row's columns, declared once: their names, order and kinds.

Every backend selects `SELECT_LIST`, builds a `Process` from a row with a decoder made
from this declaration (`row_decoder`), and writes a `Change` with `change_values`. A
backend says only how its driver hands over each kind (e.g. PostgreSQL gives booleans as
booleans, SQLite as 0 and 1). tests/unit/test_columns.py pins the declaration against
`Process`'s fields, and the schema tests against each backend's tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from corral.model import Change, Process, Status
from corral.storage import codec
from corral.storage.fast import positional_constructor

if TYPE_CHECKING:
    from corral.storage.base import NewProcess

#: How a column's value travels: `text`, `int`, `float` (a number or NULL), `time` (seconds
#: since the epoch), `json` (a document, as canonical JSON text), `status` (a Status's
#: value), `error` (an ErrorInfo as JSON), `bool`.
Kind = Literal["text", "int", "float", "time", "json", "status", "error", "bool"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False


#: In `Process`'s field order. Adding a field to Process means adding its column here, in
#: each backend's schema (a migration) and nowhere else.
PROCESS: tuple[Column, ...] = (
    Column("id", "text"),
    Column("job", "text"),
    Column("params", "json"),
    Column("status", "status"),
    Column("store", "json"),
    Column("result", "json", nullable=True),
    Column("error", "error", nullable=True),
    Column("progress_done", "float", nullable=True),
    Column("progress_total", "float", nullable=True),
    Column("priority", "int"),
    Column("queue", "text"),
    Column("run_at", "time"),
    Column("attempt", "int"),
    Column("lease_owner", "text", nullable=True),
    Column("lease_token", "int"),
    Column("lease_expires_at", "time", nullable=True),
    Column("cancel_requested", "bool"),
    Column("stopped_status", "status", nullable=True),
    Column("custom_id", "text", nullable=True),
    Column("client_id", "text"),
    Column("tags", "json"),
    Column("created_at", "time"),
    Column("updated_at", "time"),
    Column("finished_at", "time", nullable=True),
    Column("version", "int"),
    Column("deadline_at", "time", nullable=True),
    Column("schedule_to_close", "float", nullable=True),
    Column("start_to_close", "float", nullable=True),
    Column("heartbeat_timeout", "float", nullable=True),
    Column("iteration_since", "time"),
    Column("claimed_at", "time", nullable=True),
    Column("heartbeat_at", "time", nullable=True),
)

#: The columns of every SELECT that builds a Process, in declaration order.
SELECT_LIST = ", ".join(c.name for c in PROCESS)

#: The columns an iteration's commit (and an administrative update) writes from a Change,
#: in the order `change_values` gives them. `cancel_requested` is written only by updates.
CHANGE: tuple[Column, ...] = tuple(
    next(c for c in PROCESS if c.name == name)
    for name in (
        "status",
        "store",
        "result",
        "error",
        "progress_done",
        "progress_total",
        "run_at",
        "attempt",
        "stopped_status",
        "finished_at",
        "iteration_since",
    )
)


def _status(value: Any) -> Status | None:
    return None if value is None else Status(value)


#: What every backend does to a column of each kind when it reads a row, unless it says
#: otherwise (a driver that already hands over the right Python value).
DEFAULT_DECODERS: Mapping[Kind, Callable[[Any], Any] | None] = {
    "text": None,
    "int": None,
    "float": None,
    "time": None,
    "json": codec.loads,
    "status": _status,
    "error": codec.error_loads,
    "bool": bool,
}

_process = positional_constructor(Process)


def row_decoder(
    overrides: Mapping[Kind, Callable[[Any], Any] | None] | None = None,
) -> Callable[[Any], Process]:
    """A function that builds a Process from a row of `SELECT_LIST` (extra trailing columns
    are ignored), decoding each column by its kind. Made once per backend."""
    decoders = {**DEFAULT_DECODERS, **(overrides or {})}
    # Written from the declaration as one positional call, as `_compile_new_record` is: a
    # worker decodes every row it claims, and a loop over 30 columns (most of them kept
    # as they come) cost several microseconds a row.
    namespace: dict[str, Any] = {"_process": _process}
    parts = []
    for i, c in enumerate(PROCESS):
        decode_one = decoders[c.kind]
        if decode_one is None:
            parts.append(f"row[{i}]")
            continue
        name = f"_{c.kind}"
        namespace[name] = decode_one
        call = f"{name}(row[{i}])"
        parts.append(f"(None if row[{i}] is None else {call})" if c.nullable else call)
    source = f"def decode(row):\n    return _process({', '.join(parts)})\n"
    exec(source, namespace)
    made: Callable[[Any], Process] = namespace["decode"]
    return made


#: Where a new process's columns come from: the NewProcess field of the same name, or this
#: Python expression (of `new`) for the columns a NewProcess does not have or that differ.
_NEW_RECORD = {
    "store": "{}",
    "tags": "dict(new.tags)",
    "updated_at": "new.created_at",
    "iteration_since": "new.run_at",
}


def _compile_new_record(
    time: Callable[[float], float] | None = None,
) -> Callable[[NewProcess], Process]:
    """`new_process_record`, written from the declaration: one positional call with every
    column's value (as fast as a hand-written one; a batch makes thousands), so that no
    block of 32 positional values is kept by hand. `time`, if given, is applied to every
    time column that has a value (a backend storing times less finely than a float)."""
    from corral.storage.base import NewProcess

    given = {f.name for f in dataclasses.fields(NewProcess)}
    defaults = {f.name: f.default for f in dataclasses.fields(Process)}
    parts = []
    for c in PROCESS:
        if c.name in _NEW_RECORD:
            part = _NEW_RECORD[c.name]
        elif c.name in given:
            part = f"new.{c.name}"
        else:
            part = repr(defaults[c.name])
        if time is not None and c.kind == "time" and part != "None":
            part = f"_time({part})" if not c.nullable else f"_time_or_none({part})"
        parts.append(part)
    source = f"def new_process_record(new):\n    return _process({', '.join(parts)})\n"
    namespace: dict[str, Any] = {
        "_process": _process,
        "_time": time,
        "_time_or_none": None if time is None else _or_none(time),
    }
    exec(source, namespace)
    made: Callable[[NewProcess], Process] = namespace["new_process_record"]
    made.__doc__ = "The Process a backend stores for a NewProcess, without reading it back."
    return made


def _or_none(convert: Callable[[float], float]) -> Callable[[float | None], float | None]:
    def or_none(value: float | None) -> float | None:
        return None if value is None else convert(value)

    return or_none


def new_record_maker(time: Callable[[float], float]) -> Callable[[NewProcess], Process]:
    """`new_process_record` for a backend that stores times as `time` makes them (e.g. to
    the microsecond): the record it returns then equals the one it reads back."""
    return _compile_new_record(time)


def change_values(change: Change) -> tuple[Any, ...]:
    """The values of `CHANGE`'s columns for a Change, encoded as every backend stores them
    (JSON documents as canonical text, statuses as their values)."""
    return (
        change.status.value,
        codec.dumps(change.store, "store"),
        codec.dumps(change.result, "result"),
        codec.error_dumps(change.error),
        change.progress_done,
        change.progress_total,
        change.run_at,
        change.attempt,
        change.stopped_status.value if change.stopped_status else None,
        change.finished_at,
        change.iteration_since,
    )


def check_declaration() -> None:
    """Raise if the declaration and `Process` disagree (names or order)."""
    fields = [f.name for f in dataclasses.fields(Process)]
    declared = [c.name for c in PROCESS]
    if fields != declared:
        raise AssertionError(f"columns {declared} do not match Process's fields {fields}")


new_process_record = _compile_new_record()
