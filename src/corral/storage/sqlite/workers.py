"""The worker registry, in the caller's transaction: a row per running worker (who it is,
where, what it serves, what it holds now), its JSON arrays stored as canonical text."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from corral.storage import codec
from corral.storage.base import WorkerInfo
from corral.storage.shared import worker_from_row
from corral.storage.sqlite.sql import Q


def register(conn: sqlite3.Connection, w: WorkerInfo) -> None:
    queues = None if w.queues is None else codec.dumps(list(w.queues))
    conn.execute(
        Q["worker_register"],
        (w.owner, w.host, w.pid, w.app, codec.dumps(list(w.jobs)), queues, w.concurrency,
         w.started_at, w.last_seen_at, codec.dumps(list(w.running))),
    )  # fmt: skip


def seen(conn: sqlite3.Connection, owner: str, now: float, running: Sequence[str]) -> bool:
    cur = conn.execute(Q["worker_seen"], (now, codec.dumps(list(running)), owner))
    return cur.rowcount == 1


def remove(conn: sqlite3.Connection, owner: str) -> None:
    conn.execute(Q["worker_remove"], (owner,))


def list_workers(conn: sqlite3.Connection) -> list[WorkerInfo]:
    return [_decode(r) for r in conn.execute(Q["worker_list"])]


def prune(conn: sqlite3.Connection, seen_before: float) -> int:
    return int(conn.execute(Q["worker_prune"], (seen_before,)).rowcount)


def _decode(row: Sequence[Any]) -> WorkerInfo:
    return worker_from_row(row, json.loads)
