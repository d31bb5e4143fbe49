"""What a supervisor reads every second, the runnable backlog, must not cost more with the
number of finished processes: it follows the claim's partial indexes (counted as in
test_claim_cost: SQLite virtual-machine steps, PostgreSQL buffers before any ANALYZE).
Its cost grows with the runnable rows, by design, up to the cap it counts to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corral.storage import open_storage
from corral.storage.sqlite import SQLiteStorage
from tests.backends import backend_url
from tests.integration.common import VmSteps
from tests.integration.test_claim_cost import DEEP, GROWTH, SHALLOW, _buffers, _fill

NOW = 1_010.0
JOBS = ["noop"]


def _sqlite_steps(tmp_path: Path, finished: int) -> int:
    storage = open_storage(f"sqlite:///{tmp_path / f'backlog-{finished}.db'}")
    try:
        assert isinstance(storage, SQLiteStorage)
        _fill(storage, SHALLOW, finished)
        with VmSteps(storage._conn) as steps:
            assert storage.runnable_backlog(JOBS, ["default"], NOW)[0] == SHALLOW
        return steps.count
    finally:
        storage.close()


def test_sqlite_backlog_does_not_grow_with_finished_rows(tmp_path: Path) -> None:
    shallow, deep = _sqlite_steps(tmp_path, SHALLOW), _sqlite_steps(tmp_path, DEEP)
    assert deep <= shallow * GROWTH, f"{deep} x100 steps with {DEEP:,}, {shallow} with {SHALLOW}"


def _pg_buffers(url: str, finished: int) -> int:
    import psycopg

    from corral.storage.postgres.reads import backlog_statement

    storage = open_storage(url)
    try:
        _fill(storage, SHALLOW, finished)
    finally:
        storage.close()
    query, args = backlog_statement(JOBS, ["default"], NOW)
    with psycopg.connect(url) as conn:
        [(plan,)] = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, args
        ).fetchall()
        [(count, _)] = conn.execute(query, args).fetchall()
    assert count == SHALLOW
    top: Any = json.loads(plan) if isinstance(plan, str) else plan
    return _buffers(top[0]["Plan"])


def test_postgres_backlog_does_not_grow_with_finished_rows(tmp_path: Path) -> None:
    with backend_url("postgres", tmp_path) as url:
        deep = _pg_buffers(url, DEEP)
    # The runnable rows it counts are spread over the pages of a table that held many more
    # (the finished ones between them): at most a page per row counted, and a few for the
    # indexes. A walk of the table would read every page of its 20,200 rows (hundreds).
    assert deep <= SHALLOW + 20, f"{deep} buffers to count {SHALLOW} among {DEEP:,} finished"
