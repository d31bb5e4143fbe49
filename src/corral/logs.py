"""What a worker says: one line per iteration outcome, each carrying the process id, job and
attempt (as `ctx.log` lines do), in words or (`--log-format json`) one JSON object a line.

The fields ride on each log record as attributes (`process_id`, `job`, `attempt`, `outcome`,
`duration_ms`): the text formatter shows them in front of the message, the JSON formatter
as keys, so that a log collector can filter on them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import Any, Literal

from corral.model import Change, Event, Process, Status

#: The logger of iteration outcomes (INFO), taken-over processes and lost leases (WARNING).
ITERATIONS = logging.getLogger("corral.iteration")

#: The record attributes that say which iteration a line is about.
FIELDS = ("process_id", "job", "attempt", "outcome", "duration_ms")

LogFormat = Literal["text", "json"]


def iteration_fields(process: Process, **more: Any) -> dict[str, Any]:
    """The `extra` of a log line about an iteration of `process`."""
    return {"process_id": process.id, "job": process.job, "attempt": process.attempt, **more}


def describe(process: Process, change: Change, duration: float | None) -> tuple[str, str]:
    """(outcome, words) for the committed iteration of `process` that made `change`."""
    took = "" if duration is None else f" in {_ms(duration)}"
    kinds = {e.kind: e for e in change.events}
    error = change.error
    if (retried := kinds.get("retry_scheduled")) is not None:
        failure = kinds.get("error")
        why = _error_text(failure) if failure is not None else "an error"
        delay = float(retried.detail.get("delay") or 0)
        return "retried", f"attempt {process.attempt} failed ({why}); next try in {_s(delay)}"
    if (later := kinds.get("retry_later")) is not None:
        delay = float(later.detail.get("delay") or 0)
        reason = later.detail.get("reason") or ""
        return "retry_later", f"asked to be called again in {_s(delay)}" + (
            f": {reason}" if reason else ""
        )
    if "timeout" in kinds and change.status is process.status:
        cause = kinds["timeout"].detail.get("cause")
        return "timed_out", f"{cause} passed; it will be tried again"
    if change.status is Status.COMPLETED:
        return "completed", f"completed{took}"
    if change.status is Status.CANCELED:
        return "canceled", f"canceled{took}"
    if change.status is Status.FAILED:
        why = f": {error.type}: {error.message}" if error is not None else ""
        return "failed", f"failed{why}"
    if change.status is Status.FAILING and process.status is not Status.FAILING:
        why = f" ({error.type}: {error.message})" if error is not None else ""
        return "failing", f"failing{why}; its rollback runs next"
    if change.status is not process.status:
        return "moved", f"{process.status.value} -> {change.status.value}{took}"
    return "step", f"{process.status.value} step done{took}"


def _error_text(event: Event) -> str:
    return f"{event.detail.get('type')}: {event.detail.get('message')}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _s(seconds: float) -> str:
    return f"{seconds:.3g} s"


class TextFormatter(logging.Formatter):
    """`time UTC LEVEL logger: [process job attempt] message`: in UTC, as every display."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%d %H:%M:%S"
    default_msec_format = "%s.%03d UTC"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pid = getattr(record, "process_id", None)
        if pid is None:
            return line
        head, sep, message = line.partition(": ")
        who = (
            f"process {pid} {getattr(record, 'job', '?')} attempt {getattr(record, 'attempt', '?')}"
        )
        return f"{head}{sep}[{who}] {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the iteration's
    fields when the line is about one, and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: int, log_format: LogFormat = "text") -> None:
    """Send corral's logs (and the handlers' `ctx.log`) to stderr in the given format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
