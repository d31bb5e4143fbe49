"""Leases, in the caller's write transaction: renewing the leases a worker still holds
(and learning of cancel requests), giving leases back unused, and the named leadership of
the recovery sweep. See docs/leases-and-fencing.md."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from corral.model import Event
from corral.storage.base import Progress, Renewal
from corral.storage.sqlite.reads import append_history
from corral.storage.sqlite.sql import Q


def renew_many(
    conn: sqlite3.Connection,
    owner: str,
    tokens: Mapping[str, int],
    now: float,
    lease_seconds: float,
    heartbeats: Mapping[str, float],
    progress: Mapping[str, Progress],
) -> Renewal:
    held: set[str] = set()
    cancel: set[str] = set()
    for pid, token in tokens.items():
        done, total = progress.get(pid, (None, None))
        row = conn.execute(
            Q["lease_renew"],
            (now + lease_seconds, heartbeats.get(pid), done, total, pid, token, owner, now),
        ).fetchone()
        if row is not None:
            held.add(pid)
            if row[0]:
                cancel.add(pid)
    return Renewal(frozenset(set(tokens) - held), frozenset(cancel))


def release_many(conn: sqlite3.Connection, tokens: Mapping[str, int], now: float) -> list[str]:
    """Give back the leases still held by these tokens; the ids released."""
    released = []
    for pid, token in tokens.items():
        row = conn.execute(Q["lease_release"], (now, pid, token)).fetchone()
        if row is not None:
            released.append(pid)
            append_history(conn, [Event("released", now, None, None, row[1])], pid)
    return released


def leader_acquire(conn: sqlite3.Connection, name: str, owner: str, now: float, ttl: float) -> bool:
    row = conn.execute(Q["leader_acquire"], (name, owner, now + ttl, now)).fetchone()
    return row is not None
