"""Process ids: time-ordered UUIDs (version 7, RFC 9562).

The first 48 bits are the Unix time in milliseconds, so ids made close together sort close
together: a new process lands at the right end of every index keyed by its id (the primary
key, the history's `(process_id, id)`) instead of at a random page. The other 74 bits (all
but the version and variant bits) are random, fresh from `os.urandom` for every id, so ids
stay unique across processes and machines without any coordination: two ids made in the
same millisecond collide with probability 2**-74.

A batch shares one millisecond and its random parts are sorted, so a batch's ids follow
its order. Nothing relies on that order (ids made by other processes interleave), and any
UUID is still a valid process id: those stored before version 7 was used keep working.
"""

from __future__ import annotations

import os
import re
import time

_LOW_BITS = 62  # rand_b, under the variant bits
_LOW_MASK = (1 << _LOW_BITS) - 1
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


def new_ids(count: int, now_ns: int | None = None) -> list[str]:
    """`count` new UUIDv7 strings (lowercase, 8-4-4-4-12), ascending.

    `now_ns`: the time to stamp them with, in nanoseconds since the epoch (tests only).
    """
    if count <= 0:
        return []
    high = _high(time.time_ns() if now_ns is None else now_ns)
    raw = os.urandom(10 * count)  # 80 bits each, of which 74 are kept
    rands = sorted(int.from_bytes(raw[i : i + 10], "big") >> 6 for i in range(0, 10 * count, 10))
    return [_text(high, r) for r in rands]


def new_id() -> str:
    """One new UUIDv7 string."""
    return _text(_high(time.time_ns()), int.from_bytes(os.urandom(10), "big") >> 6)


def _high(now_ns: int) -> int:
    """The time, version and variant bits."""
    return ((now_ns // 1_000_000) & 0xFFFF_FFFF_FFFF) << 80 | _VERSION | _VARIANT


def _text(high: int, rand: int) -> str:
    """The id of `high` bits and 74 random bits: rand_a (12) above the variant, rand_b (62)
    below it."""
    h = f"{high | (rand >> _LOW_BITS) << 64 | (rand & _LOW_MASK):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: The shortest id prefix a person may type: 8 hex digits are the first group of an id.
MIN_PREFIX = 8

_PREFIX_SHAPE = re.compile(r"[0-9a-f-]*")


def short_id(process_id: str, before: str | None, after: str | None) -> str:
    """The shortest prefix of `process_id` (at least MIN_PREFIX characters) that no other
    stored id starts with, given the stored ids just before and after it in id order (as
    git abbreviates a commit). Ids made in one millisecond share their first 14 characters,
    so a batch's short ids are longer than those of processes submitted one by one."""
    shared = max(_common_prefix(process_id, before), _common_prefix(process_id, after))
    length = max(MIN_PREFIX, shared + 1)
    if length < len(process_id) and process_id[length - 1] == "-":
        length += 1  # never end on a dash: it would read as cut
    return process_id[:length]


def _common_prefix(a: str, b: str | None) -> int:
    if b is None:
        return 0
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def prefix_of_id(text: str) -> str | None:
    """`text` normalised as the start of an id (lowercase), or None when it cannot start one:
    too short, or not hex digits and dashes."""
    prefix = text.strip().lower()
    if len(prefix) < MIN_PREFIX or not _PREFIX_SHAPE.fullmatch(prefix):
        return None
    return prefix
