"""The embedded backend: one SQLite file in WAL mode, or a private in-memory database.

Within a process every thread shares one connection behind a lock: SQLite runs one
writer at a time anyway, and the worker's handlers never touch the database
themselves. Several processes on one machine coordinate through SQLite's own file
locks: every write is a `BEGIN IMMEDIATE` transaction, so a claim is atomic.

Idle workers wait on `PRAGMA data_version` of a second connection: it changes when
any other connection commits, and reading it costs no disk I/O.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from corral.errors import CustomIdConflict, StorageError, UsageError
from corral.model import CLAIMABLE, Change, Event, Process
from corral.storage import codec
from corral.storage.base import (
    Claim,
    Claimed,
    Inserted,
    IterationCommit,
    NewProcess,
    ProcessFilter,
    Renewal,
    Storage,
    TimedOut,
)
from corral.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

try:  # Linux only: elsewhere idle workers poll
    import inotify_simple
except ImportError:  # pragma: no cover - not Linux
    inotify_simple = None

log = logging.getLogger("corral.storage.sqlite")

_CLAIMABLE_SQL = ", ".join(f"'{s.value}'" for s in CLAIMABLE)
_COLS = codec.PROCESS_COLUMNS

# Expired leases first (DESIGN §3 class 1): few rows, found by the lease index. Named,
# because SQLite's planner otherwise prefers corral_process_status and walks every
# runnable row (milliseconds per claim with 20,000 queued).
_SELECT_EXPIRED = f"""
SELECT id, lease_owner FROM corral_process {{leased}}
WHERE lease_expires_at IS NOT NULL AND lease_expires_at < ?
  AND status IN ({_CLAIMABLE_SQL}) {{queues}}
ORDER BY priority DESC, run_at LIMIT ?
"""
# Then unleased runnable rows by claim_rank (classes 2 to 6), priority, run_at: one
# ordered walk of the partial index `corral_process_runnable`.
_SELECT_RUNNABLE = f"""
SELECT id, NULL FROM corral_process {{indexed}}
WHERE status IN ({_CLAIMABLE_SQL}) AND lease_expires_at IS NULL
  AND run_at <= ? {{queues}}
