"""Python values as the queries' arguments, and rows as Python values.

Times: the tables keep them as timestamptz, to the microsecond, and corral passes seconds
since the epoch. Each time is rounded to the microsecond here, before it is sent: the
server then stores exactly that (to_timestamp of a float it would otherwise round itself,
a little differently at half a microsecond), and reads it back (date_part) as the same
float. The records a write returns without reading back are rounded alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from corral.model import Change
from corral.storage import codec, columns

if TYPE_CHECKING:
    from corral.storage.base import NewProcess

#: A Process from a row of queries.SELECT_LIST.
decode_process = columns.row_decoder()


def as_time(seconds: float) -> float:
    """A time as the server stores it: to the microsecond."""
    return round(float(seconds), 6)


def as_time_or_none(seconds: float | None) -> float | None:
    return None if seconds is None else round(float(seconds), 6)


#: The Process stored for a NewProcess (columns.new_process_record, its times as stored).
new_process_record = columns.new_record_maker(as_time)

#: The queries' names for some of a change's columns.
_CHANGE_ARGS = {"stopped_status": "stopped"}


def change_args(c: Change) -> dict[str, Any]:
    """A change's columns (columns.CHANGE) as the queries' arguments; numbers as floats
    where the column is one, for the binary parameters; times to the microsecond."""
    args: dict[str, Any] = {}
    for column, value in zip(columns.CHANGE, columns.change_values(c), strict=True):
        if value is not None and column.kind == "time":
            value = as_time(value)
        elif value is not None and column.kind == "float":
            value = float(value)
        args[_CHANGE_ARGS.get(column.name, column.name)] = value
    return args


def event_args(rows: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """History rows (codec.event_to_row) as the column arrays the queries unnest."""
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 7
    return {
        "e_ids": list(cols[0]),
        "e_at": [as_time(v) for v in cols[1]],
        "e_kinds": list(cols[2]),
        "e_from": list(cols[3]),
        "e_to": list(cols[4]),
        "e_attempts": list(cols[5]),
        "e_details": list(cols[6]),
    }


def as_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def column_args(processes: Sequence[NewProcess]) -> dict[str, list[Any]]:
    """New processes' columns as the arrays the insert statements unnest, one per column
    (`process_insert_many`, `process_insert_graph`)."""
    tags = codec.JsonCache()
    details = codec.JsonCache()
    return {
        "ids": [n.id for n in processes],
        "jobs": [n.job for n in processes],
        "params": [codec.params_json(n) for n in processes],
        "statuses": [n.status.value for n in processes],
        "priorities": [n.priority for n in processes],
        "queues": [n.queue for n in processes],
        "run_at": [as_time(n.run_at) for n in processes],
        "custom_ids": [n.custom_id for n in processes],
        "client_ids": [n.client_id for n in processes],
        "tags": [tags.dumps(n.tags) for n in processes],
        "created_at": [as_time(n.created_at) for n in processes],
        "details": [details.dumps(codec.submitted_detail(n)) for n in processes],
        "deadline_at": [as_time_or_none(n.deadline_at) for n in processes],
        "schedule_to_close": [as_float(n.schedule_to_close) for n in processes],
        "start_to_close": [as_float(n.start_to_close) for n in processes],
        "heartbeat_timeout": [as_float(n.heartbeat_timeout) for n in processes],
        "concurrency_keys": [n.concurrency_key for n in processes],
        "concurrency_limits": [n.concurrency_limit for n in processes],
    }
