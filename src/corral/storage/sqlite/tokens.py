"""The HTTP API's tokens, and the counts of `GET /stats`, in the caller's transaction."""

from __future__ import annotations

import json
import sqlite3

from corral.model import Status
from corral.storage import codec
from corral.storage.base import ProcessStats, TokenInfo
from corral.storage.shared import token_from_row
from corral.storage.sqlite.sql import Q


def insert(conn: sqlite3.Connection, token: TokenInfo, token_hash: str) -> None:
    queues = None if token.queues is None else codec.dumps(list(token.queues))
    conn.execute(
        Q["token_insert"],
        (token.id, token.client, token_hash, int(token.admin), int(token.worker), queues,
         token.created_at),
    )  # fmt: skip


def by_hash(conn: sqlite3.Connection, token_hash: str) -> TokenInfo | None:
    row = conn.execute(Q["token_by_hash"], (token_hash,)).fetchone()
    return None if row is None else token_from_row(row, json.loads)


def list_tokens(conn: sqlite3.Connection) -> list[TokenInfo]:
    return [token_from_row(r, json.loads) for r in conn.execute(Q["token_list"])]


def revoke(conn: sqlite3.Connection, token_id: str, now: float) -> bool:
    return conn.execute(Q["token_revoke"], (now, token_id)).rowcount == 1


def stats(conn: sqlite3.Connection, since: float, client_id: str | None) -> ProcessStats:
    counts = [
        (queue, job, Status(status), int(n))
        for queue, job, status, n in conn.execute(Q["process_stats_counts"], (client_id,))
    ]
    completions = [
        (float(minute), int(n))
        for minute, n in conn.execute(Q["process_stats_completions"], (client_id, since))
    ]
    return ProcessStats(counts, completions)
