"""The worker protocol: claim, heartbeat and complete for workers in any language, over
the App's storage and its registry of external jobs (`app.external`).

What keeps it safe is what keeps an in-process worker safe: every write is fenced by the
lease token, and an iteration's outcome is settled by the same pure rule
(corral.settle: `on_claim` at the claim, `settle` at the commit), so the same outcomes
leave the same history whoever ran them. What the network adds: a claim answer can be
lost (a claim id replays it), and a worker can report after its lease is gone (the
report is refused with the reason, and kept in the history as a `rejected_commit`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.app import App
from corral.errors import ValueRejected
from corral.http.errors import FieldErrors
from corral.model import JSON, Event, Process, Status
from corral.settle import Outcome, Policy, Raised, on_claim, outcome_from_json, settle
from corral.storage import codec
from corral.storage.base import (
    Claim,
    Claimed,
    IterationCommit,
    Progress,
    TokenInfo,
    WorkerInfo,
)

#: Longest a claim may wait for work (seconds): a long poll, then an empty answer.
MAX_WAIT = 30.0
#: How long a claim's answer is kept for a replay by its claim id (seconds).
CLAIM_KEEP = 3600.0
#: Longest a long poll sleeps between looks: expired leases and a `run_at` that comes
#: due wake nobody, so the poll looks again at least this often.
POLL = 1.0


@dataclass(frozen=True, slots=True)
class Refused(Exception):
    """A write whose token no longer holds the lease: nothing of it was written."""

    reason: str  # lease_expired, superseded, canceled, not_found
    attempt: int | None = None

    def detail(self) -> str:
        return {
            "lease_expired": "the lease expired or was given back: nothing was written",
            "superseded": f"another claim holds the process now (attempt {self.attempt}): "
            "nothing was written",
            "canceled": "the process was canceled: nothing was written",
            "not_found": "no such process (or not in this token's queues)",
        }[self.reason]


# --- the worker registry ---------------------------------------------------------------------


def note_worker(
    corral: App,
    token: TokenInfo,
    worker: str,
    host: str,
    *,
    running: Sequence[str] | None = None,
    took: Sequence[str] = (),
    jobs: Sequence[str] | None = None,
    limit: int = 1,
) -> None:
    """Keep an HTTP worker's row in the worker registry, as an in-process worker keeps its
    own, so that `corral workers` (and everything reading the registry) sees it, and sees
    it gone once it stops calling. A heartbeat names every lease the worker holds
    (`running`); a claim adds what it handed out (`took`); a complete drops what it
    settled (`forget_lease`). The worker's pid is not known here: 0."""
    storage, now = corral.storage, corral.clock()
    if running is None:
        row = next((w for w in storage.worker_list() if w.owner == worker), None)
        held = set(row.running) if row is not None else set()
        running = sorted(held | set(took))
    if storage.worker_seen(worker, now, running):
        return
    storage.worker_register(
        WorkerInfo(
            owner=worker,
            host=host,
            pid=0,
            app=f"http:{token.client}",
            jobs=list(jobs) if jobs else corral.registry.external_jobs(),
            queues=token.queues,
            concurrency=max(limit, len(running), 1),
            started_at=now,
            last_seen_at=now,
            running=running,
        )
    )


def forget_lease(corral: App, owner: str | None, process_id: str) -> None:
    """Drop a settled process from its worker's registry row (if it has one)."""
    storage = corral.storage
    row = next((w for w in storage.worker_list() if w.owner == owner), None)
    if row is not None and process_id in row.running:
        running = [r for r in row.running if r != process_id]
        storage.worker_seen(row.owner, corral.clock(), running)


# --- claim -----------------------------------------------------------------------------------


def external_jobs(corral: App, asked: Sequence[str] | None) -> list[str]:
    """The external jobs a claim names (all of the app's when it names none); a name that
    is not one is a field error."""
    known = corral.registry.external_jobs()
    if not asked:
        return known
    errors = [
        {
            "loc": ["body", "jobs", n],
            "msg": f"{name!r} is not an external job of this app (external jobs: "
            f"{', '.join(known) or 'none'})",
            "type": "value_error",
        }
        for n, name in enumerate(asked)
        if name not in known
    ]
    if errors:
        raise FieldErrors(errors)
    return sorted(set(asked))


