"""Connections, transactions and what the driver's errors mean to corral.

Connections come from a `psycopg_pool.ConnectionPool` in autocommit mode: most verbs are one
statement (a few data-modifying CTEs), so one round trip and one implicit transaction each.

Driver errors never leave the package: every public verb is wrapped by `verb`, which hands
psycopg's and psycopg_pool's exceptions to `Connected._translate`, the one place that
decides what they mean to corral (StorageUnavailable, ValueRejected or StorageError).
Inside, the code sees the driver's own exceptions, so that it can retry what it knows to
be safe.
"""

from __future__ import annotations

import functools
import logging
import select
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolClosed

from corral.errors import StorageError, StorageUnavailable, UsageError, ValueRejected
from corral.storage.base import Storage
from corral.storage.shared import Wakeups

#: One logger for the whole backend, named after the package: what users configure.
log = logging.getLogger("corral.storage.postgres")

Connection = psycopg.Connection[tuple[Any, ...]]

CONNECT_TIMEOUT = 5
#: Connections a storage object's pool opens at most (its listener holds one more): what
#: a supervisor counts per worker against the server's max_connections.
POOL_SIZE = 10
#: How long a verb waits for a pooled connection before reporting the database unavailable.
POOL_TIMEOUT = 10.0
_FALSE = ("0", "false", "no", "off")


class Connected(Storage):
    """What every part of the backend stands on: the pool, the NOTIFY channel, the local
    wake-up epoch, and the translation of driver errors. PostgresStorage sets these up;
    the verbs, split by concern, are its other bases."""

    _pool: ConnectionPool[Connection]
    _where: str
    _down: bool
    _channel: str
    _database: str
    #: The NOTIFY channel the write queries notify, or None when LISTEN/NOTIFY is off.
    _notify_param: str | None
    _wakeups: Wakeups

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection. The driver's errors pass through as they are (the verb
        translates them, see `verb`); a success after an outage is logged once."""
        with self._pool.connection() as conn:
            yield conn
        if self._down:
            self._health(None)

    def _rows(
        self,
        query: str | sql.Composed,
        args: Mapping[str, Any],
        conn: Connection | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement and fetch what it returns: a transaction of its own, or a
        part of the caller's on `conn`."""
        if conn is not None:
            cur = conn.execute(query, {**args, "notify": self._notify_param})
            return cur.fetchall() if cur.description else []
        with self._connection() as own:
            return self._rows(query, args, own)

    def notify_local(self) -> None:
        self._wakeups.bump()

    def _health(self, outage: BaseException | None) -> None:
        """Log once when an outage starts (given its error) and once when it ends (None)."""
        if (outage is not None) != self._down:
            self._down = outage is not None
            state = f"unavailable ({one_line(outage)}); retrying" if outage else "reachable again"
            log.warning("PostgreSQL at %s is %s", self._where, state)

    def _translate(self, exc: BaseException) -> StorageError:
        """What a driver error means to corral; an outage is logged once (see `_health`).

        - the server cannot be reached or cannot serve now (connection refused or lost, pool
          timeout, shutting down, too many connections, out of disk or memory, read-only
          after a failover), or the statement lost a race it can win on another try
          (deadlock, serialization failure, lock or statement timeout): StorageUnavailable,
          transient, nothing to change but to try again;
        - a value the server or the driver refuses (SQLSTATE class 22: a NUL in text, a
          character the database's encoding lacks, a number out of range; 54000: a value
          past a limit, such as an index row too large): ValueRejected, and the verb that
          wrote it wrote nothing, since every verb is one transaction;
        - anything else (a schema dropped under us, a duplicate id...): StorageError."""
        if isinstance(exc, PoolClosed):  # for good: trying again cannot help
            return StorageError(f"the storage of {self._where} is closed")
        if isinstance(exc, UnicodeEncodeError | psycopg.DataError) or state_of(exc) == _LIMIT:
            return ValueRejected(
                f"PostgreSQL at {self._where} refused a value{state_of(exc)}: "
                f"{one_line(exc)}; nothing was written: store a value the database can hold"
            )
        assert isinstance(exc, psycopg.Error)
        if outage(exc):
            self._health(exc)
            return StorageUnavailable(
                f"PostgreSQL at {self._where} is unavailable: {one_line(exc)}"
            )
        if _retryable(exc):
            return StorageUnavailable(
                f"PostgreSQL at {self._where} gave up a statement{state_of(exc)}: "
                f"{one_line(exc)}; nothing was written: try again"
            )
        return StorageError(
            f"PostgreSQL at {self._where} failed{state_of(exc)}: {one_line(exc)}; "
            "see the server's log"
        )


