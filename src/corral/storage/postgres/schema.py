"""The schema: schema.sql for an empty database, the numbered migrations for an older one,
applied under an advisory lock so that concurrent openers migrate once."""

from __future__ import annotations

import re

import psycopg

from corral.errors import StorageError, StorageUnavailable
from corral.storage.postgres.connection import Connected, one_line, state_of
from corral.storage.postgres.queries import SQL_DIR, Q

_MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


def load_migrations() -> list[tuple[int, str]]:
    """The numbered migrations, in the order they apply."""
    found = []
    for entry in SQL_DIR.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"PostgreSQL migrations are not numbered 1..n: {[v for v, _ in found]}")
    return found


MIGRATIONS = load_migrations()
#: The schema after the last migration, for an empty database.
SCHEMA = (SQL_DIR / "schema.sql").read_text(encoding="utf-8")
SCHEMA_VERSION = MIGRATIONS[-1][0]


class Schema(Connected):
    """migrate()."""

    def migrate(self) -> int:
        try:
            return self._migrate()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            error = self._translate(exc)
            if isinstance(error, StorageUnavailable):
                raise error from None
            raise StorageError(
                f"cannot create or upgrade the corral schema in {self._where}{state_of(exc)}: "
                f"{one_line(exc)}"
            ) from None

    def _migrate(self) -> int:
        with self._connection() as conn, conn.transaction():
            conn.execute(Q["schema_lock"])
            conn.execute(Q["schema_version_table"])
            row = conn.execute(Q["schema_version"]).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"the database {self._where} has schema version {current}, newer than "
                    f"this corral ({SCHEMA_VERSION}); upgrade corral"
                )
            # An empty schema gets the whole of schema.sql; an older one the migrations
            # it lacks. The migration test checks that both build the same schema.
            if current == 0:
                conn.execute(SCHEMA.encode())
            for version, script in MIGRATIONS:
                if version > current:
                    if current:
                        conn.execute(script.encode())
                    conn.execute(Q["schema_version_insert"], {"version": version})
        return SCHEMA_VERSION
