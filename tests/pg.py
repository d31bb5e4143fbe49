"""Private PostgreSQL schemas for tests: each test gets its own, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with its connections' search_path set to `schema`."""
    parts = urlsplit(base_url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


@contextmanager
def isolated_schema_url(base_url: str, schema: str) -> Iterator[str]:
    """Create schema `schema`, yield a URL whose connections use it, then drop it."""
    name = sql.Identifier(schema)
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
    try:
        yield schema_url(base_url, schema)
    finally:
        with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
