"""How the CLI shows processes, queues, workers and schedules: JSON objects and Rich tables.

What a person reads as a process's status is derived here from the stored process and its
history, without changing what is stored (README, "The command line"):

- `queued`: no worker has touched it yet (never claimed, status `starting`) and it may run;
- `scheduled for T`: it never started and its `run_at` is still ahead;
- `retrying at T`: it started, no worker holds it, and it waits out a retry's backoff or a
  `RetryLater` until T;
- otherwise its stored status (`running`, `completed`, …).

Time: every display is in UTC and says so (`2026-01-31 09:00:00 UTC` in words, ISO 8601 with
`+00:00` in JSON); a `--run-at` without a zone means UTC too (`corral submit --help`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from corral.graph import DependencyRow
from corral.model import Event, Process, Status
from corral.scheduler import ScheduleInfo
from corral.storage.base import ConcurrencySlots, WorkerInfo
from corral.views import attempts, iso, state
from corral.views import edges_json as edges_json
from corral.views import event_json as event_json
from corral.views import process_json as process_json

STATUS_STYLE = {
    Status.WAITING: "dim",
    Status.STARTING: "cyan",
    Status.RUNNING: "blue",
    Status.ENDING: "blue",
    Status.COMPLETED: "green",
    Status.FAILING: "yellow",
    Status.FAILED: "red",
    Status.CANCELED: "magenta",
}

#: The statuses a display may show besides the stored ones (see `state`).
DERIVED_STYLE = {"queued": "cyan", "scheduled": "dim cyan", "retrying": "yellow"}

#: The zone every display uses, and its mark.
ZONE = "UTC"


def when(ts: float | None) -> str:
    """A time for a person, in UTC and marked so: `2026-01-31 09:00:00 UTC`."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S ") + ZONE


