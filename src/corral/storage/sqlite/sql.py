"""The SQL of the SQLite backend, loaded from `corral/storage/sql/sqlite/`: the named queries
of queries.sql (`Q`) and the numbered migrations beside it (`MIGRATIONS`).

They ship as package data and are read through importlib.resources, so that an installed
wheel (not only a checkout) finds them.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

from corral.model import CLAIMABLE
from corral.storage import codec, columns

_SQL_DIR = resources.files("corral.storage") / "sql" / "sqlite"
_MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")
_QUERY_HEADER = re.compile(r"^-- (\w+) --$", re.MULTILINE)

#: What the markers of queries.sql stand for, filled in once as they load.
_FILLED = {
    "/* process_columns */": columns.SELECT_LIST,
    "/* history_columns */": codec.HISTORY_COLUMNS,
    "/* claimable */": ", ".join(f"'{s.value}'" for s in CLAIMABLE),
    # A terminal process finished before the time bound, on which no unfinished process
    # depends (a dependent's iteration reads its dependencies' results).
    "/* prunable */": "finished_at IS NOT NULL AND finished_at < ? AND NOT (has_dependents"
    " AND EXISTS (SELECT 1 FROM corral_dependency e JOIN corral_process d"
    " ON d.id = e.process_id WHERE e.depends_on = corral_process.id"
    " AND d.finished_at IS NULL))",
    # The (key, limit) pairs of keys full now: computed once per statement, when the first
    # process with a key is met, from the few live leases of keyed processes. A claim
    # walking past a full key's backlog tests each row against it, not counts its key.
    "/* key_full */": (
        "(concurrency_key, concurrency_limit) IN (SELECT concurrency_key, concurrency_limit"
        " FROM corral_process INDEXED BY corral_process_concurrency"
        " WHERE concurrency_key IS NOT NULL AND lease_expires_at >= ?1"
        " GROUP BY concurrency_key, concurrency_limit HAVING count(*) >= concurrency_limit)"
    ),
    "/* key_free */": (
        "(concurrency_limit - (SELECT count(*) FROM corral_process AS holder"
        " INDEXED BY corral_process_concurrency"
        " WHERE holder.concurrency_key = corral_process.concurrency_key"
        " AND holder.lease_expires_at >= ?1))"
    ),
}


def load_queries() -> dict[str, str]:
    """The named queries of queries.sql, without their comment lines, markers filled in."""
    text = (_SQL_DIR / "queries.sql").read_text(encoding="utf-8")
    parts = _QUERY_HEADER.split(text)
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        # The comment says what the query is for; the statement need not carry it.
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        query = "\n".join(lines)
        for marker, value in _FILLED.items():
            query = query.replace(marker, value)
        queries[name] = query
    return queries


def load_migrations() -> list[tuple[int, str]]:
    """The numbered migrations, in the order they apply."""
    found = []
    for entry in _SQL_DIR.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"SQLite migrations are not numbered 1..n: {[v for v, _ in found]}")
    return found


def statements(script: str) -> list[str]:
    """A migration's statements, one by one: a write transaction cannot run them with
    `executescript` (it commits first). SQLite's own tokenizer finds where each ends, so a
    `;` in a comment or a string does not cut one."""
    found: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        line.strip().startswith("--") for line in pending.splitlines() if line.strip()
    ):
        raise RuntimeError(f"a SQLite migration ends in an unfinished statement: {pending!r}")
    return found


Q = load_queries()
MIGRATIONS = load_migrations()
SCHEMA_VERSION = MIGRATIONS[-1][0]