ORDER BY claim_rank, priority DESC, run_at LIMIT ?
"""


_INSERT_PROCESS = (
    f"INSERT INTO corral_process ({_COLS}) VALUES "
    "(?, ?, ?, ?, '{}', NULL, NULL, NULL, NULL, ?, ?, ?, 0, NULL, 0, NULL, 0, "
    "NULL, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, ?, NULL, NULL)"
)
_INSERT_HISTORY = (
    f"INSERT INTO corral_history ({codec.HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# A worker's commit: fenced by the lease token, and it gives the lease back.
_COMMIT = (
    "UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?, "
    "progress_done = ?, progress_total = ?, run_at = ?, attempt = ?, "
    "stopped_status = ?, finished_at = ?, iteration_since = ?, "
    "lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL, "
    "heartbeat_at = NULL, updated_at = ?, version = version + 1 "
    "WHERE id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL"
)

# Each timeout of DESIGN §6 by the index that finds it; the sweep runs this now and then.
# schedule_to_close names its index: the planner preferred corral_process_status, i.e. a
# walk of every queued process on each sweep.
_SELECT_TIMED_OUT = f"""
SELECT * FROM (
  SELECT {_COLS}, 'process_timeout' FROM corral_process
  WHERE deadline_at IS NOT NULL AND finished_at IS NULL AND deadline_at < :now
    AND status NOT IN ('failing', 'completed', 'failed', 'canceled')
  UNION ALL
  SELECT {_COLS}, 'schedule_to_close' FROM corral_process
  INDEXED BY corral_process_schedule_to_close
  WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL
    AND status IN ({_CLAIMABLE_SQL}) AND iteration_since + schedule_to_close < :now
  UNION ALL
  SELECT {_COLS}, 'start_to_close' FROM corral_process
  WHERE lease_expires_at IS NOT NULL AND start_to_close IS NOT NULL
    AND claimed_at + start_to_close < :now
  UNION ALL
  SELECT {_COLS}, 'heartbeat_timeout' FROM corral_process
  WHERE lease_expires_at IS NOT NULL AND heartbeat_timeout IS NOT NULL
    AND heartbeat_at + heartbeat_timeout < :now
) LIMIT :limit
"""


class SQLiteStorage(Storage):
    def __init__(self, url: str, path: str | None, *, migrate: bool = True) -> None:
        self.url = url
        self.path = path  # None: a private in-memory database
        self._lock = threading.RLock()
        self._changed = threading.Condition()
        self._local_changes = 0
        self._conn = self._connect()
        self._turn_fd = self._open_turn_file()
        self._watch: sqlite3.Connection | None = None
        self._watcher: _WalWatcher | Literal[False] | None = None
        self._data_version = -1
        if migrate:
            self.migrate()

    # --- connections ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        target = self.path or ":memory:"
        if self.path is not None:
            parent = Path(self.path).resolve().parent
            if not parent.is_dir():
                raise StorageError(
                    f"cannot open the SQLite database {self.path}: directory {parent} does "
                    "not exist"
                )
        try:
            conn = sqlite3.connect(
                target, isolation_level=None, check_same_thread=False, timeout=60.0
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            if self.path is not None:
                conn.execute("PRAGMA journal_mode = WAL")
            # Durable by default: a commit survives power loss, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
            # Checkpoint every ~40 MB of WAL, not SQLite's 4 MB: the pages a worker rewrites
            # in every transaction (index roots, the newest leaves) are copied back once per
            # checkpoint, and a checkpoint runs inside a commit, holding the writers' lock.
            # Two workers draining no-op jobs: ~8,900 -> ~9,500 jobs/s.
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"cannot open the SQLite database {self.path}: {exc}"
            ) from None
        return conn

    def _open_turn_file(self) -> int | None:
        if self.path is None:
            return None  # private in-memory database: one connection, self._lock suffices
        try:
            fd = os.open(f"{self.path}-corral-lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(
                f"cannot open the SQLite database {self.path}: lock file: {exc}"
            ) from None
        try:  # a file system without flock(): SQLite's own lock and busy timeout suffice
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            pass  # a writer holds it right now: flock works
        except OSError as exc:
            log.debug("no flock() on %s (%s): writers use SQLite's busy timeout", self.path, exc)
            os.close(fd)
            return None
        return fd

    @contextmanager
    def _write(self, *, wakes: bool = True, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first statement.
        `wakes`: the write may create work, so local waiters are woken after it.
        `durable=False`: commit without waiting for the disk (synchronous=NORMAL): for
        leases only (claims, renewals, the sweep's leadership). A power loss or an OS crash
        may then forget the newest of them, but it also stops every worker on this
        machine, the only ones a SQLite file has: a forgotten lease was held by a dead
        worker, and the process is claimed again, as after any crash. Every write of a
        process's outcome stays durable, and its fsync covers the leases before it."""
        with self._lock, self._writer_turn():
            conn = self._conn
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")
        if wakes:
            self.notify_local()

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Queue for the write lock on a kernel file lock beside the database.

        Two corral processes writing one file would otherwise meet SQLite's busy handler,
        which sleeps 1, 2, 5, 10... ms between tries: with a worker's short transactions
        most of a waiting writer's time was sleep. A blocked flock() wakes the moment the
        holder lets go, and the kernel drops it if the holder dies. Other programs writing
        the database still coordinate through SQLite's own lock and busy timeout.
        """
        fd = self._turn_fd
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._watch is not None:
                self._watch.close()
            if self._watcher:
                self._watcher.stop()
            if self._turn_fd is not None:
                os.close(self._turn_fd)
                self._turn_fd = None

    # --- schema --------------------------------------------------------------------------
    def migrate(self) -> int:
        try:
            with self._write(wakes=False) as conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS corral_schema_version (version INTEGER NOT NULL)"
                )
                row = conn.execute("SELECT max(version) FROM corral_schema_version").fetchone()
                current = row[0] or 0
                if current > SCHEMA_VERSION:
                    raise StorageError(
                        f"the database {self.url} has schema version {current}, newer than "
                        f"this corral ({SCHEMA_VERSION}); upgrade corral"
                    )
                for version, script in MIGRATIONS:
                    if version > current:
                        for statement in script.split(";\n"):
                            if statement.strip():
                                conn.execute(statement)
                        conn.execute("INSERT INTO corral_schema_version VALUES (?)", (version,))
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot use the SQLite database {self.url}: {exc}") from None
        return SCHEMA_VERSION

    # --- processes -----------------------------------------------------------------------
    def process_insert_many(
        self, processes: Sequence[NewProcess], *, connection: object | None = None
    ) -> list[Inserted]:
        if connection is not None:
            raise UsageError("transactional enqueue needs the PostgreSQL backend")
        shared = _shared_values(processes)
        with self._write() as conn:
            if shared is not None:
                return self._insert_batch(conn, processes, shared)
            return self._insert_each(conn, processes)

    def _insert_batch(
        self, conn: sqlite3.Connection, processes: Sequence[NewProcess], shared: tuple[Any, ...]
    ) -> list[Inserted]:
        """Processes of one submit call (one job, no custom ids, the same options): what
        they share is bound once per statement, four values per process; their submitted
        events are made by SQL from the rows just inserted."""
        last_rowid = conn.execute("SELECT max(rowid) FROM corral_process").fetchone()[0] or 0
        rows: list[Any] = []
        out: list[Inserted] = []
        for new in processes:
            rows.extend((new.id, codec.params_json(new), new.run_at, new.priority))
            out.append(Inserted(codec.new_process_record(new), "created"))
        _insert_rows(conn, _INSERT_SHARED, rows, shared)
        if last_rowid < _ROWID_LIMIT:  # new rows get rowids above every existing one
            detail = codec.dumps(codec.submitted_detail(processes[0]))
            conn.execute(_INSERT_SUBMITTED, (detail, last_rowid))
        else:  # near the top SQLite picks rowids at random
            _insert_rows(conn, _INSERT_HISTORY, [v for n in processes for v in _event_row(n)])
        _insert_edges(conn, processes)
        return out

    def _insert_each(
        self, conn: sqlite3.Connection, processes: Sequence[NewProcess]
    ) -> list[Inserted]:
        """Any processes: custom ids (an existing process is returned, a conflict raises),
        several jobs, options of their own."""
        out: list[Inserted] = []
        rows: list[Any] = []  # flat: the values of _INSERT_PROCESS, process after process
        events: list[Any] = []  # flat: the values of _INSERT_HISTORY
        in_batch: dict[tuple[str, str], Process] = {}
        tags_json = codec.JsonCache()
        for new in processes:
            params = codec.params_json(new)
            if new.custom_id is not None:
                existing = self._existing(conn, new, params, in_batch)
                if existing is not None:
                    out.append(Inserted(existing, "existing"))
                    continue
            process = codec.new_process_record(new)
            if new.custom_id is not None:
                in_batch[(new.client_id, new.custom_id)] = process
            rows.extend((
                new.id, new.job, params, new.status._value_, new.priority, new.queue,
                new.run_at, new.custom_id, new.client_id, tags_json.dumps(new.tags),
                new.created_at, new.created_at, new.deadline_at, new.schedule_to_close,
                new.start_to_close, new.heartbeat_timeout, new.run_at,
            ))  # fmt: skip
            events.extend(_event_row(new))
            out.append(Inserted(process, "created"))
        _insert_rows(conn, _INSERT_PROCESS, rows)
        _insert_rows(conn, _INSERT_HISTORY, events)
        created = [n for n, i in zip(processes, out, strict=True) if i.outcome == "created"]
        _insert_edges(conn, created)
        return out

    def _existing(
        self,
        conn: sqlite3.Connection,
        new: NewProcess,
        params: str,
        in_batch: Mapping[tuple[str, str], Process],
    ) -> Process | None:
        """The process that already holds `new`'s custom id, if it is the same submit;
        CustomIdConflict if it is another job or other parameters."""
        assert new.custom_id is not None
        key = (new.client_id, new.custom_id)
        existing = in_batch.get(key) or self._get_by_custom_id(conn, *key)
        if existing is not None and (
            existing.job != new.job or codec.dumps(existing.params) != params
        ):
            raise CustomIdConflict(
                f"custom id {new.custom_id!r} already names process "
                f"{existing.id} of job {existing.job!r} with other parameters"
            )
        return existing

    def _get_by_custom_id(
        self, conn: sqlite3.Connection, client_id: str, custom_id: str
    ) -> Process | None:
        row = conn.execute(
            f"SELECT {_COLS} FROM corral_process WHERE client_id = ? AND custom_id = ?",
            (client_id, custom_id),
        ).fetchone()
        return None if row is None else codec.process_from_row(row)

    def _get(self, conn: sqlite3.Connection, process_id: str) -> Process | None:
        row = conn.execute(
            f"SELECT {_COLS} FROM corral_process WHERE id = ?", (process_id,)
        ).fetchone()
        return None if row is None else codec.process_from_row(row)

    def process_get(self, process_id: str) -> Process | None:
        with self._read() as conn:
            return self._get(conn, process_id)

    def process_list(self, where: ProcessFilter) -> list[Process]:
        clauses: list[str] = []
        args: list[Any] = []
        if where.status is not None:
            clauses.append("status = ?")
            args.append(where.status.value)
        if where.job is not None:
            clauses.append("job = ?")
            args.append(where.job)
        for key, value in (where.tags or {}).items():
            # As `tags @> {key: value}` on PostgreSQL, for any key: a JSON path would need
            # the key quoted, and SQLite's paths cannot quote a key holding `"`.
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(corral_process.tags) "
                "WHERE key = ? AND type = 'text' AND value = ?)"
            )
            args.extend((key, value))
        sql = f"SELECT {_COLS} FROM corral_process"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        order = "DESC" if where.newest_first else "ASC"
        sql += f" ORDER BY created_at {order}, id {order} LIMIT ?"
        args.append(where.limit)
        with self._read() as conn:
            return [codec.process_from_row(r) for r in conn.execute(sql, args)]

    # Claims and commits do their Python work (JSON, building records) outside the write
    # transaction: other processes wait for SQLite's one write lock while it is held.
    def process_claim(self, claim: Claim) -> list[Claimed]:
        with self._write(wakes=False, durable=False) as conn:
            chosen = self._claim(conn, claim)
        return _claimed(chosen)

    def process_commit_many(self, commits: Sequence[IterationCommit]) -> list[str]:
        rows = _commit_rows(commits)
        with self._write() as conn:
            return self._commit(conn, rows)

    def process_commit_and_claim(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        # One transaction, so one fsync of the WAL, for a worker's whole exchange.
        rows = _commit_rows(commits)
        with self._write(wakes=bool(commits), durable=bool(commits)) as conn:
            lost = self._commit(conn, rows)
            chosen = self._claim(conn, claim)
        return lost, _claimed(chosen)

    def _claim(self, conn: sqlite3.Connection, claim: Claim) -> _Chosen:
        """Lease the processes to claim; their rows, and the previous owner of each."""
        paused = {r[0] for r in conn.execute("SELECT queue FROM corral_paused_queue")}
        if "*" in paused:
            return [], {}
        filters, fargs = _queue_filter(claim, paused)
        chosen: list[tuple[str, str | None]] = []
        for template, most in ((_SELECT_EXPIRED, claim.max_recovered), (_SELECT_RUNNABLE, None)):
            need = claim.limit - len(chosen)
            if most is not None:
                need = min(need, most)
            if need <= 0:
                continue
            # Driving one named process needs no ordered walk of the runnable index.
            by_index = not claim.process_ids
            sql = template.format(
                queues=filters,
                indexed="INDEXED BY corral_process_runnable" if by_index else "",
                leased="INDEXED BY corral_process_leased" if by_index else "",
            )
            chosen.extend((r[0], r[1]) for r in conn.execute(sql, (claim.now, *fargs, need)))
        if not chosen:
            return [], {}
        previous = dict(chosen)
        marks = ", ".join("?" * len(chosen))
        rows = conn.execute(
            "UPDATE corral_process SET lease_owner = ?, lease_token = lease_token + 1, "
            "lease_expires_at = ?, attempt = attempt + 1, updated_at = ?, claimed_at = ?, "
            f"heartbeat_at = ?, version = version + 1 WHERE id IN ({marks}) "
            f"RETURNING {_COLS}",
            (claim.owner, claim.now + claim.lease_seconds, claim.now, claim.now, claim.now,
             *previous),
        ).fetchall()  # fmt: skip
        return rows, previous

    def _commit(self, conn: sqlite3.Connection, commits: _CommitRows) -> list[str]:
        lost: list[str] = []
        events: list[tuple[Any, ...]] = []
        for process_id, values, rows in commits:
            if conn.execute(_COMMIT, values).rowcount != 1:
                lost.append(process_id)
            else:
                events.extend(rows)
        if events:
            conn.executemany(_INSERT_HISTORY, events)
        return lost

    def process_update(
        self,
        process_id: str,
        expected_version: int,
        change: Change,
        now: float,
        *,
        revoke_lease: bool = False,
    ) -> bool:
        revoke = (
            ", lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL, "
            "heartbeat_at = NULL, lease_token = lease_token + 1"
            if revoke_lease
            else ""
        )
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?, "
                "progress_done = ?, progress_total = ?, run_at = ?, attempt = ?, "
                "stopped_status = ?, finished_at = ?, iteration_since = ?, "
                f"cancel_requested = ?, updated_at = ?, version = version + 1{revoke} "
                "WHERE id = ? AND version = ?",
                (
                    *_change_values(change),
                    int(change.cancel_requested),
                    now,
                    process_id,
                    expected_version,
                ),
            )
            if cur.rowcount != 1:
                return False
            self._append(conn, change.events, process_id)
        return True

    def process_prune(self, finished_before: float) -> int:
        with self._write() as conn:
            doomed = (
                "SELECT id FROM corral_process WHERE finished_at IS NOT NULL AND finished_at < ?"
            )
            conn.execute(
                f"DELETE FROM corral_history WHERE process_id IN ({doomed})", (finished_before,)
            )
            conn.execute(
                f"DELETE FROM corral_dependency WHERE process_id IN ({doomed})", (finished_before,)
            )
            cur = conn.execute(
                "DELETE FROM corral_process WHERE finished_at IS NOT NULL AND finished_at < ?",
                (finished_before,),
            )
            return cur.rowcount

    # --- leases --------------------------------------------------------------------------
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
        held: set[str] = set()
        cancel: set[str] = set()
        beats = heartbeats or {}
        with self._write(wakes=False, durable=False) as conn:
            for pid, token in tokens.items():
                row = conn.execute(
                    "UPDATE corral_process SET lease_expires_at = ?, "
                    "heartbeat_at = coalesce(?, heartbeat_at) WHERE id = ? "
                    "AND lease_token = ? AND lease_owner = ? AND lease_expires_at IS NOT NULL "
                    "RETURNING cancel_requested",
                    (now + lease_seconds, beats.get(pid), pid, token, owner),
                ).fetchone()
                if row is not None:
                    held.add(pid)
                    if row[0]:
                        cancel.add(pid)
        return Renewal(frozenset(set(tokens) - held), frozenset(cancel))

    def lease_release_many(self, tokens: Mapping[str, int], now: float) -> list[str]:
        released = []
        with self._write() as conn:
            for pid, token in tokens.items():
                row = conn.execute(
                    "UPDATE corral_process SET lease_owner = NULL, lease_expires_at = NULL, "
                    "attempt = max(attempt - 1, 0), updated_at = ?, version = version + 1 "
                    "WHERE id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL "
                    "RETURNING status, attempt",
                    (now, pid, token),
                ).fetchone()
                if row is not None:
                    released.append(pid)
                    self._append(conn, [Event("released", now, None, None, row[1])], pid)
        return released

    def leader_acquire(self, name: str, owner: str, now: float, ttl: float) -> bool:
        with self._write(wakes=False, durable=False) as conn:
            row = conn.execute(
                "INSERT INTO corral_leader (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at "
                "WHERE corral_leader.owner = excluded.owner OR corral_leader.expires_at < ? "
                "RETURNING owner",
                (name, owner, now + ttl, now),
            ).fetchone()
        return row is not None

    def process_timed_out(self, now: float, limit: int) -> list[TimedOut]:
        with self._read() as conn:
            rows = conn.execute(_SELECT_TIMED_OUT, {"now": now, "limit": limit}).fetchall()
        return [TimedOut(codec.process_from_row(r[:-1]), r[-1]) for r in rows]

    # --- history -------------------------------------------------------------------------
    def _append(
        self, conn: sqlite3.Connection, events: Sequence[Event], process_id: str | None = None
    ) -> None:
        if events:
            conn.executemany(_INSERT_HISTORY, [codec.event_to_row(e, process_id) for e in events])

    def history_list(self, process_id: str) -> list[Event]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {codec.HISTORY_COLUMNS} FROM corral_history WHERE process_id = ? "
                "ORDER BY id",
                (process_id,),
            )
            return [codec.event_from_row(r) for r in rows]

    def history_append(self, events: Sequence[Event]) -> None:
        with self._write(wakes=False) as conn:
            self._append(conn, events)

    # --- queues --------------------------------------------------------------------------
    def queue_pause(self, queue: str, paused: bool) -> None:
        with self._write() as conn:
            if paused:
                conn.execute("INSERT OR IGNORE INTO corral_paused_queue VALUES (?)", (queue,))
            elif queue == "*":
                conn.execute("DELETE FROM corral_paused_queue")
            else:
                conn.execute("DELETE FROM corral_paused_queue WHERE queue = ?", (queue,))

    def queue_paused(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT queue FROM corral_paused_queue ORDER BY 1")]

    # --- wake-ups ------------------------------------------------------------------------
    def notify_local(self) -> None:
        with self._changed:
            self._local_changes += 1
            self._changed.notify_all()

    def wait_for_change(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = self._local_changes
        # How often data_version is read while idle (no disk I/O, no lock): often when
        # nothing else tells us of other processes' commits, rarely (a safety net) when
        # the file watcher does.
        step = _POLL_WATCHED if self._file_watcher() else _POLL
        while True:
            if self._other_connection_wrote():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait_for(
                    lambda: self._local_changes != seen, timeout=min(remaining, step)
                )
                if self._local_changes != seen:
                    return True

    def _file_watcher(self) -> bool:
        """Start, once, a thread that wakes local waiters when another process writes
        the database: inotify on its directory, for the WAL file (Linux). False when
        there is none (in-memory, other systems, no inotify): then waiters poll."""
        if self._watcher is None:
            self._watcher = _WalWatcher.start(self.path, self.notify_local) or False
        return self._watcher is not False and self._watcher.alive

    def _other_connection_wrote(self) -> bool:
        if self.path is None:
            return False  # a private in-memory database has no other connection
        if self._watch is None:
            self._watch = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        changed = self._data_version not in (-1, version)
        self._data_version = version
        return bool(changed)


#: Idle wait between reads of data_version, without and with a file watcher (seconds).
_POLL = 0.002
_POLL_WATCHED = 0.05


class _WalWatcher:
    """A daemon thread blocked on inotify, calling `wake` when the database's WAL (or the
    database file) is written: another process committed, so there may be work. Waking
    costs one read of data_version; an idle worker costs nothing between commits."""

    def __init__(self, inotify: Any, names: set[str], wake: Callable[[], None]) -> None:
        self._inotify = inotify
        self._names = names
        self._wake = wake
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="corral-sqlite-watch", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, path: str | None, wake: Callable[[], None]) -> _WalWatcher | None:
        if path is None or inotify_simple is None:
            return None
        target = Path(path).resolve()
        try:
            inotify = inotify_simple.INotify()
            # The directory, not the WAL file: SQLite deletes and recreates that file.
            inotify.add_watch(
                str(target.parent), inotify_simple.flags.MODIFY | inotify_simple.flags.CREATE
            )
        except OSError as exc:  # e.g. the per-user limit of watches: fall back to polling
            log.debug("no inotify on %s (%s): idle waits poll", target.parent, exc)
            return None
        return cls(inotify, {target.name, f"{target.name}-wal"}, wake)

    def _run(self) -> None:
        try:
            while not self._stopped:
                # A timeout so that stop() is seen; no event: nothing to do.
                events = self._inotify.read(timeout=200)
                if any(e.name in self._names for e in events) and not self._stopped:
                    self._wake()
        except OSError as exc:  # the watch is gone (directory removed...): waiters poll
            log.debug("inotify watch ended: %s", exc)
        finally:
            self._inotify.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to end (within its 200 ms read timeout; it closes the inotify
        descriptor itself) without waiting for it: closing a storage stays instant."""
        self._stopped = True


