"""The worker registry: one row per running worker in corral_worker, refreshed with its
lease renewals; its lists (jobs, queues, running) are jsonb arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corral.storage import codec
from corral.storage.base import WorkerInfo
from corral.storage.postgres.connection import Connected, verb
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import as_time
from corral.storage.shared import worker_from_row


class Workers(Connected):
    """worker_register, worker_seen, worker_remove, worker_list, worker_prune."""

    @verb
    def worker_register(self, worker: WorkerInfo) -> None:
        args = {
            "owner": worker.owner,
            "host": worker.host,
            "pid": worker.pid,
            "app": worker.app,
            "jobs": codec.dumps(list(worker.jobs), "jobs"),
            "queues": None if worker.queues is None else codec.dumps(list(worker.queues)),
            "concurrency": worker.concurrency,
            "started_at": as_time(worker.started_at),
            "last_seen_at": as_time(worker.last_seen_at),
            "running": codec.dumps(list(worker.running), "running"),
        }
        self._rows(Q["worker_register"], args)

    @verb
    def worker_seen(self, owner: str, now: float, running: Sequence[str]) -> bool:
        args = {"owner": owner, "now": as_time(now), "running": codec.dumps(list(running))}
        return bool(self._rows(Q["worker_seen"], args))

    @verb
    def worker_remove(self, owner: str) -> None:
        self._rows(Q["worker_remove"], {"owner": owner})

    @verb
    def worker_list(self) -> list[WorkerInfo]:
        return [_worker(r) for r in self._rows(Q["worker_list"], {})]

    @verb
    def worker_prune(self, seen_before: float) -> int:
        return len(self._rows(Q["worker_prune"], {"before": as_time(seen_before)}))


def _worker(row: tuple[Any, ...]) -> WorkerInfo:
    return worker_from_row(row, codec.loads)