def claim(
    corral: App,
    token: TokenInfo,
    *,
    worker: str,
    jobs: Sequence[str] | None,
    limit: int,
    wait: float,
    claim_id: str | None,
) -> dict[str, Any]:
    """Lease up to `limit` processes of `jobs` from the token's queues, waiting up to `wait`
    seconds for one; with a `claim_id`, the answer is kept, and the same id gets it again."""
    names = external_jobs(corral, jobs)
    storage = corral.storage
    if claim_id is not None:
        kept = storage.worker_claim_get(token.id, claim_id)
        if kept is not None:
            found: dict[str, Any] = json.loads(kept)
            return found
    deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
    while True:
        epoch = storage.change_epoch()  # read before looking: a change after it wakes us
        leases = claim_once(corral, token, worker, names, limit)
        left = deadline - time.monotonic()
        if leases or left <= 0:
            break
        storage.wait_for_change(epoch, min(left, POLL))
    answer: dict[str, Any] = {"leases": leases}
    if claim_id is not None:
        text = codec.dumps(answer, "the claim's answer")
        kept = storage.worker_claim_put(token.id, claim_id, text, corral.clock(), CLAIM_KEEP)
        if kept != text:
            # A concurrent claim of the same id answered first: it is the one the worker
            # will use, so these leases go back at once rather than expire.
            storage.lease_release_many(
                {le["process_id"]: le["token"] for le in leases}, corral.clock()
            )
            answer = json.loads(kept)
    return answer


def claim_once(
    corral: App, token: TokenInfo, worker: str, jobs: Sequence[str], limit: int
) -> list[dict[str, Any]]:
    """One claim: the leases to hand out. What the claim decides at once (attempts spent by
    expired leases, a cancel request) is committed here, as an in-process worker does."""
    if not jobs:
        return []
    storage, now = corral.storage, corral.clock()
    claimed = storage.process_claim(
        Claim(
            owner=worker,
            now=now,
            lease_seconds=corral.lease_seconds,
            limit=limit,
            queues=token.queues,
            jobs=list(jobs),
        )
    )
    commits: list[IterationCommit] = []
    notes: list[Event] = []
    leases: list[dict[str, Any]] = []
    for c in claimed:
        process = c.process
        events, change = on_claim(
            process,
            _policy(corral, process),
            now,
            recovered=c.recovered,
            previous_owner=c.previous_owner,
        )
        if change is not None:
            commits.append(IterationCommit(process.id, c.token, change, now))
            continue
        # An in-process worker commits these with the iteration; a remote one may never
        # come back, so they are written now (the same events, in the same order).
        notes.extend(dataclasses.replace(e, process_id=process.id) for e in events)
        leases.append(lease_json(c))
    if commits:
        storage.process_commit_many(commits)
    if notes:
        storage.history_append(notes)
    return leases


def lease_json(c: Claimed) -> dict[str, Any]:
    p = c.process
    return {
        "process_id": p.id,
        "job": p.job,
        "status": p.status.value,
        "attempt": p.attempt,
        "token": c.token,
        "params": p.params,
        "store": p.store,
        "progress": {"done": p.progress_done, "total": p.progress_total},
    }


def _policy(corral: App, process: Process) -> Policy | None:
    job = corral.registry.jobs.get(process.job)
    return None if job is None else corral.registry.policy(job)


# --- heartbeat -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Beat:
    process_id: str
    token: int
    progress: Progress | None


def heartbeat(corral: App, token: TokenInfo, worker: str, beats: Sequence[Beat]) -> dict[str, Any]:
    """Extend the leases still held; per lease `extend`, or `cancel` (asked to cancel, or
    the lease is gone: then with the reason), and the worker's directive."""
    storage, now = corral.storage, corral.clock()
    tokens = {b.process_id: b.token for b in beats}
    progress = {b.process_id: b.progress for b in beats if b.progress is not None}
    renewal = storage.lease_renew_many(
        worker, tokens, now, corral.lease_seconds, dict.fromkeys(tokens, now), progress
    )
    answers = []
    for b in beats:
        entry: dict[str, Any] = {"process_id": b.process_id, "action": "extend"}
        if b.process_id in renewal.lost:
            refused = fence(storage.process_get(b.process_id), token, b.token, None, now)
            refused = refused or Refused("lease_expired")
            entry.update(action="cancel", reason=refused.reason)
        elif b.process_id in renewal.cancel_requested:
            entry.update(action="cancel", reason="cancel_requested")
        answers.append(entry)
    return {"leases": answers, "worker": directive(corral, token)}