# A submit call's processes: the values they share bound once (?1 to ?10, then four per
# process), and the rest of the columns as _INSERT_PROCESS writes them.
_INSERT_SHARED = (
    "INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, custom_id, "
    "client_id, tags, created_at, updated_at, deadline_at, schedule_to_close, start_to_close, "
    "heartbeat_timeout, iteration_since, store, attempt, lease_token, cancel_requested, "
    "version) SELECT column1, ?1, column2, ?2, column4, ?3, column3, NULL, ?4, ?5, ?6, ?6, ?7, "
    "?8, ?9, ?10, column3, '{}', 0, 0, 0, 0 FROM (VALUES (?, ?, ?, ?))"
)
# The submitted events of the processes just inserted (rowids above the largest before),
# in their order, all with the same detail.
_INSERT_SUBMITTED = (
    f"INSERT INTO corral_history ({codec.HISTORY_COLUMNS}) "
    "SELECT id, created_at, 'submitted', NULL, status, 0, ? FROM corral_process "
    "WHERE rowid > ? ORDER BY rowid"
)
_ROWID_LIMIT = 2**62
#: Rows per multi-row INSERT at most. One statement for many rows costs about 4 us less per
#: row than `executemany` (whose every row is one step of the statement), and the gain stops
#: growing at a few hundred rows (measured: 100 to 500 alike; a statement binds at most
#: 32,766 values). A batch goes in statements of 256 rows, then of 128, 64... 1 for the
#: rest: at most 9 statements of each kind are ever prepared.
_INSERT_CHUNK = 256


