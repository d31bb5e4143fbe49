"""The named queries of sql/postgres/queries.sql, loaded once."""

from __future__ import annotations

import re
from importlib import resources

from corral.storage import columns

SQL_DIR = resources.files("corral.storage") / "sql" / "postgres"
_QUERY_HEADER = re.compile(r"^-- (\w+) --$", re.MULTILINE)

#: columns.SELECT_LIST as PostgreSQL reads it: a time (timestamptz) as the seconds since the
#: epoch that corral passes around. date_part gives them as float8, correctly rounded from
#: the stored microseconds, so that a time written with to_timestamp reads back as written
#: (to the microsecond).
SELECT_LIST = ", ".join(
    f"date_part('epoch', {c.name}) AS {c.name}" if c.kind == "time" else c.name
    for c in columns.PROCESS
)


def load_queries() -> dict[str, str]:
    """The named queries of queries.sql, with the process column list filled in."""
    text = (SQL_DIR / "queries.sql").read_text(encoding="utf-8")
    parts = _QUERY_HEADER.split(text)
    queries = dict(zip(parts[1::2], (p.strip() for p in parts[2::2]), strict=True))
    return {k: v.replace("/* process_columns */", SELECT_LIST) for k, v in queries.items()}


Q = load_queries()
