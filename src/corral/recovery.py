"""The recovery sweep: applies the timeouts (docs/timeouts.md), one sweeper at a time.

Every worker runs a recovery thread that offers to sweep now and then; a leader row in
the database lets one of them, fleet-wide, do it. Expired leases need no sweep: the next
claim takes them over (docs/leases-and-fencing.md). A sweep applies what it finds in one
batch. Now and then it also forgets workers long gone from the worker registry.

The sweep also fires the cron schedules (corral.scheduler): so that a schedule of one
occurrence a second fires on time, the leader's next sweep comes at the next occurrence
when that is sooner than its interval.

And it applies retention (docs/timeouts.md, "Retention"): the completed processes of a
job with `keep_for` are deleted once they are that old, at most PRUNE_CHUNK a sweep
(oldest first, one transaction); when a sweep found a full chunk, the next comes at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral import settle
from corral.errors import StorageError, StorageUnavailable
from corral.jobs import DEFAULT_ATTEMPTS, Registry
from corral.scheduler import Scheduler
from corral.settle import Policy
from corral.storage.base import Storage, TimedOut, Update

if TYPE_CHECKING:
    from corral.app import App

log = logging.getLogger("corral.recovery")

LEADER = "recovery"
#: Processes looked at per sweep; the next sweep takes the rest.
BATCH = 500
#: Expired processes deleted per sweep (one transaction); the next sweep takes the rest.
PRUNE_CHUNK = 1000
#: Moves of graph counters folded per sweep (Storage.batch_counts_fold); the next sweep,
#: at once, takes the rest.
FOLD_CHUNK = 10_000
#: A worker not seen for this long (seconds) leaves the registry; until then readers show
#: it as gone. Checked once a minute.
FORGET_WORKERS_AFTER = 3600.0
_FORGET_EVERY = 60.0
#: How long after an occurrence the leader wakes to fire it (seconds): a little, so that
#: its clock, read at wake-up, has passed the occurrence.
_AFTER_OCCURRENCE = 0.005


class Recovery:
    def __init__(
        self,
        storage: Storage,
        registry: Registry,
        clock: Callable[[], float],
        owner: str,
        interval: float = 1.0,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.storage = storage
        self.registry = registry
        self.clock = clock
        self.owner = owner
        self.interval = interval
        self.scheduler = scheduler
        self._next = 0.0
        self._next_forget = 0.0

    @classmethod
    def of(cls, app: App, owner: str, interval: float = 1.0) -> Recovery:
        return cls(app.storage, app.registry, app.clock, owner, interval, Scheduler.of(app))

    def maybe_sweep(self, *, force: bool = False) -> int:
        """Sweep if it is time and this worker leads; returns the processes changed."""
        if not force and time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + self.interval
        # The leadership outlives a few missed sweeps, so a slow leader keeps it.
        if not self.storage.leader_acquire(LEADER, self.owner, self.clock(), 3 * self.interval):
            return 0
        return self.sweep()

    def sweep(self) -> int:
        now = self.clock()
        updates = []
        for timed_out in self.storage.process_timed_out(now, BATCH):
            update = self._update(timed_out, now)
            if update is not None:
                updates.append(update)
        # A moved version means a worker committed meanwhile: the next sweep looks again.
        changed = len(self.storage.process_update_many(updates)) if updates else 0
        if changed:
            log.info("recovery: %d processes timed out", changed)
        if time.monotonic() >= self._next_forget:
            self._next_forget = time.monotonic() + _FORGET_EVERY
            self.storage.worker_prune(now - FORGET_WORKERS_AFTER)
        if self.scheduler is not None:
            changed += self.scheduler.fire(now)
            self._wake_for(self.scheduler.next_due(now), now)
        self.prune_expired(now)
        if self.storage.batch_counts_fold(FOLD_CHUNK) >= FOLD_CHUNK:
            self._next = time.monotonic()  # more may be waiting: sweep again at once
        return changed

    def prune_expired(self, now: float) -> int:
        """Delete a chunk of completed processes past their job's `keep_for`; how many.
        Only the jobs this app registers with a `keep_for` are looked at."""
        cutoffs = {
            job.name: now - job.keep_for
            for job in self.registry.jobs.values()
            if job.keep_for is not None
        }
        if not cutoffs:
            return 0
        pruned = self.storage.process_prune_expired(cutoffs, PRUNE_CHUNK)
        if pruned:
            log.info("recovery: %d completed processes past their retention deleted", pruned)
        if pruned >= PRUNE_CHUNK:  # more may be waiting: sweep again at once
            self._next = time.monotonic()
        return pruned

    def _wake_for(self, due: float | None, now: float) -> None:
        """Sweep again at `due` (by the clock `now` was read from) if that comes before
        the next sweep; never later than the interval."""
        if due is not None:
            wait = min(max(due - now, 0.0) + _AFTER_OCCURRENCE, self.interval)
            self._next = min(self._next, time.monotonic() + wait)

    def _update(self, t: TimedOut, now: float) -> Update | None:
        p = t.process
        job = self.registry.jobs.get(p.job)
        # A job this app does not know (another app shares the database): the default
        # policy, and its generic rollback handlers if any.
        policy = (
            self.registry.policy(job)
            if job is not None
            else Policy(
                max_attempts=DEFAULT_ATTEMPTS, has_rollback=self.registry.has_rollback(None)
            )
        )
        change = settle.timed_out(p, policy, t.cause, now)
        if change is None:
            return None
        return Update(p.id, p.version, change, now, revoke_lease=p.leased)

    def run(self, stop: threading.Event) -> None:
        """Offer to sweep every `interval` until `stop` is set (the worker's recovery thread).
        A database away or failing is the worker loop's business: here, the next round."""
        while not stop.wait(max(self._next - time.monotonic(), 0.0)):
            try:
                self.maybe_sweep()
            except StorageUnavailable as exc:
                log.debug("recovery sweep skipped: %s", exc)
            except StorageError as exc:
                log.warning("recovery sweep failed: %s", exc)
            except Exception:
                log.exception("recovery sweep failed (a bug in corral)")
                self._next = time.monotonic() + self.interval