def _shared_values(processes: Sequence[NewProcess]) -> tuple[Any, ...] | None:
    """What the processes share, in _INSERT_SHARED's order, when they are several from one
    submit call (one job, no custom id, no dependency, the same options); else None."""
    if len(processes) < 2:
        return None
    first = processes[0]
    key = _shared_key(first)
    if first.custom_id is not None or first.depends_on:
        return None
    if not all(_shared_key(n) == key for n in processes):
        return None
    return (
        first.job, first.status._value_, first.queue, first.client_id,
        codec.dumps(dict(first.tags)), first.created_at, first.deadline_at,
        first.schedule_to_close, first.start_to_close, first.heartbeat_timeout,
    )  # fmt: skip


def _shared_key(n: NewProcess) -> tuple[Any, ...]:
    return (
        n.job, n.status, n.queue, n.client_id, n.tags, n.created_at, n.deadline_at,
        n.schedule_to_close, n.start_to_close, n.heartbeat_timeout, n.custom_id, n.depends_on,
    )  # fmt: skip


def _event_row(new: NewProcess) -> tuple[Any, ...]:
    """The values of _INSERT_HISTORY for a new process's submitted event."""
    detail = codec.dumps(codec.submitted_detail(new))
    return (new.id, new.created_at, "submitted", None, new.status._value_, 0, detail)


