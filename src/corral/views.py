"""The JSON shapes of what corral shows, defined once: `corral show --json` and the HTTP
API give a process, its history and its place in a graph alike.

A process's `state` is what a person reads of it (cli_output's docstring says how it is
derived): `queued`, `scheduled` or `retrying` until `state_until`, or its stored status.
Times are ISO 8601 in UTC with their offset.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from corral.graph import DependencyRow
from corral.model import Event, Process, Status


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC, with its offset (`2026-01-31T09:00:00.000+00:00`): for JSON."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def state(p: Process, now: float) -> tuple[str, float | None]:
    """(what the process is doing, since or until when) as a person reads it: `queued`,
    `scheduled` (until its run_at), `retrying` (until its run_at), or its stored status."""
    if p.status.terminal or p.leased:
        return p.status.value, None
    if p.run_at > now:
        # Never claimed (lease_token 0): it waits for its first run_at. Claimed before and
        # now free: a retry's backoff or a RetryLater.
        return ("retrying" if p.lease_token > 0 else "scheduled"), p.run_at
    if p.lease_token == 0 and p.status is Status.STARTING:
        return "queued", None
    return p.status.value, None


def attempts(history: Sequence[Event]) -> int:
    """The attempts a process took: the highest attempt number in its history, that is the
    most tries any one of its iterations needed (1: each succeeded on its first try; 0: it
    never ran). A worker counts an iteration's tries from 1 and starts again at the next."""
    return max((e.attempt for e in history), default=0)


def process_json(
    p: Process, history: Sequence[Event] | None = None, *, now: float | None = None
) -> dict[str, Any]:
    word, at = state(p, time.time() if now is None else now)
    out: dict[str, Any] = {
        "id": p.id,
        "job": p.job,
        "params": p.params,
        "status": p.status.value,
        # What a person reads (queued, scheduled, retrying or the status) and until when.
        "state": word,
        "state_until": iso(at),
        "store": p.store,
        "result": p.result,
        "error": p.error.to_json() if p.error else None,
        "progress": {"done": p.progress_done, "total": p.progress_total},
        "attempt": p.attempt,
        "priority": p.priority,
        "queue": p.queue,
        "run_at": iso(p.run_at),
        "lease_owner": p.lease_owner if p.leased else None,
        "lease_expires_at": iso(p.lease_expires_at),
        "cancel_requested": p.cancel_requested,
        "custom_id": p.custom_id,
        "client_id": p.client_id,
        "tags": p.tags,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "finished_at": iso(p.finished_at),
    }
    if history is not None:
        out["attempts"] = attempts(history)
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


def edges_json(dependencies: Sequence[DependencyRow], dependents: Sequence[str]) -> dict[str, Any]:
    """A process's place in a task graph, for --json."""
    return {
        "dependencies": [{"id": d.id, "status": d.status.value} for d in dependencies],
        "dependents": list(dependents),
    }
