"""Storage backends, chosen by URL: `memory://`, `sqlite:///path`, `postgresql://…`."""

from __future__ import annotations

import os

from corral.errors import StorageError, UsageError
from corral.storage.base import Storage

DEFAULT_URL = "sqlite:///corral.db"


def default_url() -> str:
    return os.environ.get("CORRAL_DATABASE_URL") or DEFAULT_URL


def open_storage(url: str | None = None, *, migrate: bool = True) -> Storage:
    """Open the backend a URL names, creating or upgrading its schema."""
    url = url or default_url()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UsageError(
            f"database URL {url!r} has no scheme; use memory://, sqlite:///path.db or "
            "postgresql://user@host/db"
        )
    if scheme == "memory":
        from corral.storage.sqlite import SQLiteStorage

        return SQLiteStorage(url, None, migrate=migrate)
    if scheme == "sqlite":
        from corral.storage.sqlite import SQLiteStorage

        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise UsageError(f"database URL {url!r} names no file: use sqlite:///path.db")
        return SQLiteStorage(url, path, migrate=migrate)
    if scheme in ("postgresql", "postgres"):
        try:
            from corral.storage.postgres import PostgresStorage
        except ImportError:
            raise StorageError("the PostgreSQL backend is not available") from None
        storage: Storage = PostgresStorage(url, migrate=migrate)
        return storage
    raise UsageError(
        f"unknown database scheme {scheme!r} in {url!r}; use memory://, sqlite:///path.db or "
        "postgresql://user@host/db"
    )