def _insert_edges(conn: sqlite3.Connection, processes: Sequence[NewProcess]) -> None:
    edges = [(n.id, dep) for n in processes for dep in n.depends_on]
    if edges:
        conn.executemany(
            "INSERT INTO corral_dependency (process_id, depends_on) VALUES (?, ?)", edges
        )


def _insert_rows(
    conn: sqlite3.Connection, one_row: str, flat: Sequence[Any], shared: Sequence[Any] = ()
) -> None:
    """Insert rows given as one flat list of values, row after row, with `one_row`, an
    INSERT of one row whose last `(?, ...)` is the row; `shared`: the values bound before
    the rows' in every statement."""
    width = one_row[one_row.rindex("(?") :].count("?")
    count = len(flat) // width
    done, size = 0, _INSERT_CHUNK
    while done < count:
        while size > count - done:
            size //= 2
        values = flat[done * width : (done + size) * width]
        conn.execute(_multi_row(one_row, size), [*shared, *values] if shared else values)
        done += size


@functools.cache
def _multi_row(one_row: str, rows: int) -> str:
    """`one_row` with its last `(...)` group repeated for `rows` rows."""
    start = one_row.rindex("(?")
    end = one_row.index(")", start) + 1
    return f"{one_row[:start]}{', '.join([one_row[start:end]] * rows)}{one_row[end:]}"


