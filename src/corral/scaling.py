"""The supervisor's scaling rule (docs/supervisor.md), pure: how many workers to run, and
which ones to quiet, from the runnable backlog and what the workers hold now.

- Load: the iterations the workers run now plus the runnable backlog; the workers wanted
  are as many as that load fills at `concurrency` each.
- A backlog older than `patience` is work that waits although the registry says there is
  room (its rows are a renewal behind): one more worker than now.
- Up at once; down only once fewer workers would have done for `window` seconds on end.
- Never below `minimum` nor above `maximum`, and never above the database's connection
  budget (a budget below `minimum` wins: a worker that cannot connect helps nobody).
- Down by quieting idle workers first, then the least busy, the youngest first among
  equals (the oldest have warmed their caches); none is killed: a quiet worker finishes
  what it runs and exits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from corral.errors import UsageError

#: How long (seconds) fewer workers must have done before the supervisor shrinks.
DEFAULT_WINDOW = 60.0
#: A backlog whose oldest process has waited this long (seconds) adds a worker even when
#: the registry says the workers have free slots.
DEFAULT_PATIENCE = 5.0


@dataclass(frozen=True, slots=True)
class Running:
    """A worker as the rule sees it: the supervisor's name for it, how many iterations it
    runs now (None: not in the registry yet, so assumed busy), when it started (seconds)."""

    name: str
    running: int | None
    started_at: float = 0.0

    @property
    def idle(self) -> bool:
        return self.running == 0


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the rule may do: between `minimum` and `maximum` workers, each running
    `concurrency` iterations at once; shrink after `window` seconds of lower need."""

    minimum: int
    maximum: int
    concurrency: int
    window: float = DEFAULT_WINDOW
    patience: float = DEFAULT_PATIENCE


@dataclass(frozen=True, slots=True)
class Observed:
    """One look at the database: the runnable backlog of the workers' jobs, the age of its
    oldest process, the workers (the ones not already told to stop), how many workers the
    connection budget allows (None: no limit), and when (monotonic seconds)."""

    backlog: int
    oldest_age: float
    workers: Sequence[Running]
    budget: int | None
    now: float


@dataclass(frozen=True, slots=True)
class Decision:
    """How many workers to run, which to quiet (to start: `desired` less those kept), since
    when fewer would have done (to pass back in the next call), and why, in words."""

    desired: int
    quiet: tuple[str, ...]
    low_since: float | None
    reason: str

    def start(self, running: int) -> int:
        """How many workers to start, given how many run (not counting those quieted)."""
        return max(self.desired - running, 0)


def ceiling(bounds: Bounds, budget: int | None) -> int:
    """The most workers allowed: `maximum`, or fewer if the connection budget says so
    (but at least one)."""
    top = bounds.maximum if budget is None else min(bounds.maximum, budget)
    return max(top, 1)


def wanted(bounds: Bounds, seen: Observed) -> tuple[int, str]:
    """The workers the load asks for now, within the bounds and the budget, and why."""
    current = len(seen.workers)
    busy = sum(bounds.concurrency if w.running is None else w.running for w in seen.workers)
    load = busy + seen.backlog
    n = math.ceil(load / bounds.concurrency)
    why = f"{busy} running + {seen.backlog} runnable"
    if seen.backlog and seen.oldest_age >= bounds.patience and n <= current:
        n = current + 1
        why += f", the oldest waiting {seen.oldest_age:.0f} s"
    top = ceiling(bounds, seen.budget)
    floor = min(bounds.minimum, top)
    if n > top:
        limit = "the connection budget" if top < bounds.maximum else "the maximum"
        why += f" (held to {top} by {limit})"
    return min(max(n, floor), top), why


def decide(bounds: Bounds, seen: Observed, low_since: float | None) -> Decision:
    """The scaling decision for one look: see the module's docstring."""
    current = len(seen.workers)
    target, why = wanted(bounds, seen)
    top = ceiling(bounds, seen.budget)
    if current > top:  # over the budget (it shrank): down now, the window is for load
        return Decision(top, _pick(seen.workers, current - top), None, f"{why}: over budget")
    if target >= current:
        return Decision(target, (), None, why)
    since = seen.now if low_since is None else low_since
    if seen.now - since < bounds.window:
        return Decision(current, (), since, f"{why}: {target} would do, waiting")
    return Decision(target, _pick(seen.workers, current - target), None, f"{why}: shrinking")


def _pick(workers: Sequence[Running], n: int) -> tuple[str, ...]:
    """The `n` workers to quiet: idle first, then the least busy; among equals the
    youngest. A worker not registered yet counts as busy."""
    order = sorted(
        workers,
        key=lambda w: (w.running is None, w.running or 0, -w.started_at),
    )
    return tuple(w.name for w in order[:n])


_PROCESSES = re.compile(r"^\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?$")


def parse_processes(text: str) -> tuple[int, int]:
    """`--processes`: `MIN..MAX`, or `N` for N..N. UsageError names what is wrong."""
    match = _PROCESSES.match(text)
    if not match:
        raise UsageError(f"--processes must be N or MIN..MAX (e.g. 4 or 1..8), not {text!r}")
    low = int(match.group(1))
    high = low if match.group(2) is None else int(match.group(2))
    if low < 1:
        raise UsageError(f"--processes: the minimum must be 1 or more, not {low}")
    if high < low:
        raise UsageError(f"--processes: the maximum ({high}) is below the minimum ({low})")
    return low, high
