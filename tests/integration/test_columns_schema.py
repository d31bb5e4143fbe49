"""Each backend's process table has every declared column (storage/columns.py), of a type
that holds its kind: the declaration, the schemas and Process cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.storage import columns
from tests.backends import make_storage

#: The SQL types each backend uses for each kind of column.
TYPES = {
    "sqlite": {
        "text": {"TEXT"},
        "int": {"INTEGER"},
        "float": {"REAL"},
        "time": {"REAL"},
        "json": {"TEXT"},
        "status": {"TEXT"},
        "error": {"TEXT"},
        "bool": {"INTEGER"},
    },
    "postgres": {
        "text": {"text"},
        "int": {"integer", "bigint"},
        "float": {"double precision"},
        "time": {"timestamp with time zone"},
        "json": {"jsonb"},
        "status": {"text"},
        "error": {"jsonb"},
        "bool": {"boolean"},
    },
}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_schema_holds_every_declared_column(kind: str, tmp_path: Path) -> None:
    with make_storage(kind, tmp_path) as storage:
        if kind == "sqlite":
            conn = storage._conn  # type: ignore[attr-defined]
            info = conn.execute("PRAGMA table_info(corral_process)")
            # (cid, name, type, notnull, default, pk): a primary key is never NULL.
            found = {r[1]: (r[2], not r[3] and not r[5]) for r in info}
        else:
            rows = storage._rows(  # type: ignore[attr-defined]
                "SELECT column_name, data_type, is_nullable = 'YES' "
                "FROM information_schema.columns "
                "WHERE table_name = 'corral_process' AND table_schema = current_schema()",
                {},
            )
            found = {r[0]: (r[1], r[2]) for r in rows}
    for column in columns.PROCESS:
        assert column.name in found, f"{kind}: no column {column.name}"
        sql_type, nullable = found[column.name]
        assert sql_type in TYPES[kind][column.kind], (kind, column, sql_type)
        if not column.nullable:
            assert not nullable, f"{kind}: {column.name} may be NULL, the declaration says not"
