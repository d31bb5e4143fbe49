"""Which storage backends the conformance suite runs against, and how to make each.

Every test that takes the `storage` fixture runs once per backend. A backend whose
server is unreachable fails its tests in CI (CI=true) and skips them elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from corral.storage import open_storage
from corral.storage.base import Storage

BACKENDS = ["memory", "sqlite", "postgres"]
POSTGRES_URL = os.environ.get(
    "CORRAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure to connect means unreachable here
        return f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}"


def require_postgres() -> None:
    problem = postgres_reachable()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


@contextmanager
def backend_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL naming an empty, private database of the given kind."""
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'corral.db'}"
    elif kind == "postgres":
        require_postgres()
        from tests.pg import isolated_schema_url

        with isolated_schema_url(POSTGRES_URL, f"t_{uuid.uuid4().hex[:12]}") as url:
            yield url
    else:
        raise ValueError(kind)


@contextmanager
def make_storage(kind: str, tmp_path: Path) -> Iterator[Storage]:
    with backend_url(kind, tmp_path) as url:
        storage = open_storage(url)
        try:
            yield storage
        finally:
            storage.close()
