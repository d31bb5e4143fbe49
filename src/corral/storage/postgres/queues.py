"""Queues: pausing and resuming claims from a queue (`*`: every queue)."""

from __future__ import annotations

from corral.model import Status
from corral.storage.postgres.connection import Connected, verb
from corral.storage.postgres.queries import Q


class Queues(Connected):
    """queue_pause, queue_paused, queue_counts."""

    @verb
    def queue_pause(self, queue: str, paused: bool) -> None:
        if paused:
            self._rows(Q["queue_pause"], {"queue": queue})
        elif self._rows(Q["queue_resume"], {"queue": queue}):
            self.notify_local()

    @verb
    def queue_paused(self) -> list[str]:
        return [r[0] for r in self._rows(Q["queue_paused"], {})]

    @verb
    def queue_counts(self) -> dict[str, dict[Status, int]]:
        counts: dict[str, dict[Status, int]] = {}
        for queue, status, count in self._rows(Q["queue_counts"], {}):
            counts.setdefault(queue, {})[Status(status)] = int(count)
        return counts