#: Claimed rows and, per process id, the owner of the lease it had (None: unleased).
_Chosen = tuple[list[Any], dict[str, str | None]]
#: Per commit: process id, the UPDATE's parameters, the history rows if it lands.
_CommitRows = list[tuple[str, tuple[Any, ...], list[tuple[Any, ...]]]]


def _claimed(chosen: _Chosen) -> list[Claimed]:
    rows, previous = chosen
    claimed = []
    for row in rows:
        process = codec.process_from_row(row)
        owner = previous[process.id]
        claimed.append(Claimed(process, process.lease_token, owner is not None, owner))
    # Keep DESIGN §3 order for the caller: recovered first, then as selected.
    order = {pid: i for i, pid in enumerate(previous)}
    claimed.sort(key=lambda c: order[c.process.id])
    return claimed


def _commit_rows(commits: Sequence[IterationCommit]) -> _CommitRows:
    return [
        (
            commit.process_id,
            (*_change_values(commit.change), commit.now, commit.process_id, commit.token),
            [codec.event_to_row(e, commit.process_id) for e in commit.change.events],
        )
        for commit in commits
    ]


def _change_values(c: Change) -> tuple[Any, ...]:
    return (
        c.status.value,
        codec.dumps(c.store),
        codec.dumps(c.result),
        codec.error_dumps(c.error),
        c.progress_done,
        c.progress_total,
        c.run_at,
        c.attempt,
        c.stopped_status.value if c.stopped_status else None,
        c.finished_at,
        c.iteration_since,
    )


def _queue_filter(claim: Claim, paused: set[str]) -> tuple[str, list[Any]]:
    sql = ""
    args: list[Any] = []
    if claim.process_ids is not None:
        sql += f" AND id IN ({', '.join('?' * len(claim.process_ids))})"
        args.extend(claim.process_ids)
    if claim.queues is not None:
        sql += f" AND queue IN ({', '.join('?' * len(claim.queues))})"
        args.extend(claim.queues)
    if claim.jobs is not None:
        sql += f" AND job IN ({', '.join('?' * len(claim.jobs))})"
        args.extend(claim.jobs)
    if paused:
        sql += f" AND queue NOT IN ({', '.join('?' * len(paused))})"
        args.extend(sorted(paused))
    return sql, args