def directive(corral: App, token: TokenInfo) -> str:
    """`quiet` when every queue the token may claim from is paused (finish what runs,
    claim nothing), else `continue`."""
    paused = set(corral.storage.queue_paused())
    if "*" in paused or (token.queues and set(token.queues) <= paused):
        return "quiet"
    return "continue"


# --- complete --------------------------------------------------------------------------------


def fence(
    process: Process | None, token: TokenInfo, lease: int, attempt: int | None, now: float
) -> Refused | None:
    """Why a write under lease token `lease` may not land (None: it still holds)."""
    if process is None or (token.queues is not None and process.queue not in token.queues):
        return Refused("not_found")
    if process.lease_token != lease:
        if process.status is Status.CANCELED:
            return Refused("canceled")
        if process.lease_expires_at is not None:
            return Refused("superseded", process.attempt)
        return Refused("lease_expired")
    if process.lease_expires_at is None or process.lease_expires_at <= now:
        # Held by nobody (given back, or timed out by the sweep), or its time is up: a
        # remote worker that comes back late is refused even before another claim.
        return Refused("canceled" if process.status is Status.CANCELED else "lease_expired")
    if attempt is not None and attempt != process.attempt:
        return Refused("superseded", process.attempt)
    return None


def complete(
    corral: App,
    token: TokenInfo,
    process_id: str,
    attempt: int,
    lease: int,
    outcome: Mapping[str, Any],
) -> Process:
    """Settle the iteration's outcome and commit it, fenced by the lease token; Refused (and
    the payload noted in the history) when the token no longer holds the lease."""
    storage, now = corral.storage, corral.clock()
    process = storage.process_get(process_id)
    refused = fence(process, token, lease, attempt, now)
    if refused is None:
        assert process is not None
        settled = outcome_of(outcome, process)
        change = settle(process, _policy(corral, process) or Policy(), settled, now)
        try:
            lost = storage.process_commit_many([IterationCommit(process_id, lease, change, now)])
        except ValueRejected as exc:
            # As in-process: the database refused a value the worker sent; the process
            # fails with that reason (not retried), none of the values written.
            error = Raised(type(exc).__name__, codec.safe_text(str(exc)), retryable=False)
            change = settle(process, _policy(corral, process) or Policy(), error, now)
            lost = storage.process_commit_many([IterationCommit(process_id, lease, change, now)])
        if not lost:
            forget_lease(corral, process.lease_owner, process_id)
            done = storage.process_get(process_id)
            assert done is not None
            return done
        process = storage.process_get(process_id)
        refused = fence(process, token, lease, attempt, now) or Refused("lease_expired")
    if process is not None:
        note = {
            "reason": refused.reason,
            "token": lease,
            "attempt": attempt,
            "outcome": _payload(outcome),
        }
        event = Event("rejected_commit", now, None, None, process.attempt, note, process_id)
        storage.history_append([event])
    raise refused


def outcome_of(data: Mapping[str, Any], process: Process) -> Outcome:
    """The settle rule's outcome that a complete's `outcome` describes. A store or progress
    left out keeps the process's; `error` carries a raised error's fields."""
    given = {k: v for k, v in data.items() if v is not None}
    kind = given.get("kind")
    fields: dict[str, Any] = {"kind": kind}
    if kind in ("returned", "retry_later"):
        fields["store"] = given.get("store", process.store)
        # Left out: what the heartbeats saved, as an in-process handler's context keeps it.
        progress = given.get("progress") or {}
        fields["progress"] = (
            progress.get("done", process.progress_done),
            progress.get("total", process.progress_total),
        )
    if kind == "returned":
        fields.update(result=given.get("result"), done=given.get("done", True))
    elif kind == "retry_later":
        fields.update(delay=given.get("delay"), reason=given.get("reason", ""))
    elif kind in ("raised", "invalid"):
        error = given.get("error") or {}
        fields["message"] = error.get("message") or given.get("message", "")
        if kind == "raised":
            fields.update(
                type=error.get("type", "Error"),
                traceback=error.get("traceback", ""),
                retryable=error.get("retryable", True),
            )
    try:
        return outcome_from_json(fields)
    except ValueError as exc:
        loc = ["body", "outcome"]
        raise FieldErrors([{"loc": loc, "msg": str(exc), "type": "value_error"}]) from None


def _payload(outcome: Mapping[str, Any]) -> JSON:
    """The refused outcome as it can be stored (its JSON, as sent)."""
    try:
        return codec.to_json_value(dict(outcome), "the refused outcome")
    except Exception:  # what cannot be stored is described, never lost silently
        return {"kind": str(outcome.get("kind")), "unstorable": True}
