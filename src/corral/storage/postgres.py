"""The PostgreSQL backend: many workers on many machines share one database.

Connections come from a `psycopg_pool.ConnectionPool` in autocommit mode: most verbs are one
statement (a few data-modifying CTEs), so one round trip and one implicit transaction each.
Claims lock candidates with `FOR UPDATE SKIP LOCKED`; batched writes over several rows lock
them in id order first, so that two batches never deadlock. The SQL lives in
`sql/postgres/queries.sql`; the schema in the numbered migrations beside it.

Idle workers wait for a NOTIFY that every write creating runnable work sends when its
transaction commits. One listener thread per storage object holds a dedicated connection.
With `notify=false` in the URL (PgBouncer in transaction mode cannot LISTEN), waiting falls
back to polling.

Driver errors never leave this module: every public verb is wrapped by `_verb`, which hands
psycopg's and psycopg_pool's exceptions to `_translate`, the one place that decides what
they mean to corral (StorageUnavailable, ValueRejected or StorageError). Inside, the code
sees the driver's own exceptions, so that it can retry what it knows to be safe.
"""

from __future__ import annotations

import functools
import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from importlib import resources
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolClosed

from corral.errors import (
    StorageError,
    StorageUnavailable,
    UsageError,
    ValueRejected,
)
from corral.model import Change, Event, Process
from corral.storage import codec, columns
from corral.storage.base import (
    Claim,
    Claimed,
    Inserted,
    IterationCommit,
    NewProcess,
    ProcessFilter,
    Renewal,
    Storage,
    SubmitShared,
    TimedOut,
)
from corral.storage.shared import same_submit

#: A Process from a row of columns.SELECT_LIST.
_decode_process = columns.row_decoder()
log = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]

_SQL_DIR = resources.files("corral.storage") / "sql" / "postgres"
_MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")
_QUERY_HEADER = re.compile(r"^-- (\w+) --$", re.MULTILINE)
_CONNECT_TIMEOUT = 5
#: How long a verb waits for a pooled connection before reporting the database unavailable.
_POOL_TIMEOUT = 10.0
#: Seconds of silence after which the listener pings the server, to notice a dead one.
_LISTEN_PING = 30.0
#: Polling interval of `wait_for_change` when LISTEN/NOTIFY is off.
_POLL = 0.05
#: Seconds (of local elapsed time) a measurement of the server's clock serves `now()` before
#: a new one is taken, in the background. Readings do not depend on the local wall clock
#: (see _ServerClock), so this bounds only how long a step of the server's clock, or a drift
#: between the two clocks' rates, goes unnoticed.
_CLOCK_REFRESH = 5.0
#: Round trips per measurement: the shortest one gives the surest reading.
_CLOCK_SAMPLES = 3
#: How fast the local elapsed-time clock and the server's may drift apart, in seconds per
#: second: 500 ppm, ten times what NTP tolerates. It ages a measurement's error bound.
_CLOCK_DRIFT = 5e-4
_FALSE = ("0", "false", "no", "off")


def load_queries() -> dict[str, str]:
    """The named queries of queries.sql, with the process column list filled in."""
    text = (_SQL_DIR / "queries.sql").read_text(encoding="utf-8")
    parts = _QUERY_HEADER.split(text)
    queries = dict(zip(parts[1::2], (p.strip() for p in parts[2::2]), strict=True))
    return {k: v.replace("/* process_columns */", columns.SELECT_LIST) for k, v in queries.items()}


def load_migrations() -> list[tuple[int, str]]:
    """The numbered migrations, in the order they apply."""
    found = []
    for entry in _SQL_DIR.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"PostgreSQL migrations are not numbered 1..n: {[v for v, _ in found]}")
    return found


P = ParamSpec("P")
R = TypeVar("R")