C = TypeVar("C", bound=Connected)
P = ParamSpec("P")
R = TypeVar("R")


def verb(method: Callable[Concatenate[C, P], R]) -> Callable[Concatenate[C, P], R]:
    """A public verb: whatever the driver raises in it leaves as corral's error."""

    def translated(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise self._translate(exc) from None

    functools.update_wrapper(translated, method)
    return translated


def check(conn: Connection) -> None:
    """The pool's check of a connection it hands out. A round trip to the server on every
    checkout would cost a worker one more per exchange, so the round trip is only made
    when the connection is suspect: closed, in a bad state, or with bytes waiting while
    idle, which is what a server that dropped it (a restart, a terminated backend) leaves:
    its last error message or end of file."""
    if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK or _readable(conn):
        ConnectionPool.check_connection(conn)


def _readable(conn: Connection) -> bool:
    """True if the server sent something to this idle connection (select, no wait)."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError):  # closed under us
        return True


def configure(conn: Connection) -> None:
    # codec decodes JSON itself: hand jsonb columns over as their text.
    conn.adapters.register_loader("jsonb", TextLoader)


def parse_url(url: str) -> tuple[str, dict[str, Any], bool]:
    """libpq's URL without corral's `notify` parameter; connect defaults it does not set
    (short timeout, application name); and whether LISTEN/NOTIFY is on."""
    parts = urlsplit(url)
    notify = True
    kept = []
    for item in parts.query.split("&") if parts.query else []:
        key, _, value = item.partition("=")
        if key == "notify":
            notify = value.lower() not in _FALSE
        else:
            kept.append(item)
    conninfo = urlunsplit(parts._replace(query="&".join(kept)))
    try:
        given = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise UsageError(f"invalid PostgreSQL URL {redact(url)}: {one_line(exc)}") from None
    defaults = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "corral"}
    return conninfo, {k: v for k, v in defaults.items() if k not in given}, notify


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


#: SQLSTATEs of a server that cannot serve now: it is shutting down or restarting (57P01
#: admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now), dropped an idle session
#: (57P05), or is a standby (25006 read_only_sql_transaction: a failover under way). Class
#: 08 (the connection) and class 53 (too many connections, disk full, out of memory) too.
_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "57P05", "25006"})
#: A statement that lost a race and was rolled back whole: another try may succeed. Class
#: 40 (serialization failure, deadlock) too.
_RETRYABLE_STATES = frozenset({"55P03", "57014"})  # lock_not_available, query_canceled


def outage(exc: psycopg.Error) -> bool:
    """The server is away or cannot serve: a broken connection (no SQLSTATE: refused, lost,
    a pool timeout), a server going down, too many connections. Not a statement's own
    failure (deadlock, cancellation), and not a mistake of the client's (no SQLSTATE
    either, but not an OperationalError)."""
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state[:2] in ("08", "53") or state in _OUTAGE_STATES


def _retryable(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    return state[:2] == "40" or state in _RETRYABLE_STATES


#: program_limit_exceeded: a value past a limit of the server's (an index row too large).
_LIMIT = " (SQLSTATE 54000)"


def state_of(exc: BaseException) -> str:
    """` (SQLSTATE xxxxx)` when the server gave one."""
    state = getattr(exc, "sqlstate", None)
    return f" (SQLSTATE {state})" if state else ""
