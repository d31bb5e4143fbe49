"""How the CLI shows processes: JSON objects (DESIGN §10) and Rich tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from corral.model import Event, Process, Status

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


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def process_json(p: Process, history: Sequence[Event] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.id,
        "job": p.job,
        "params": p.params,
        "status": p.status.value,
        "store": p.store,
        "result": p.result,
        "error": p.error.to_json() if p.error else None,
        "progress": {"done": p.progress_done, "total": p.progress_total},
        "attempt": p.attempt,
        "priority": p.priority,
        "queue": p.queue,
        "run_at": iso(p.run_at),
        "cancel_requested": p.cancel_requested,
        "custom_id": p.custom_id,
        "client_id": p.client_id,
        "tags": p.tags,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "finished_at": iso(p.finished_at),
    }
    if history is not None:
        out["history"] = [event_json(e) for e in history]
    return out


def event_json(e: Event) -> dict[str, Any]:
    return {
        "at": iso(e.at),
        "kind": e.kind,
        "from": e.from_status.value if e.from_status else None,
        "to": e.to_status.value if e.to_status else None,
        "attempt": e.attempt,
        "detail": dict(e.detail),
    }


def progress_text(p: Process) -> str:
    if p.progress_done is None:
        return ""
    if p.progress_total:
        percent = 100 * p.progress_done / p.progress_total
        return f"{p.progress_done:g}/{p.progress_total:g} ({percent:.0f}%)"
    return f"{p.progress_done:g}"


def status_text(status: Status) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def process_table(processes: Sequence[Process]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("id", "job", "status", "progress", "attempt", "created", "updated"):
        table.add_column(col)
    for p in processes:
        table.add_row(
            p.id,
            p.job,
            status_text(p.status),
            progress_text(p),
            str(p.attempt),
            _short(p.created_at),
            _short(p.updated_at),
        )
    return table


def _short(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _detail(e: Event) -> str:
    detail = dict(e.detail)
    if e.kind == "error":
        return f"{detail.get('type')}: {detail.get('message')}"
    return ", ".join(f"{k}={v}" for k, v in detail.items() if v is not None)


def show_process(console: Console, p: Process, history: Sequence[Event]) -> None:
    import json

    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    fields.add_row("job", p.job)
    fields.add_row("status", status_text(p.status))
    if p.cancel_requested and not p.status.terminal:
        fields.add_row("", Text("cancel requested", style="magenta"))
    fields.add_row("params", json.dumps(p.params))
    fields.add_row("store", json.dumps(p.store))
    if p.progress_done is not None:
        fields.add_row("progress", progress_text(p))
    if p.status is Status.COMPLETED:
        fields.add_row("result", json.dumps(p.result))
    if p.error is not None:
        fields.add_row("error", Text(f"{p.error.type}: {p.error.message}", style="red"))
        fields.add_row("reason", p.error.reason)
    fields.add_row("attempt", str(p.attempt))
    for label, value in (
        ("custom id", p.custom_id),
        ("client id", p.client_id or None),
        ("priority", str(p.priority)),
        ("queue", p.queue),
        ("created", iso(p.created_at)),
        ("updated", iso(p.updated_at)),
        ("finished", iso(p.finished_at)),
    ):
        if value is not None:
            fields.add_row(label, value)
    timeline = Table(box=None, header_style="bold", title="history", title_justify="left")
    for col in ("at", "event", "status", "attempt", "detail"):
        timeline.add_column(col)
    for e in history:
        move = ""
        if e.to_status is not None and e.from_status != e.to_status:
            move = f"{e.from_status.value if e.from_status else ''} → {e.to_status.value}"
        elif e.from_status is not None:
            move = e.from_status.value
        timeline.add_row(_short(e.at), e.kind, move, str(e.attempt or ""), _detail(e))
    parts: list[Any] = [fields, Text(""), timeline]
    if p.error is not None and p.error.traceback:
        parts += [Text(""), Text(p.error.traceback.rstrip(), style="dim")]
    console.print(Panel(Group(*parts), title=p.id, title_align="left"))
