"""Cursors of the API's paginated lists: opaque to a client, which sends back the
`next_cursor` of one page to get the next."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from corral.http.errors import field_error


def encode(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeEncodeError, binascii.Error):
        raise _bad() from None


def process_cursor(cursor: str) -> tuple[float, str]:
    """The (created_at, id) a process list's cursor holds."""
    value = decode(cursor)
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int | float)
        and not isinstance(value[0], bool)
        and math.isfinite(value[0])
        and isinstance(value[1], str)
    ):
        return float(value[0]), value[1]
    raise _bad()


def offset_cursor(cursor: str | None) -> int:
    """The offset a history's cursor holds (0 without one)."""
    if cursor is None:
        return 0
    value = decode(cursor)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _bad()


def _bad() -> Exception:
    return field_error(
        ["query", "cursor"], "not a cursor of this list: send back a next_cursor as it came"
    )
