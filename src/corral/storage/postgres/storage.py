"""PostgresStorage: the verbs of each concern, on one pool, one clock and one listener."""

from __future__ import annotations

import socket
import threading

import psycopg
from psycopg_pool import ConnectionPool

from corral.errors import StorageUnavailable
from corral.storage.postgres.admin import AdminVerbs
from corral.storage.postgres.claims import Claims
from corral.storage.postgres.clock import ServerClock, clock_samples
from corral.storage.postgres.connection import (
    POOL_SIZE,
    POOL_TIMEOUT,
    Connection,
    check,
    configure,
    one_line,
    parse_url,
    redact,
)
from corral.storage.postgres.inserts import Inserts
from corral.storage.postgres.leases import Leases
from corral.storage.postgres.queries import Q
from corral.storage.postgres.queues import Queues
from corral.storage.postgres.reads import Reads
from corral.storage.postgres.schedules import Schedules
from corral.storage.postgres.schema import Schema
from corral.storage.postgres.tokens import Tokens
from corral.storage.postgres.values import as_time
from corral.storage.postgres.wakeups import Listening
from corral.storage.postgres.workers import Workers
from corral.storage.shared import Wakeups


class PostgresStorage(
    Inserts,
    Claims,
    AdminVerbs,
    Leases,
    Reads,
    Queues,
    Workers,
    Schedules,
    Tokens,
    Schema,
    Listening,
):
    """Storage on a PostgreSQL database named by a `postgresql://` (or `postgres://`) URL.

    The URL is libpq's, plus one parameter of corral's own: `notify=false` turns LISTEN/NOTIFY
    off. `?options=-csearch_path%3Dname` puts corral's tables in schema `name`.
    """

    def __init__(self, url: str, *, migrate: bool = True, notify: bool | None = None) -> None:
        self.url = url
        self._conninfo, self._connect_kwargs, url_notify = parse_url(url)
        self._notify_on = url_notify if notify is None else notify
        self._where = redact(url)
        self._down = False
        self._wakeups = Wakeups()
        self._listen_lock = threading.Lock()
        self._listener = None
        self._closed = False
        self._database = ""
        self._channel = self._probe()  # sets _database and _clock too
        self._wake_r, self._wake_w = socket.socketpair()  # stops the listener at once
        self._notify_param = self._channel if self._notify_on else None
        self._pool = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, **self._connect_kwargs},
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            configure=configure,
            check=check,
            name=f"corral-{self._channel}",
            timeout=POOL_TIMEOUT,
        )
        self._pool.open(wait=False)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.close()
                raise

    def _probe(self) -> str:
        """Connect once, for a clear error now rather than a pool timeout later, and take
        the first measurement of the server's clock."""
        try:
            with psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs) as conn:
                row = conn.execute(Q["notify_channel"]).fetchone()
                self._clock = ServerClock(clock_samples(conn), self._refresh_clock)
        except psycopg.Error as exc:
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {self._where}: {one_line(exc)}"
            ) from None
        assert row is not None
        self._database = str(row[1])
        return str(row[0])

    def now(self) -> float:
        """The server's clock (see `ServerClock`): no round trip, never an error. To the
        microsecond, as the tables keep times: a time taken from it is stored as it is."""
        return as_time(self._clock.now())

    def _refresh_clock(self) -> None:
        """A new measurement of the server's clock, on a pooled connection (in the clock's
        background thread)."""
        conn: Connection
        with self._connection() as conn:
            self._clock.offer(clock_samples(conn))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        self._clock.close()
        self._stop_listener()
