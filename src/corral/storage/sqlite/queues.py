"""Paused queues: a row per paused queue, '*' for all of them. A claim reads them in its
own transaction (claims.py), so a pause holds from the next claim on."""

from __future__ import annotations

import sqlite3

from corral.model import Status
from corral.storage.sqlite.sql import Q


def pause(conn: sqlite3.Connection, queue: str, paused: bool) -> None:
    if paused:
        conn.execute(Q["queue_pause"], (queue,))
    elif queue == "*":
        conn.execute(Q["queue_resume_all"])
    else:
        conn.execute(Q["queue_resume"], (queue,))


def paused(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(Q["paused_queues"])]


def counts(conn: sqlite3.Connection) -> dict[str, dict[Status, int]]:
    """Processes by queue and status; statuses with none left out."""
    found: dict[str, dict[Status, int]] = {}
    for queue, status, count in conn.execute(Q["queue_counts"]):
        found.setdefault(queue, {})[Status(status)] = count
    return found