def _verb(
    method: Callable[Concatenate[PostgresStorage, P], R],
) -> Callable[Concatenate[PostgresStorage, P], R]:
    """A public verb: whatever the driver raises in it leaves as corral's error."""

    def verb(self: PostgresStorage, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except (psycopg.Error, UnicodeEncodeError) as exc:
            raise self._translate(exc) from None

    functools.update_wrapper(verb, method)
    return verb


Q = load_queries()
MIGRATIONS = load_migrations()
#: The schema after the last migration, for an empty database.
SCHEMA = (_SQL_DIR / "schema.sql").read_text(encoding="utf-8")
SCHEMA_VERSION = MIGRATIONS[-1][0]


class PostgresStorage(Storage):
    """Storage on a PostgreSQL database named by a `postgresql://` (or `postgres://`) URL.

    The URL is libpq's, plus one parameter of corral's own: `notify=false` turns LISTEN/NOTIFY
    off. `?options=-csearch_path%3Dname` puts corral's tables in schema `name`.
    """

    def __init__(self, url: str, *, migrate: bool = True, notify: bool | None = None) -> None:
        self.url = url
        self._conninfo, self._connect_kwargs, url_notify = _parse_url(url)
        self._notify_on = url_notify if notify is None else notify
        self._where = _redact(url)
        self._down = False
        self._changed = threading.Condition()
        self._wakeups = 0
        self._listen_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._closed = False
        self._database = ""
        self._channel = self._probe()  # sets _database and _clock too
        self._wake_r, self._wake_w = socket.socketpair()  # stops the listener at once
        self._notify_param = self._channel if self._notify_on else None
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True, **self._connect_kwargs},
            min_size=1,
            max_size=10,
            open=False,
            configure=_configure,
            check=self._check,
            name=f"corral-{self._channel}",
            timeout=_POOL_TIMEOUT,
        )
        self._pool.open(wait=False)
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.close()
                raise

    # --- connections ---------------------------------------------------------------------
    def _probe(self) -> str:
        """Connect once, for a clear error now rather than a pool timeout later, and take
        the first measurement of the server's clock."""
        try:
            with psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs) as conn:
                row = conn.execute(Q["notify_channel"]).fetchone()
                self._clock = _ServerClock(_clock_samples(conn), self._refresh_clock)
        except psycopg.Error as exc:
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {self._where}: {_one_line(exc)}"
            ) from None
        assert row is not None
        self._database = str(row[1])
        return str(row[0])

    def now(self) -> float:
        """The server's clock (see `_ServerClock`): no round trip, never an error."""
        return self._clock.now()

    def _refresh_clock(self) -> None:
        """A new measurement of the server's clock, on a pooled connection (in the clock's
        background thread)."""
        with self._connection() as conn:
            self._clock.offer(_clock_samples(conn))

    @staticmethod
    def _check(conn: Connection) -> None:
        """The pool's check of a connection it hands out. A round trip to the server on
        every checkout would cost a worker one more per exchange, so the round trip is
        only made when the connection is suspect: closed, in a bad state, or with bytes
        waiting while idle, which is what a server that dropped it (a restart, a
        terminated backend) leaves: its last error message or end of file."""
        if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK or _readable(conn):
            ConnectionPool.check_connection(conn)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection. The driver's errors pass through as they are (the verb
        translates them, see `_verb`); a success after an outage is logged once."""
        with self._pool.connection() as conn:
            yield conn
        if self._down:
            self._health(None)

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
        if isinstance(exc, UnicodeEncodeError | psycopg.DataError) or _state(exc) == _LIMIT:
            return ValueRejected(
                f"PostgreSQL at {self._where} refused a value{_state(exc)}: {_one_line(exc)}; "
                "nothing was written: store a value the database can hold"
            )
        assert isinstance(exc, psycopg.Error)
        if _outage(exc):
            self._health(exc)
            return StorageUnavailable(
                f"PostgreSQL at {self._where} is unavailable: {_one_line(exc)}"
            )
        if _retryable(exc):
            return StorageUnavailable(
                f"PostgreSQL at {self._where} gave up a statement{_state(exc)}: "
                f"{_one_line(exc)}; nothing was written: try again"
            )
        return StorageError(
            f"PostgreSQL at {self._where} failed{_state(exc)}: {_one_line(exc)}; "
            "see the server's log"
        )

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

    def _health(self, outage: BaseException | None) -> None:
        """Log once when an outage starts (given its error) and once when it ends (None)."""
        if (outage is not None) != self._down:
            self._down = outage is not None
            state = f"unavailable ({_one_line(outage)}); retrying" if outage else "reachable again"
            log.warning("PostgreSQL at %s is %s", self._where, state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        self._clock.close()
        with self._listen_lock:
            listener = self._listener
        if listener is not None:
            self._wake_w.send(b"x")
            listener.join(timeout=5.0)
        self._wake_r.close()
        self._wake_w.close()

    # --- schema --------------------------------------------------------------------------
    def migrate(self) -> int:
        try:
            return self._migrate()
        except (psycopg.Error, UnicodeEncodeError) as exc:
            error = self._translate(exc)
            if isinstance(error, StorageUnavailable):
                raise error from None
            raise StorageError(
                f"cannot create or upgrade the corral schema in {self._where}{_state(exc)}: "
                f"{_one_line(exc)}"
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

    # --- processes -----------------------------------------------------------------------
    @_verb
    def process_insert_many(
        self,
        processes: Sequence[NewProcess],
        *,
        shared: SubmitShared | None = None,
        connection: object | None = None,
    ) -> list[Inserted]:
        if connection is not None:
            return self._insert_in(connection, processes, shared)
        if not processes:
            return []
        query, args = _insert_args(processes, shared, self._notify_param)
        for attempt in (1, 2, 3):
            try:
                out = self._insert_again_if_lost(processes, query, args)
                break
            except psycopg.errors.DeadlockDetected:
                # Two batches taking the same custom ids in opposite orders: the other one
                # has committed by now, so another try finds its processes.
                if attempt == 3:
                    raise
        self.notify_local()
        return out

    def _insert_again_if_lost(
        self, processes: Sequence[NewProcess], query: str, args: dict[str, Any]
    ) -> list[Inserted]:
        """Insert; if the connection turns out dead (the pool's check looks only for what a
        dropped connection leaves behind, see _check, and a connection can break after
        it), insert again on another one. An insert that committed before its connection
        broke is found by its ids: the second try's unique violation then means done."""
        used: list[Connection] = []
        try:
            return self._insert(processes, query, args, handed_out=used)
        except psycopg.OperationalError as exc:
            # No connection to be had (a pool timeout), or not an outage: no second try.
            if not used or not _outage(exc):
                raise
        try:
            return self._insert(processes, query, args)
        except psycopg.errors.UniqueViolation:
            landed = self._landed(processes)
            if landed is None:
                raise
            return landed

    def _landed(self, processes: Sequence[NewProcess]) -> list[Inserted] | None:
        """The processes as created, if every one of them is stored as it was inserted."""
        rows = self._rows(Q["process_get_many"], {"ids": [n.id for n in processes]})
        stored = {p.id: p for p in map(_decode_process, rows)}
        ours = [stored.get(n.id) for n in processes]
        if all(
            p is not None
            and (p.job, p.created_at, p.custom_id) == (n.job, n.created_at, n.custom_id)
            and codec.dumps(p.params) == codec.params_json(n)
            for p, n in zip(ours, processes, strict=True)
        ):
            return [Inserted(p, "created") for p in ours if p is not None]
        return None

    def _insert(
        self,
        processes: Sequence[NewProcess],
        query: str,
        args: dict[str, Any],
        *,
        handed_out: list[Connection] | None = None,
    ) -> list[Inserted]:
        """`handed_out`: note the connection in this list once the pool hands it out."""
        # Without custom ids the one statement is the whole transaction; with them, the
        # batch must roll back as a whole on a conflict found by the second statement.
        atomic = query == "process_insert_many"
        with self._connection() as conn:
            if handed_out is not None:
                handed_out.append(conn)
            with conn.transaction() if atomic else nullcontext():
                return self._insert_on(conn, processes, query, args)

    def _insert_on(
        self, conn: Connection, processes: Sequence[NewProcess], query: str, args: dict[str, Any]
    ) -> list[Inserted]:
        if query == "process_insert_new" and psycopg.Pipeline.is_supported():
            # All or nothing: the records are built while the server inserts (it takes
            # about as long), and leaving the pipeline raises the statement's error.
            with conn.pipeline():
                conn.execute(Q[query], args)
                return [Inserted(columns.new_process_record(n), "created") for n in processes]
        return _insert_rows(conn, processes, query, args)

    def _insert_in(
        self, connection: object, processes: Sequence[NewProcess], shared: SubmitShared | None
    ) -> list[Inserted]:
        """Transactional enqueue: insert through the caller's connection, in the caller's
        transaction, which we neither commit nor roll back. The NOTIFY the insert sends is
        delivered by PostgreSQL when (and only if) that transaction commits."""
        if not isinstance(connection, psycopg.Connection):
            raise UsageError(
                "connection must be a psycopg (3) Connection, not "
                f"{type(connection).__module__}.{type(connection).__qualname__}"
            )
        # The caller's row factory and loaders may differ from the pool's: use our own.
        cur = psycopg.Cursor(connection, row_factory=tuple_row)
        cur.adapters.register_loader("jsonb", TextLoader)
        # Without autocommit, this first statement also opens the caller's transaction if
        # none was open yet (psycopg's implicit BEGIN), so that the block below is only a
        # savepoint. In autocommit mode outside a transaction block, the insert commits at
        # once, like a plain submit.
        row = cur.execute(Q["notify_channel"]).fetchone()
        if row is None or (str(row[0]), str(row[1])) != (self._channel, self._database):
            where = "?" if row is None else f"database {row[1]!r}, channel {row[0]!r}"
            raise UsageError(
                f"the connection reaches another corral database or schema ({where}) than "
                f"this app ({self._database!r}, {self._channel!r}): use the same database "
                "and search_path"
            )
        if not processes:
            return []
        # A savepoint: a custom id conflict undoes this submit and leaves the caller's
        # transaction usable.
        with connection.transaction():
            return _insert_rows(
                cur, processes, *_insert_args(processes, shared, self._notify_param)
            )

    @_verb
    def process_get(self, process_id: str) -> Process | None:
        rows = self._rows(Q["process_get"], {"id": process_id})
        return _decode_process(rows[0]) if rows else None

    @_verb
    def process_list(self, where: ProcessFilter) -> list[Process]:
        clauses: list[sql.Composable] = []
        args: dict[str, Any] = {"limit": where.limit}
        if where.status is not None:
            clauses.append(sql.SQL("status = %(status)s"))
            args["status"] = where.status.value
        if where.job is not None:
            clauses.append(sql.SQL("job = %(job)s"))
            args["job"] = where.job
        if where.tags:
            clauses.append(sql.SQL("tags @> %(tags)s::jsonb"))
            args["tags"] = codec.dumps(dict(where.tags))
        order = sql.SQL("DESC" if where.newest_first else "ASC")
        query = sql.SQL(
            "SELECT {cols} FROM corral_process {where} "
            "ORDER BY created_at {order}, id {order} LIMIT %(limit)s"
        ).format(
            cols=sql.SQL(columns.SELECT_LIST),
            where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL(""),
            order=order,
        )
        return [_decode_process(r) for r in self._rows(query, args)]

    @_verb
    def process_commit_and_claim(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        if not commits:
            return [], self.process_claim(claim)
        commit = _CommitStatement(commits)
        claim_query, claim_args = _claim_statement(claim)
        notify = {"notify": self._notify_param}
        # One transaction, so one WAL flush, sent as a pipeline: BEGIN, the commit, the
        # claim and COMMIT go out together and come back together, one round trip.
        with self._connection() as conn:
            with conn.pipeline(), conn.transaction():
                committed = conn.execute(commit.query, commit.args | notify)
                claimed = conn.execute(claim_query, claim_args | notify)
            lost = commit.lost(committed.fetchall())
            rows = claimed.fetchall()
        if len(lost) < len(commits):
            self.notify_local()
        return lost, _claimed(rows)

    @_verb
    def process_claim(self, claim: Claim) -> list[Claimed]:
        if claim.limit <= 0:
            return []
        return _claimed(self._rows(*_claim_statement(claim)))

    @_verb
    def process_commit_many(self, commits: Sequence[IterationCommit]) -> list[str]:
        if not commits:
            return []
        commit = _CommitStatement(commits)
        lost = commit.lost(self._rows(commit.query, commit.args))
        if len(lost) < len(commits):
            self.notify_local()
        return lost

    @_verb
    def process_update(
        self,
        process_id: str,
        expected_version: int,
        change: Change,
        now: float,
        *,
        revoke_lease: bool = False,
    ) -> bool:
        events = [codec.event_to_row(e, process_id) for e in change.events]
        args = {
            **_change_args(change),
            **_event_args(events),
            "cancel_requested": change.cancel_requested,
            "now": float(now),
            "id": process_id,
            "version": expected_version,
            "revoke": revoke_lease,
        }
        updated = bool(self._rows(Q["process_update"], args)[0][0])
        if updated:
            self.notify_local()
        return updated

    @_verb
    def process_prune(self, finished_before: float) -> int:
        return int(self._rows(Q["process_prune"], {"before": float(finished_before)})[0][0])

    # --- leases --------------------------------------------------------------------------
    @_verb
    def lease_renew_many(
        self,
        owner: str,
        tokens: Mapping[str, int],
        now: float,
        lease_seconds: float,
        heartbeats: Mapping[str, float] | None = None,
    ) -> Renewal:
        if not tokens:
            return Renewal(frozenset(), frozenset())
        beats = heartbeats or {}
        args = {
            "ids": list(tokens),
            "tokens": list(tokens.values()),
            "beats": [_float(beats.get(pid)) for pid in tokens],
            "owner": owner,
            "expires": float(now + lease_seconds),
        }
        rows = self._rows(Q["lease_renew_many"], args)
        held = {r[0] for r in rows}
        cancel = {r[0] for r in rows if r[1]}
        return Renewal(frozenset(set(tokens) - held), frozenset(cancel))

    @_verb
    def lease_release_many(self, tokens: Mapping[str, int], now: float) -> list[str]:
        if not tokens:
            return []
        args = {"ids": list(tokens), "tokens": list(tokens.values()), "now": float(now)}
        released = {r[0] for r in self._rows(Q["lease_release_many"], args)}
        if released:
            self.notify_local()
        return [pid for pid in tokens if pid in released]

    @_verb
    def leader_acquire(self, name: str, owner: str, now: float, ttl: float) -> bool:
        args = {"name": name, "owner": owner, "now": float(now), "expires": float(now + ttl)}
        return bool(self._rows(Q["leader_acquire"], args))

    @_verb
    def process_timed_out(self, now: float, limit: int) -> list[TimedOut]:
        rows = self._rows(Q["process_timed_out"], {"now": float(now), "limit": limit})
        return [TimedOut(_decode_process(r), r[-1]) for r in rows]

    # --- history -------------------------------------------------------------------------
    @_verb
    def history_list(self, process_id: str) -> list[Event]:
        return [codec.event_from_row(r) for r in self._rows(Q["history_list"], {"id": process_id})]

    @_verb
    def history_append(self, events: Sequence[Event]) -> None:
        if events:
            self._rows(Q["history_append"], _event_args([codec.event_to_row(e) for e in events]))

    # --- queues --------------------------------------------------------------------------
    @_verb
    def queue_pause(self, queue: str, paused: bool) -> None:
        if paused:
            self._rows(Q["queue_pause"], {"queue": queue})
        elif self._rows(Q["queue_resume"], {"queue": queue}):
            self.notify_local()

    @_verb
    def queue_paused(self) -> list[str]:
        return [r[0] for r in self._rows(Q["queue_paused"], {})]

    # --- wake-ups ------------------------------------------------------------------------
    def notify_local(self) -> None:
        with self._changed:
            self._wakeups += 1
            self._changed.notify_all()

    @_verb
    def change_epoch(self) -> int:
        # LISTEN first: a NOTIFY sent after the epoch is read must move it on.
        if self._notify_on:
            self._start_listener()
        return self._wakeups

    def wait_for_change(self, epoch: int, timeout: float) -> bool:
        """True when something may have changed since `epoch` was read.

        Without LISTEN/NOTIFY, waits at most 50 ms and returns True: the caller polls.
        """
        if not self._notify_on or not self._start_listener():
            with self._changed:
                self._changed.wait_for(
                    lambda: self._wakeups != epoch, timeout=max(min(timeout, _POLL), 0.0)
                )
            return True
        with self._changed:
            return self._changed.wait_for(lambda: self._wakeups != epoch, timeout=max(timeout, 0.0))

    def _start_listener(self) -> bool:
        """LISTEN before returning, so that no later commit's NOTIFY is missed."""
        with self._listen_lock:
            if self._listener is not None:
                return True
            if self._closed:
                return False
            try:
                conn = self._listen_connect()
            except psycopg.Error as exc:
                self._health(exc)
                return False
            self._listener = threading.Thread(
                target=self._listen,
                args=(conn,),
                name=f"corral-listen-{self._channel}",
                daemon=True,
            )
            self._listener.start()
            return True

    def _listen_connect(self) -> Connection:
        conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _listen(self, conn: Connection | None) -> None:
        """The listener thread: count notifications, reconnect with backoff when the server
        goes away (counting a wake-up then, since notifications were missed)."""
        backoff = 0.1
        while not self._closed:
            try:
                if conn is None:
                    conn = self._listen_connect()
                    self._health(None)
                    self.notify_local()
                wake = self._wake_r.fileno()
                ready, _, _ = select.select([conn.fileno(), wake], [], [], _LISTEN_PING)
                if wake in ready:
                    break
                if not ready:
                    conn.execute("SELECT 1")  # a dead server shows only when spoken to
                if sum(1 for _ in conn.notifies(timeout=0)):
                    self.notify_local()
                backoff = 0.1
            except (psycopg.Error, OSError) as exc:
                self._health(exc)
                if conn is not None:
                    conn.close()
                    conn = None
                select.select([self._wake_r], [], [], backoff)
                backoff = min(backoff * 2, 5.0)
        if conn is not None:
            conn.close()


# --- the server's clock ----------------------------------------------------------------------


#: Local elapsed seconds, on a clock that never steps and counts suspended time (Linux's
#: CLOCK_BOOTTIME; elsewhere the monotonic clock, which may pause in a suspend: the next
#: refresh then catches up).
_elapsed: Callable[[], float] = (
    functools.partial(time.clock_gettime, time.CLOCK_BOOTTIME)
    if hasattr(time, "CLOCK_BOOTTIME")
    else time.monotonic
)

#: One reading of the server's clock: (its time, local elapsed time at the midpoint of the
#: round trip, the round trip's length).
Sample = tuple[float, float, float]


def _clock_samples(conn: Connection) -> list[Sample]:
    samples = []
    for _ in range(_CLOCK_SAMPLES):
        before = _elapsed()
        row = conn.execute(Q["server_clock"]).fetchone()
        after = _elapsed()
        assert row is not None
        samples.append((float(row[0]), (before + after) / 2, after - before))
    return samples


class _ServerClock:
    """The server's clock, read without a round trip.

    A measurement reads the server's `clock_timestamp()` and the local elapsed-time clock
    at the midpoint of the round trip; a reading is the server's time then plus the local
    time elapsed since. The local wall clock (`time.time()`) plays no part: a machine whose
    clock is minutes off, or steps (NTP, a VM resumed), reads the same time as every other
    machine. A measurement is good to half its round trip; its error bound then grows with
    the drift the two clocks' rates may have, and a new measurement (taken in the background
    every _CLOCK_REFRESH seconds, started by a reading that finds the last one due) replaces
    it unless its own bound is worse: a round trip slowed by a busy server or a stalled
    thread does not spoil a good measurement."""

    def __init__(self, samples: Sequence[Sample], refresh: Callable[[], None]) -> None:
        self._refresh = refresh
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        # (server time, local elapsed time, error bound then): replaced whole, read at once.
        self._base = (0.0, 0.0, float("inf"))
        self._due = 0.0
        self.offer(samples)

    def now(self) -> float:
        server, local, _ = self._base
        elapsed = _elapsed()
        if elapsed >= self._due:
            self._start_refresh(elapsed)
        return server + (elapsed - local)

    def offer(self, samples: Sequence[Sample]) -> bool:
        """Take the best of these measurements if it is better than the one in use."""
        server, local, rtt = min(samples, key=lambda s: s[2])
        with self._lock:
            _, old_local, old_error = self._base
            old_error += abs(local - old_local) * _CLOCK_DRIFT
            if rtt / 2 > old_error:
                return False
            self._base = (server, local, rtt / 2)
            self._due = max(self._due, local + _CLOCK_REFRESH)
            return True

    def _start_refresh(self, elapsed: float) -> None:
        with self._lock:
            if self._thread is not None or self._closed or elapsed < self._due:
                return
            self._due = elapsed + _CLOCK_REFRESH  # once per interval, even if it fails
            self._thread = threading.Thread(target=self._run, name="corral-clock", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._refresh()
        except Exception as exc:  # the database is away: keep the reading we have
            log.debug("could not read the server's clock: %s", _one_line(exc))
        finally:
            with self._lock:
                self._thread = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)


# --- helpers ---------------------------------------------------------------------------------


#: The queries' names for some of a change's columns.
_CHANGE_ARGS = {"stopped_status": "stopped"}


def _change_args(c: Change) -> dict[str, Any]:
    """A change's columns (columns.CHANGE) as the queries' arguments; numbers as floats
    where the column is one, for the binary parameters."""
    args: dict[str, Any] = {}
    for column, value in zip(columns.CHANGE, columns.change_values(c), strict=True):
        if column.kind in ("float", "time") and value is not None:
            value = float(value)
        args[_CHANGE_ARGS.get(column.name, column.name)] = value
    return args


def _event_args(rows: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """History rows (codec.event_to_row) as the column arrays the queries unnest."""
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 7
    return {
        "e_ids": list(cols[0]),
        "e_at": [float(v) for v in cols[1]],
        "e_kinds": list(cols[2]),
        "e_from": list(cols[3]),
        "e_to": list(cols[4]),
        "e_attempts": list(cols[5]),
        "e_details": list(cols[6]),
    }


def _claim_statement(claim: Claim) -> tuple[str, dict[str, Any]]:
    """The claim's statement: the filters it asks for, and only those, spliced in, so that
    an unfiltered claim is the plain statement (and its plan) of queries.sql."""
    filters = []
    if claim.process_ids is not None:
        filters.append("AND id = ANY(%(ids)b::text[])")
    if claim.queues is not None:
        filters.append("AND queue = ANY(%(queues)b::text[])")
    if claim.jobs is not None:
        # Checked on the rows the index walk meets, as the queue is: a process of another
        # job is skipped, neither locked nor changed.
        filters.append("AND job = ANY(%(jobs)b::text[])")
    query = Q["process_claim"].replace("/* filters */", " ".join(filters))
    if claim.max_recovered is not None:
        query = query.replace("/* max_recovered */", ", %(max_recovered)b")
    args = {
        "owner": claim.owner,
        "now": float(claim.now),
        "expires": float(claim.now + claim.lease_seconds),
        "limit": max(claim.limit, 0),
        "ids": list(claim.process_ids or ()),
        "queues": list(claim.queues or ()),
        "jobs": list(claim.jobs or ()),
        "max_recovered": max(claim.max_recovered or 0, 0),
    }
    return query, args


def _claimed(rows: Sequence[tuple[Any, ...]]) -> list[Claimed]:
    # Rows come in DESIGN §3 order: recovered ones (claim_class 1) first.
    claimed = []
    for row in rows:
        process = _decode_process(row)
        previous_owner, claim_class = row[-2], row[-1]
        claimed.append(Claimed(process, process.lease_token, claim_class == 1, previous_owner))
    return claimed


class _CommitStatement:
    """process_commit_many's statement for a batch, and which commits it refused."""

    def __init__(self, commits: Sequence[IterationCommit]) -> None:
        self.commits = commits
        # One commit per process: a second one for the same id finds the lease released.
        self.first: dict[str, int] = {}
        for i, commit in enumerate(commits):
            self.first.setdefault(commit.process_id, i)
        batch = [commits[i] for i in self.first.values()]
        columns: dict[str, list[Any]] = {"ids": [], "tokens": [], "now": []}
        for commit in batch:
            columns["ids"].append(commit.process_id)
            columns["tokens"].append(commit.token)
            columns["now"].append(float(commit.now))
            for key, value in _change_args(commit.change).items():
                columns.setdefault(key, []).append(value)
        events = [codec.event_to_row(e, c.process_id) for c in batch for e in c.change.events]
        self.query = Q["process_commit_many"]
        self.args: dict[str, Any] = columns | _event_args(events)

    def lost(self, landed_rows: Sequence[tuple[Any, ...]]) -> list[str]:
        landed = {r[0] for r in landed_rows}
        return [
            c.process_id
            for i, c in enumerate(self.commits)
            if c.process_id not in landed or self.first[c.process_id] != i
        ]


def _insert_args(
    processes: Sequence[NewProcess], shared: SubmitShared | None, notify: str | None
) -> tuple[str, dict[str, Any]]:
    """The insert query for a batch and its arguments: `process_insert_new` when the App
    says what they share (one submit call: job, queue, client, tags, timeouts...) and no
    process has a custom id, so that those go once rather than once per process
    (`process_insert_one` for a single one: no arrays at all); else the general
    `process_insert_many`."""
    first = processes[0]
    if shared is not None and all(n.custom_id is None for n in processes):
        args: dict[str, Any] = {
            "job": first.job,
            "status": first.status.value,
            "queue": first.queue,
            "client_id": first.client_id,
            "tags": codec.dumps(dict(first.tags)),
            "created_at": float(first.created_at),
            "detail": codec.dumps(codec.submitted_detail(first)),
            "deadline_at": _float(first.deadline_at),
            "schedule_to_close": _float(first.schedule_to_close),
            "start_to_close": _float(first.start_to_close),
            "heartbeat_timeout": _float(first.heartbeat_timeout),
            "edge_deps": [d for n in processes for d in n.depends_on],
            "notify": notify,
        }
        if len(processes) == 1:
            args |= {
                "id": first.id,
                "params": codec.params_json(first),
                "run_at": float(first.run_at),
                "priority": first.priority,
            }
            return "process_insert_one", args
        args |= {
            "ids": [n.id for n in processes],
            "params": [codec.params_json(n) for n in processes],
            "run_at": [float(n.run_at) for n in processes],
            "priorities": [n.priority for n in processes],
            "edge_ids": [n.id for n in processes for _ in n.depends_on],
        }
        return "process_insert_new", args
    tags = codec.JsonCache()
    details = codec.JsonCache()
    return "process_insert_many", {
        "ids": [n.id for n in processes],
        "jobs": [n.job for n in processes],
        "params": [codec.params_json(n) for n in processes],
        "statuses": [n.status.value for n in processes],
        "priorities": [n.priority for n in processes],
        "queues": [n.queue for n in processes],
        "run_at": [float(n.run_at) for n in processes],
        "custom_ids": [n.custom_id for n in processes],
        "client_ids": [n.client_id for n in processes],
        "tags": [tags.dumps(n.tags) for n in processes],
        "created_at": [float(n.created_at) for n in processes],
        "details": [details.dumps(codec.submitted_detail(n)) for n in processes],
        "deadline_at": [_float(n.deadline_at) for n in processes],
        "schedule_to_close": [_float(n.schedule_to_close) for n in processes],
        "start_to_close": [_float(n.start_to_close) for n in processes],
        "heartbeat_timeout": [_float(n.heartbeat_timeout) for n in processes],
        "edge_ids": [n.id for n in processes for _ in n.depends_on],
        "edge_deps": [d for n in processes for d in n.depends_on],
        "notify": notify,
    }


def _insert_rows(
    cur: Connection | psycopg.Cursor[tuple[Any, ...]],
    processes: Sequence[NewProcess],
    query: str,
    args: dict[str, Any],
) -> list[Inserted]:
    """The insert itself, in a transaction its caller manages: one multi-row statement
    for the whole batch, and one more when custom ids were already taken. The records
    returned for new processes are built from what was inserted, not read back."""
    rows = cur.execute(Q[query], args).fetchall()
    if query != "process_insert_many":  # every process was inserted, or the statement failed
        return [Inserted(columns.new_process_record(n), "created") for n in processes]
    created = set(rows[0][0] or ())
    taken = [n for n in processes if n.id not in created]
    existing: dict[tuple[str, str | None], Process] = {}
    if taken:
        # A separate statement: it sees the rows this transaction just inserted and those
        # of concurrent submitters that ON CONFLICT waited for.
        rows = cur.execute(
            Q["process_get_by_custom_ids"],
            {
                "client_ids": [n.client_id for n in taken],
                "custom_ids": [n.custom_id for n in taken],
            },
        ).fetchall()
        for p in map(_decode_process, rows):
            existing[(p.client_id, p.custom_id)] = p
    return [_outcome(new, created, existing) for new in processes]


def _outcome(
    new: NewProcess,
    created: set[str],
    existing: Mapping[tuple[str, str | None], Process],
) -> Inserted:
    if new.id in created:
        return Inserted(columns.new_process_record(new), "created")
    found = existing.get((new.client_id, new.custom_id))
    if found is None:  # only a custom id conflict skips an insert
        raise AssertionError(f"process {new.id} was neither inserted nor found")
    if found.id == new.id:  # inserted by a first try whose connection broke after its commit
        return Inserted(found, "created")
    same_submit(found, new, codec.params_json(new))
    return Inserted(found, "existing")


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _readable(conn: Connection) -> bool:
    """True if the server sent something to this idle connection (select, no wait)."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError):  # closed under us
        return True


def _configure(conn: Connection) -> None:
    # codec decodes JSON itself: hand it jsonb (tags) as text, like every other JSON column.
    conn.adapters.register_loader("jsonb", TextLoader)


def _parse_url(url: str) -> tuple[str, dict[str, Any], bool]:
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
        raise UsageError(f"invalid PostgreSQL URL {_redact(url)}: {_one_line(exc)}") from None
    defaults = {"connect_timeout": _CONNECT_TIMEOUT, "application_name": "corral"}
    return conninfo, {k: v for k, v in defaults.items() if k not in given}, notify


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line(exc: BaseException) -> str:
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


def _outage(exc: psycopg.Error) -> bool:
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


def _state(exc: BaseException) -> str:
    """` (SQLSTATE xxxxx)` when the server gave one."""
    state = getattr(exc, "sqlstate", None)
    return f" (SQLSTATE {state})" if state else ""
