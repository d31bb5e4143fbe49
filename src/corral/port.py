"""The worker port: the little a worker loop needs of the database, and nothing else.

A worker claims, commits, renews, gives leases back, notes events and keeps its row in
the worker registry; it reads the
database's clock and waits for work. `WorkerPort` says exactly that, so the loop can run
over a storage object in this process (`StoragePort`), or over anything else that keeps
the same promises (the fencing of every write by the lease token above all).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from corral.graph import DependencyRow
from corral.model import Event
from corral.rates import Rate
from corral.storage.base import (
    Claim,
    Claimed,
    IterationCommit,
    Progress,
    Renewal,
    Storage,
    WorkerInfo,
)


class WorkerPort(Protocol):
    def now(self) -> float:
        """The time by the database's clock, in seconds since the epoch."""

    def exchange(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        """Commit the finished iterations and claim more, in one round trip: the ids whose
        lease was lost (nothing of those was written), and the processes claimed."""

    def commit(self, commits: Sequence[IterationCommit]) -> list[str]:
        """Commit finished iterations, each fenced by its token; the ids whose lease was lost."""

    def claim(self, claim: Claim) -> list[Claimed]: ...

    def renew(
        self,
        owner: str,
        tokens: Mapping[str, int],
        lease_seconds: float,
        heartbeats: Mapping[str, float],
        progress: Mapping[str, Progress] | None = None,
    ) -> Renewal:
        """Extend the leases still held, saving the progress handlers reported; report
        lost ones and cancel requests."""

    def release(self, tokens: Mapping[str, int]) -> list[str]:
        """Give leases back without committing (a graceful stop); the ids given back."""

    def note(self, events: Sequence[Event]) -> None:
        """Record events that change no process (a lease found lost)."""

    def dependencies(self, process_id: str) -> list[DependencyRow]:
        """What a process sees of its dependencies (its handler asked: `ctx.dependencies`)."""

    def rate_take(self, bucket: str, rate: Rate) -> float:
        """Take a token of a rate limit's bucket now: 0.0, or the seconds until one is due."""

    def register(self, worker: WorkerInfo) -> None:
        """Put this worker in the registry that `corral workers` reads."""

    def seen(self, owner: str, running: Sequence[str]) -> bool:
        """Refresh this worker's registry row; False if it has none (register again)."""

    def unregister(self, owner: str) -> None:
        """Take this worker out of the registry (it stops)."""

    def change_epoch(self) -> int:
        """Read before looking for work; `wait_for_change` then waits for anything newer."""

    def wait_for_change(self, epoch: int, timeout: float) -> bool:
        """Block until something that may create work happened since `epoch`, or `timeout`
        passed."""

    def notify_local(self) -> None:
        """Wake this process's waiters (an iteration finished, a stop was asked for)."""


class StoragePort:
    """The worker port over a storage object of this process."""

    def __init__(self, storage: Storage, clock: Callable[[], float]) -> None:
        self.storage = storage
        self.now = clock

    def exchange(
        self, commits: Sequence[IterationCommit], claim: Claim
    ) -> tuple[list[str], list[Claimed]]:
        return self.storage.process_commit_and_claim(commits, claim)

    def commit(self, commits: Sequence[IterationCommit]) -> list[str]:
        return self.storage.process_commit_many(commits)

    def claim(self, claim: Claim) -> list[Claimed]:
        return self.storage.process_claim(claim)

    def renew(
        self,
        owner: str,
        tokens: Mapping[str, int],
        lease_seconds: float,
        heartbeats: Mapping[str, float],
        progress: Mapping[str, Progress] | None = None,
    ) -> Renewal:
        return self.storage.lease_renew_many(
            owner, tokens, self.now(), lease_seconds, heartbeats, progress
        )

    def release(self, tokens: Mapping[str, int]) -> list[str]:
        return self.storage.lease_release_many(tokens, self.now())

    def note(self, events: Sequence[Event]) -> None:
        self.storage.history_append(events)

    def dependencies(self, process_id: str) -> list[DependencyRow]:
        return self.storage.dependencies_of([process_id]).get(process_id, [])

    def rate_take(self, bucket: str, rate: Rate) -> float:
        return self.storage.rate_take(bucket, rate, self.now())

    def register(self, worker: WorkerInfo) -> None:
        self.storage.worker_register(worker)

    def seen(self, owner: str, running: Sequence[str]) -> bool:
        return self.storage.worker_seen(owner, self.now(), running)

    def unregister(self, owner: str) -> None:
        self.storage.worker_remove(owner)

    def change_epoch(self) -> int:
        return self.storage.change_epoch()

    def wait_for_change(self, epoch: int, timeout: float) -> bool:
        return self.storage.wait_for_change(epoch, timeout)

    def notify_local(self) -> None:
        self.storage.notify_local()
