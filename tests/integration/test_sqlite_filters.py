"""SQLite's side of the filters a person types: an id prefix is a range of the primary key
(served by its index, never a scan of the table), bounded by the least text above every
text that starts with it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from corral.storage import open_storage
from corral.storage.base import NewProcess, ProcessFilter
from corral.storage.sqlite import Q, SQLiteStorage
from corral.storage.sqlite.reads import _filtered, prefix_end

T0 = 1_000.0


def plan(storage: SQLiteStorage, query: str, where: ProcessFilter) -> list[str]:
    sql, args = _filtered(storage._conn, query, where)
    sql = sql.replace("/* order */", "DESC")
    if "LIMIT ?" in sql:
        args.append(where.limit)
    return [r[3] for r in storage._conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


@pytest.mark.parametrize("query", ["process_list", "process_count"])
def test_an_id_prefix_is_a_search_of_the_primary_key(tmp_path: Path, query: str) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'corral.db'}")
    assert isinstance(storage, SQLiteStorage)
    with storage:
        news = [
            NewProcess(id=str(uuid.uuid4()), job="j", params={}, created_at=T0 + i, run_at=T0)
            for i in range(2_000)
        ]
        storage.process_insert_many(news)
        storage._conn.execute("ANALYZE")  # as `PRAGMA optimize` may leave it
        for where in (
            ProcessFilter(id_prefix=news[7].id[:8]),
            ProcessFilter(id_prefix=news[7].id[:8], job="j", newest_first=False),
        ):
            steps = plan(storage, Q[query], where)
            assert any(
                "SEARCH corral_process USING" in s and "sqlite_autoindex_corral_process_1" in s
                for s in steps
            ), steps
            assert not any(s.startswith("SCAN corral_process") for s in steps), steps
        assert storage.process_count(ProcessFilter(id_prefix=news[7].id[:8])) >= 1


def test_the_end_of_a_prefix_is_above_every_text_starting_with_it() -> None:
    assert prefix_end("0191ab") == "0191ac"
    assert prefix_end("a%") == "a&" and prefix_end("_") == "`"
    assert prefix_end("") is None
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\U0010ffff\U0010ffff") == "b"
    assert prefix_end("\ud7ff") == "\ue000"  # the surrogates cannot be stored: skipped
    for text in ("0191ab", "0191ab\U0010ffff", "0191abzz", "0191ab\x00"):
        assert "0191ab" <= text < "0191ac"


def test_a_prefix_of_unusual_characters_finds_exactly_its_ids(tmp_path: Path) -> None:
    ids = ["é1", "é\U0010ffff", "é\U0010ffffx", "ê", "e", "é"]
    with open_storage(f"sqlite:///{tmp_path / 'corral.db'}") as storage:
        storage.process_insert_many(
            [NewProcess(id=i, job="j", params={}, created_at=T0, run_at=T0) for i in ids]
        )
        found = storage.process_list(ProcessFilter(id_prefix="é", limit=100))
        assert sorted(p.id for p in found) == sorted(i for i in ids if i.startswith("é"))
        found = storage.process_list(ProcessFilter(id_prefix="é\U0010ffff", limit=100))
        assert sorted(p.id for p in found) == ["é\U0010ffff", "é\U0010ffffx"]
