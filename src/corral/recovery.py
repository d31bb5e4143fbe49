"""The recovery sweep: applies the timeouts of DESIGN §6, one sweeper at a time.

Every worker offers to sweep now and then; a leader row in the database lets one of
them, fleet-wide, do it. Expired leases need no sweep: the next claim takes them
over (DESIGN §3, class 1).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from corral import settle
from corral.jobs import DEFAULT_ATTEMPTS
from corral.settle import Policy
from corral.storage.base import TimedOut

if TYPE_CHECKING:
    from corral.app import App

log = logging.getLogger("corral.recovery")

LEADER = "recovery"
#: Processes looked at per sweep; the next sweep takes the rest.
BATCH = 500


class Recovery:
    def __init__(self, app: App, owner: str, interval: float = 1.0) -> None:
        self.app = app
        self.owner = owner
        self.interval = interval
        self._next = 0.0

    def maybe_sweep(self, *, force: bool = False) -> int:
        """Sweep if it is time and this worker leads; returns the processes changed."""
        if not force and time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + self.interval
        storage = self.app.storage
        # The leadership outlives a few missed sweeps, so a slow leader keeps it.
        if not storage.leader_acquire(LEADER, self.owner, self.app.clock(), 3 * self.interval):
            return 0
        return self.sweep()

    def sweep(self) -> int:
        changed = 0
        for timed_out in self.app.storage.process_timed_out(self.app.clock(), BATCH):
            if self._apply(timed_out):
                changed += 1
        if changed:
            log.info("recovery: %d processes timed out", changed)
        return changed

    def _apply(self, t: TimedOut) -> bool:
        p, now = t.process, self.app.clock()
        registry = self.app.registry
        job = registry.jobs.get(p.job)
        # A job this app does not know (another app shares the database): the default
        # policy, and its generic rollback handlers if any.
        policy = (
            registry.policy(job)
            if job is not None
            else Policy(max_attempts=DEFAULT_ATTEMPTS, has_rollback=registry.has_rollback(None))
        )
        change = settle.timed_out(p, policy, t.cause, now)
        if change is None:
            return False
        # A moved version means a worker committed meanwhile: the next sweep looks again.
        return self.app.storage.process_update(p.id, p.version, change, now, revoke_lease=p.leased)
