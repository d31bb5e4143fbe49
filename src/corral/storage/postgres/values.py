"""Python values as the queries' arguments, and rows as Python values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corral.model import Change
from corral.storage import columns

#: A Process from a row of columns.SELECT_LIST.
decode_process = columns.row_decoder()

#: The queries' names for some of a change's columns.
_CHANGE_ARGS = {"stopped_status": "stopped"}


def change_args(c: Change) -> dict[str, Any]:
    """A change's columns (columns.CHANGE) as the queries' arguments; numbers as floats
    where the column is one, for the binary parameters."""
    args: dict[str, Any] = {}
    for column, value in zip(columns.CHANGE, columns.change_values(c), strict=True):
        if column.kind in ("float", "time") and value is not None:
            value = float(value)
        args[_CHANGE_ARGS.get(column.name, column.name)] = value
    return args


def event_args(rows: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """History rows (codec.event_to_row) as the column arrays the queries unnest."""
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 7
    return {
        "e_ids": list(cols[0]),
        "e_at": [float(v) for v in cols[1]],
        "e_kinds": list(cols[2]),
        "e_from": list(cols[3]),
        "e_to": list(cols[4]),
        "e_attempts": list(cols[5]),
        "e_details": list(cols[6]),
    }


def as_float(value: float | None) -> float | None:
    return None if value is None else float(value)