def _clock(ts: float | None) -> str:
    """A time in a table whose column header says `(UTC)`."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def state_words(p: Process, now: float, *, compact: bool = False) -> str:
    """What the process is doing, in words; `compact` (a table's cell) gives the time as
    `01-31 09:00:00` under a header that names the zone, rather than whole."""
    word, at = state(p, now)
    if at is not None:
        moment = _short_clock(at) if compact else when(at)
        return f"scheduled for {moment}" if word == "scheduled" else f"retrying at {moment}"
    return word


def state_text(p: Process, now: float, *, compact: bool = False) -> Text:
    word, _ = state(p, now)
    style = DERIVED_STYLE.get(word) or STATUS_STYLE[Status(word)]
    return Text(state_words(p, now, compact=compact), style=style)


def _short_clock(ts: float) -> str:
    """A time in a table's cell: without the year when it is this year's."""
    moment = datetime.fromtimestamp(ts, UTC)
    if moment.year == datetime.now(UTC).year:
        return moment.strftime("%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def progress_text(p: Process) -> str:
    if p.progress_done is None:
        return ""
    if p.progress_total:
        percent = 100 * p.progress_done / p.progress_total
        return f"{p.progress_done:g}/{p.progress_total:g} ({percent:.0f}%)"
    return f"{p.progress_done:g}"


def status_text(status: Status) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def process_table(
    processes: Sequence[Process], now: float, short_ids: Mapping[str, str] | None = None
) -> Table:
    """One row a process, within 80 columns: the short id (what a person types back; never
    cut), the job (cut with an ellipsis past 14 characters: `show` has it whole), what it is
    doing (progress and the attempt fold into it) and when it was created."""
    shorts = short_ids or {}
    table = Table(box=None, header_style="bold", pad_edge=False)
    id_width = max((len(shorts.get(p.id, p.id)) for p in processes), default=2)
    table.add_column("id", no_wrap=True, min_width=id_width)
    table.add_column("job", no_wrap=True, overflow="ellipsis", max_width=14)
    # Its times (scheduled for, retrying at) are in the zone its header names.
    table.add_column(f"status ({ZONE})", no_wrap=True, overflow="ellipsis", max_width=30)
    table.add_column(f"created ({ZONE})", no_wrap=True)
    for p in processes:
        status = state_text(p, now, compact=True)
        extra = []
        if p.progress_done is not None and not p.status.terminal:
            extra.append(progress_short(p))
        if p.attempt > 1 and not p.status.terminal:
            extra.append(f"try {p.attempt}")
        if extra:
            status.append(" " + " ".join(extra), style="dim")
        created = _short_clock(p.created_at)
        table.add_row(shorts.get(p.id, p.id), p.job, status, created)
    return table


def progress_short(p: Process) -> str:
    if p.progress_total:
        return f"{100 * (p.progress_done or 0) / p.progress_total:.0f}%"
    return f"{p.progress_done:g}"


def queue_table(queues: Sequence[Any]) -> Table:
    """One row a queue: paused or not, and its processes by status (statuses with none
    left out)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("queue", "paused", "processes"):
        table.add_column(col, overflow="fold")
    for q in queues:
        counts = ", ".join(f"{n} {s.value}" for s, n in q.counts.items() if n) or "none"
        table.add_row(q.name, "paused" if q.paused else "", counts)
    return table


def worker_state(w: WorkerInfo, now: float, stale_after: float) -> str:
    """`running` while it refreshes its row, `gone` once it stopped doing so: it died, or
    cannot reach the database (its leases then expire, and others take its work over)."""
    return "gone" if now - w.last_seen_at > stale_after else "running"


def worker_json(w: WorkerInfo, now: float, stale_after: float) -> dict[str, Any]:
    return {
        "id": w.owner,
        "state": worker_state(w, now, stale_after),
        "host": w.host,
        "pid": w.pid,
        "app": w.app,
        "jobs": list(w.jobs),
        "queues": None if w.queues is None else list(w.queues),
        "concurrency": w.concurrency,
        "started_at": iso(w.started_at),
        "last_seen_at": iso(w.last_seen_at),
        "running": list(w.running),
    }


def worker_table(workers: Sequence[WorkerInfo], now: float, stale_after: float) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("worker", "state", "app", "queues", "slots", f"started ({ZONE})", "seen"):
        table.add_column(col, overflow="fold")
    for w in workers:
        state_ = worker_state(w, now, stale_after)
        table.add_row(
            f"{w.host}:{w.pid}",
            Text(state_, style="green" if state_ == "running" else "red"),
            w.app,
            ", ".join(w.queues) if w.queues is not None else "all",
            f"{len(w.running)}/{w.concurrency}",
            _clock(w.started_at),
            f"{max(now - w.last_seen_at, 0):.0f}s ago",
        )
    return table


def schedule_json(s: ScheduleInfo) -> dict[str, Any]:
    schedule = s.schedule
    return {
        "job": s.job,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "missed": schedule.missed.value,
        "catch_up_limit": schedule.late_limit or None,
        "overlap": schedule.overlap.value,
        "last_run_at": iso(s.last_occurrence),
        "last_process_id": s.last_process_id,
        "last_status": None if s.last_status is None else s.last_status.value,
        "next_run_at": iso(s.next_run),
    }


def schedule_table(schedules: Sequence[ScheduleInfo], short_ids: Mapping[str, str]) -> Table:
    """One row a schedule, within 80 columns for the usual crons and zones: its job, cron
    and zone, its last run (the occurrence and its process's short id) and its next run.
    The policies and the last process's status are in `--json`."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("job", overflow="fold")
    table.add_column("cron", no_wrap=True)
    table.add_column("zone", no_wrap=True)
    table.add_column(f"last run ({ZONE})", no_wrap=True)
    table.add_column(f"next run ({ZONE})", no_wrap=True)
    for s in schedules:
        last = "never"
        if s.last_occurrence is not None:
            last = _short_clock(s.last_occurrence)
        if s.last_process_id is not None:
            last += f" {short_ids.get(s.last_process_id, s.last_process_id)}"
        table.add_row(s.job, s.schedule.cron, s.schedule.timezone, last, _short_clock(s.next_run))
    return table


def _detail(e: Event) -> str:
    detail = dict(e.detail)
    if e.kind == "error":
        return f"{detail.get('type')}: {detail.get('message')}"
    return ", ".join(f"{k}={v}" for k, v in detail.items() if v is not None)


def show_process(
    console: Console,
    p: Process,
    history: Sequence[Event],
    now: float,
    slots: ConcurrencySlots | None = None,
    dependencies: Sequence[DependencyRow] = (),
    dependents: Sequence[str] = (),
) -> None:
    """`corral show`; `slots`: the process's concurrency key, if it has one; its
    dependencies (with their statuses) and dependents, if it is part of a task graph."""
    fields = _fields(p, history, now, slots)
    if dependencies:
        fields.add_row("depends on", "\n".join(f"{d.id} {d.status.value}" for d in dependencies))
    if dependents:
        fields.add_row("dependents", "\n".join(dependents))
    parts: list[Any] = [fields, Text(""), _timeline(history)]
    if p.error is not None and p.error.traceback:
        parts += [Text(""), Text(p.error.traceback.rstrip(), style="dim")]
    console.print(Panel(Group(*parts), title=p.id, title_align="left"))


def _fields(
    p: Process, history: Sequence[Event], now: float, slots: ConcurrencySlots | None
) -> Table:
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    fields.add_row("job", p.job)
    fields.add_row("status", state_text(p, now))
    if p.cancel_requested and not p.status.terminal:
        fields.add_row("", Text("cancel requested", style="magenta"))
    fields.add_row("queue", p.queue)
    fields.add_row("priority", f"{p.priority} (higher runs first)")
    if p.tags:
        fields.add_row("tags", " ".join(f"{k}={v}" for k, v in sorted(p.tags.items())))
    fields.add_row("run at", when(p.run_at))
    if slots is not None:
        held = f"{len(slots.holders)} of {slots.limit} slots held now"
        fields.add_row("concurrency", f"key {slots.key!r}: {held}")
    if p.leased:
        held = "until" if (p.lease_expires_at or 0) > now else "expired at"
        fields.add_row("lease", f"held by {p.lease_owner} {held} {when(p.lease_expires_at)}")
    fields.add_row("params", json.dumps(p.params))
    fields.add_row("store", json.dumps(p.store))
    if p.progress_done is not None:
        fields.add_row("progress", progress_text(p))
    if p.status is Status.COMPLETED:
        fields.add_row("result", json.dumps(p.result))
    if p.error is not None:
        fields.add_row("error", Text(f"{p.error.type}: {p.error.message}", style="red"))
        fields.add_row("reason", p.error.reason)
    if p.status.terminal:
        took = attempts(history)
        fields.add_row(
            "attempts", f"{took} (the most tries one iteration took)" if took else "0 (never ran)"
        )
    elif p.attempt:
        fields.add_row("attempt", str(p.attempt))
    optional = (
        ("custom id", p.custom_id),
        ("client id", p.client_id or None),
        ("created", when(p.created_at)),
        ("updated", when(p.updated_at)),
        ("finished", when(p.finished_at) or None),
    )
    for label, value in optional:
        if value is not None:
            fields.add_row(label, value)
    return fields


def _timeline(history: Sequence[Event]) -> Table:
    timeline = Table(box=None, header_style="bold", title="history", title_justify="left")
    for col in (f"at ({ZONE})", "event", "status", "attempt", "detail"):
        timeline.add_column(col)
    for e in history:
        move = ""
        if e.to_status is not None and e.from_status != e.to_status:
            move = f"{e.from_status.value if e.from_status else ''} → {e.to_status.value}"
        elif e.from_status is not None:
            move = e.from_status.value
        timeline.add_row(_clock(e.at), e.kind, move, str(e.attempt or ""), _detail(e))
    return timeline
