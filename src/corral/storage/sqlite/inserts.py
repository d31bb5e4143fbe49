"""Inserts: new processes, their dependency edges, their submitted events and their tags'
rows, in the caller's write transaction.

Two paths. Processes of one submit call (one job, no custom ids, the same options) bind
what they share once per statement, four values per process, and their submitted events
are made by SQL from the rows just inserted. Any other batch (custom ids, several jobs,
options of their own) goes row by row through the custom-id rule (shared.same_submit).
Either way rows go in multi-row statements: one statement for many rows costs about 4 us
less per row than `executemany`, whose every row is one step of the statement.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from corral.model import Process, Status
from corral.storage import codec, columns
from corral.storage.base import Inserted, NewProcess, SubmitShared
from corral.storage.shared import same_submit
from corral.storage.sqlite.reads import get_by_custom_id
from corral.storage.sqlite.sql import Q

#: Above this rowid SQLite picks new rowids at random: the batch's rows are no longer the
#: ones above the largest before it.
_ROWID_LIMIT = 2**62
#: Rows per multi-row INSERT at most. The gain over `executemany` stops growing at a few
#: hundred rows (measured: 100 to 500 alike; a statement binds at most 32,766 values). A
#: batch goes in statements of 256 rows, then of 128, 64... 1 for the rest: at most 9
#: statements of each kind are ever prepared.
_INSERT_CHUNK = 256


def insert_many(
    conn: sqlite3.Connection, processes: Sequence[NewProcess], values: tuple[Any, ...] | None
) -> list[Inserted]:
    """Insert the processes; `values`: what they share (`shared_values`), if anything."""
    if values is not None:
        out = _insert_batch(conn, processes, values)
    else:
        out = _insert_each(conn, processes)
    insert_tags(conn, created_tags(out))
    return out


def created_tags(inserted: Sequence[Inserted]) -> Iterator[tuple[str, Mapping[str, str]]]:
    """The id and tags of each tagged process created (an `existing` one has its tags'
    rows already)."""
    for i in inserted:
        if i.process.tags and i.outcome == "created":
            yield i.process.id, i.process.tags


def insert_tags(conn: sqlite3.Connection, tagged: Iterable[tuple[str, Mapping[str, str]]]) -> None:
    """The corral_tag rows of new processes, (id, tags) each: what `list --tag` finds them
    by (reads.py). Nothing for untagged ones."""
    rows = [v for pid, tags in tagged for key, value in tags.items() for v in (pid, key, value)]
    if rows:
        insert_rows(conn, Q["tag_insert"], rows)


def shared_values(
    processes: Sequence[NewProcess], shared: SubmitShared | None
) -> tuple[Any, ...] | None:
    """What the processes share, in process_insert_shared's order, when they are several
    from one submit call (`shared` given by the App) with no custom id, no dependency and
    no concurrency key; else None. Computed before the write transaction: others wait
    while it is held."""
    if shared is None or len(processes) < 2 or shared.concurrency_limit is not None:
        return None
    if any(n.custom_id is not None or n.depends_on for n in processes):
        return None
    return (
        shared.job, Status.STARTING._value_, shared.queue, shared.client_id,
        codec.dumps(dict(shared.tags)), shared.created_at, shared.deadline_at,
        shared.schedule_to_close, shared.start_to_close, shared.heartbeat_timeout,
    )  # fmt: skip


def _insert_batch(
    conn: sqlite3.Connection, processes: Sequence[NewProcess], shared: tuple[Any, ...]
) -> list[Inserted]:
    """Processes of one submit call: what they share bound once per statement."""
    last_rowid = conn.execute(Q["process_max_rowid"]).fetchone()[0] or 0
    rows: list[Any] = []
    out: list[Inserted] = []
    for new in processes:
        rows.extend((new.id, codec.params_json(new), new.run_at, new.priority))
        out.append(Inserted(columns.new_process_record(new), "created"))
    insert_rows(conn, Q["process_insert_shared"], rows, shared)
    if last_rowid < _ROWID_LIMIT:  # new rows get rowids above every existing one
        detail = codec.dumps(codec.submitted_detail(processes[0]))
        conn.execute(Q["history_insert_submitted"], (detail, last_rowid))
    else:  # near the top SQLite picks rowids at random
        insert_rows(conn, Q["history_insert"], [v for n in processes for v in _event_row(n)])
    _insert_edges(conn, processes)
    return out


def _insert_each(conn: sqlite3.Connection, processes: Sequence[NewProcess]) -> list[Inserted]:
    """Any processes: custom ids (an existing process is returned, a conflict raises),
    several jobs, options of their own."""
    out: list[Inserted] = []
    rows: list[Any] = []  # flat: the values of process_insert, process after process
    events: list[Any] = []  # flat: the values of history_insert
    in_batch: dict[tuple[str, str], Process] = {}
    tags_json = codec.JsonCache()
    for new in processes:
        params = codec.params_json(new)
        if new.custom_id is not None:
            existing = _existing(conn, new, params, in_batch)
            if existing is not None:
                out.append(Inserted(existing, "existing"))
                continue
        process = columns.new_process_record(new)
        if new.custom_id is not None:
            in_batch[(new.client_id, new.custom_id)] = process
        rows.extend((
            new.id, new.job, params, new.status._value_, new.priority, new.queue,
            new.run_at, new.custom_id, new.client_id, tags_json.dumps(new.tags),
            new.created_at, new.created_at, new.deadline_at, new.schedule_to_close,
            new.start_to_close, new.heartbeat_timeout, new.run_at, new.concurrency_key,
            new.concurrency_limit,
        ))  # fmt: skip
        events.extend(_event_row(new))
        out.append(Inserted(process, "created"))
    insert_rows(conn, Q["process_insert"], rows)
    insert_rows(conn, Q["history_insert"], events)
    created = [n for n, i in zip(processes, out, strict=True) if i.outcome == "created"]
    _insert_edges(conn, created)
    return out


def _existing(
    conn: sqlite3.Connection,
    new: NewProcess,
    params: str,
    in_batch: Mapping[tuple[str, str], Process],
) -> Process | None:
    """The process that already holds `new`'s custom id, if it is the same submit;
    CustomIdConflict if it is another job or other parameters."""
    assert new.custom_id is not None
    key = (new.client_id, new.custom_id)
    existing = in_batch.get(key) or get_by_custom_id(conn, *key)
    if existing is not None:
        same_submit(existing, new, params)
    return existing


def _event_row(new: NewProcess) -> tuple[Any, ...]:
    """The values of history_insert for a new process's submitted event."""
    detail = codec.dumps(codec.submitted_detail(new))
    return (new.id, new.created_at, "submitted", None, new.status._value_, 0, detail)


def _insert_edges(conn: sqlite3.Connection, processes: Sequence[NewProcess]) -> None:
    edges = [(n.id, dep) for n in processes for dep in n.depends_on]
    if edges:
        conn.executemany(Q["dependency_insert"], edges)


def insert_rows(
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
