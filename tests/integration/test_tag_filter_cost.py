"""A list or count by a rare tag costs work proportional to the processes that hold it, not
to the size of the table: the tags are found through an index (SQLite: the corral_tag
table's (key, value) index; PostgreSQL: the GIN index on `tags`), not by reading the JSON
of every process.

As in test_claim_cost.py, the work is counted, not timed: SQLite virtual-machine steps of
the whole verb (process_list, process_count), and the PostgreSQL buffers its statement
touches (EXPLAIN ANALYZE BUFFERS), measured before any ANALYZE, as in a young database: the
plan must not depend on statistics to stay off the table. The table: most processes hold a
common tag, a third none, and RARE of them a rare one too, in a table of SMALL and then of
BIG processes. A scan would grow a hundredfold; an index descent grows by a level.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.model import Status
from corral.storage import open_storage
from corral.storage.base import NewProcess, ProcessFilter, Storage
from corral.storage.sqlite import SQLiteStorage
from tests.backends import backend_url
from tests.integration.common import VmSteps

SMALL, BIG = 1_000, 100_000
#: Processes with the rare tag, in either table.
RARE = 10
#: Allowed growth of the work from SMALL to BIG (100x the processes).
GROWTH = 2.0
T0 = 1_000.0

#: What is measured: a list (newest first, as `corral list`) and a count by the rare tag;
#: the common tag first and the rare one second (the rare one must still lead); the rare
#: tag with a status that every process has (whose index must not lead).
FILTERS: dict[str, ProcessFilter] = {
    "list rare": ProcessFilter(tags={"rare": "yes"}),
    "count rare": ProcessFilter(tags={"rare": "yes"}),
    "list common and rare": ProcessFilter(tags={"env": "prod", "rare": "yes"}),
    "list rare and status": ProcessFilter(tags={"rare": "yes"}, status=Status.STARTING),
}


def _tags(i: int, size: int) -> dict[str, str]:
    if i % (size // RARE) == 0:
        return {"env": "prod", "rare": "yes", "n": str(i)}
    return {"env": "prod", "n": str(i)} if i % 3 else {}


def _fill(storage: Storage, size: int) -> None:
    for start in range(0, size, 5_000):
        batch = [
            NewProcess(id=str(uuid.uuid4()), job="j", params={"i": i}, created_at=T0 + i,
                       run_at=T0, tags=_tags(i, size))
            for i in range(start, min(start + 5_000, size))
        ]  # fmt: skip
        storage.process_insert_many(batch)


def _check_growth(
    measure: Callable[[int], dict[str, int]], unit: str, floor: int, slack: int = 0
) -> None:
    """Each filter's work among BIG processes is at most GROWTH times (and `slack` more
    than) its work among SMALL, or `floor`."""
    small, big = measure(SMALL), measure(BIG)
    grew = {
        name: (small[name], big[name])
        for name in FILTERS
        if big[name] > max(small[name] * GROWTH, floor) + slack
    }
    assert not grew, "; ".join(
        f"{name}: {b} {unit} among {BIG:,} processes, {b / max(s, 1):.1f}x the {s} among {SMALL:,}"
        for name, (s, b) in grew.items()
    )


def _run(storage: Storage, name: str) -> None:
    """The verb measured, checked: it found the RARE processes."""
    where = FILTERS[name]
    if name.startswith("count"):
        assert storage.process_count(where) == RARE
    else:
        assert len(storage.process_list(where)) == RARE


def _sqlite_steps(tmp_path: Path, size: int) -> dict[str, int]:
    storage = open_storage(f"sqlite:///{tmp_path / f'tags-{size}.db'}")
    try:
        assert isinstance(storage, SQLiteStorage)
        _fill(storage, size)
        work: dict[str, int] = {}
        for name in FILTERS:
            with VmSteps(storage._conn) as steps:
                _run(storage, name)
            work[name] = steps.count
        return work
    finally:
        storage.close()


def test_sqlite_a_rare_tag_costs_the_same_in_a_bigger_table(tmp_path: Path) -> None:
    # Below 5 x100 steps nothing was walked: the floor keeps a ratio of tiny numbers quiet.
    _check_growth(lambda size: _sqlite_steps(tmp_path, size), "x100 VM steps", 5)


def _pg_buffers(url: str, size: int) -> dict[str, int]:
    import psycopg

    from corral.storage.postgres.reads import count_statement, list_statement

    storage = open_storage(url)
    try:
        _fill(storage, size)
        for name in FILTERS:  # the verbs themselves find the rare processes
            _run(storage, name)
    finally:
        storage.close()
    work: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, where in FILTERS.items():
            statement = count_statement if name.startswith("count") else list_statement
            query, args = statement(where)
            [(plan,)] = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query.as_string(conn), args
            ).fetchall()
            top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
            assert "corral_process_tags" in _indexes(top), f"{name}: {_indexes(top)}"
            work[name] = _buffers(top)
    return work


def _indexes(plan: dict[str, Any]) -> list[str]:
    """The indexes a plan reads, depth first."""
    own = [plan["Index Name"]] if "Index Name" in plan else []
    return own + [i for child in plan.get("Plans", []) for i in _indexes(child)]


def _buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def test_postgres_a_rare_tag_costs_the_same_in_a_bigger_table(tmp_path: Path) -> None:
    def measure(size: int) -> dict[str, int]:
        with backend_url("postgres", tmp_path) as url:
            return _pg_buffers(url, size)

    # Below 20 buffers nothing was walked (an empty index or table is a page read). An AND
    # of tags looks each candidate up in the other tags' posting trees as well: up to a leaf
    # page per candidate where the small table's tree had one page in all (measured: 15
    # buffers among 1,000, 33 among 100,000; a scan of the table is some 2,600).
    _check_growth(measure, "buffers", 20, slack=RARE)
