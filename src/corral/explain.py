"""Why a process is not running now: every reason, in words a person acts on.

Pure: it reads a process as stored, the queues that are paused, the worker registry and
the time, and decides nothing. The same predicates as the claim's: a process runs when
its status is claimable, no live lease holds it, its `run_at` has come, its queue is not
paused, no dependency is unfinished, its concurrency key has a free slot (fewer live
leases of the key than its limit), and a live worker registers its job and serves its
queue; and no rate limit defers it (`rate_limited`: its last deferral says so).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from corral.graph import DependencyRow
from corral.model import CLAIMABLE, Process, Status
from corral.storage.base import ConcurrencySlots, WorkerInfo


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason: a stable code for programs, and a sentence for people."""

    code: str
    message: str


def explain(
    p: Process,
    now: float,
    *,
    paused: Collection[str],
    workers: Sequence[WorkerInfo],
    stale_after: float,
    dependencies: Sequence[DependencyRow] = (),
    slots: ConcurrencySlots | None = None,
    rate_limited: bool = False,
) -> list[Reason]:
    """Every reason `p` is not running at `now`; for one that runs or will run at the
    next claim, the one line that says so. `slots`: its concurrency key's, if it has one."""
    if p.status.terminal:
        return [Reason("ended", f"it ended {p.status.value}; `corral retry` resumes it")]
    if p.leased and (p.lease_expires_at or 0) > now:
        until = _when(p.lease_expires_at)
        return [Reason("leased", f"it is running: worker {p.lease_owner} holds it until {until}")]
    reasons = [
        *_waiting(p, dependencies),
        *_held(p, now, paused, rate_limited),
        *_key_full(slots),
        *_workers(p, now, workers, stale_after),
    ]
    if p.cancel_requested:
        reasons.append(
            Reason("cancel_requested", "a cancel was requested: the next claim rolls it back")
        )
    return reasons or [Reason("runnable", "nothing holds it back: the next claim takes it")]


def _waiting(p: Process, dependencies: Sequence[DependencyRow]) -> list[Reason]:
    """The dependencies a waiting process waits for, with their statuses."""
    if p.status is not Status.WAITING:
        return []
    unfinished = [d for d in dependencies if not d.status.terminal]
    shown = ", ".join(f"{d.id} ({d.status.value})" for d in unfinished[:5])
    more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
    count = len(unfinished)
    return [
        Reason(
            "waiting_on_dependencies",
            f"it waits for {count} {'dependency' if count == 1 else 'dependencies'} to "
            f"end: {shown}{more}",
        )
    ]


def _held(
    p: Process, now: float, paused: Collection[str], rate_limited: bool = False
) -> list[Reason]:
    """What in the process itself, or its queue, holds it back."""
    reasons: list[Reason] = []
    if p.leased:
        reasons.append(
            Reason(
                "lease_expired",
                f"the lease of worker {p.lease_owner} expired at {_when(p.lease_expires_at)} "
                "(it died or froze): the next claim takes the process over",
            )
        )
    if p.status not in CLAIMABLE and p.status is not Status.WAITING:
        reasons.append(Reason("status", f"it is {p.status.value}, which no worker claims"))
    if p.run_at > now and rate_limited:
        reasons.append(
            Reason(
                "rate_limited",
                f"its job's rate limit holds it back until {_when(p.run_at)}, when its "
                "next token is due",
            )
        )
    elif p.run_at > now and p.lease_token == 0:
        reasons.append(Reason("scheduled", f"it is scheduled for {_when(p.run_at)}"))
    elif p.run_at > now:
        why = "a retry's backoff or a RetryLater"
        reasons.append(Reason("retrying", f"it waits to retry at {_when(p.run_at)} ({why})"))
    if p.queue in paused or "*" in paused:
        which = "every queue is" if "*" in paused else f"its queue {p.queue!r} is"
        reasons.append(Reason("queue_paused", f"{which} paused: `corral resume` ends that"))
    return reasons


def _key_full(slots: ConcurrencySlots | None) -> list[Reason]:
    """Whether its concurrency key is full: as many live leases of the key as its limit,
    the count the claim makes (docs/flow-control.md)."""
    if slots is None or not slots.full:
        return []
    held = ", ".join(
        f"{h.process_id} (worker {h.lease_owner}, lease until {_when(h.lease_expires_at)})"
        for h in slots.holders
    )
    return [
        Reason(
            "concurrency_full",
            f"its concurrency key {slots.key!r} is full ({len(slots.holders)} of "
            f"{slots.limit}): held by {held}; a slot frees when one of them ends its "
            "iteration or its lease expires",
        )
    ]


def _workers(
    p: Process, now: float, workers: Sequence[WorkerInfo], stale_after: float
) -> list[Reason]:
    """Whether a live worker (one that refreshed its registry row within `stale_after`)
    registers the job, serves the queue, and has a free slot."""
    live = [w for w in workers if now - w.last_seen_at <= stale_after]
    serving = [w for w in live if p.job in w.jobs and (w.queues is None or p.queue in w.queues)]
    if not serving:
        if not live:
            what = "no worker is running"
        elif not any(p.job in w.jobs for w in live):
            what = f"no running worker registers its job {p.job!r}"
        else:
            what = f"no running worker that registers {p.job!r} serves its queue {p.queue!r}"
        return [Reason("no_worker", f"{what}: start one with `corral worker`")]
    if all(len(w.running) >= w.concurrency for w in serving):
        return [Reason("workers_busy", "every worker that can run it has all its slots in use")]
    return []


def _when(ts: float | None) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
