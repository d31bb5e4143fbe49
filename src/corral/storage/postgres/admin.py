"""Administrative verbs: a change decided elsewhere (cancel, retry, a timeout) applied if
the process did not move meanwhile, the sweep's search for expired timeouts, pruning."""

from __future__ import annotations

from collections.abc import Mapping

from corral.model import Change
from corral.storage import codec, dependents
from corral.storage.base import TimedOut
from corral.storage.postgres.connection import Connected, verb
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import as_time, change_args, decode_process, event_args


class AdminVerbs(Connected):
    """process_update (and through it process_update_many), process_prune,
    process_prune_expired, process_timed_out."""

    @verb
    def process_update(
        self,
        process_id: str,
        expected_version: int,
        change: Change,
        now: float,
        *,
        revoke_lease: bool = False,
    ) -> bool:
        events = [codec.event_to_row(e, process_id) for e in change.events]
        args = {
            **change_args(change),
            **event_args(events),
            "cancel_requested": change.cancel_requested,
            "now": as_time(now),
            "id": process_id,
            "version": expected_version,
            "revoke": revoke_lease,
            "reopen": dependents.reopened_by(change),
        }
        updated = bool(self._rows(Q["process_update"], args)[0][0])
        if updated:
            self.notify_local()
        return updated

    @verb
    def process_prune(self, finished_before: float) -> int:
        return int(self._rows(Q["process_prune"], {"before": as_time(finished_before)})[0][0])

    @verb
    def process_prunable(self, finished_before: float) -> dict[str, int]:
        rows = self._rows(Q["process_prunable"], {"before": as_time(finished_before)})
        return {job: int(n) for job, n in rows}

    @verb
    def process_prune_expired(self, cutoffs: Mapping[str, float], limit: int) -> int:
        if not cutoffs or limit <= 0:
            return 0
        args = {"jobs": list(cutoffs), "before": list(cutoffs.values()), "limit": limit}
        # Two statements: the second's snapshot, taken once the rows are locked, sees any
        # dependent that a submit added to one of them before it let go of its lock.
        with self._connection() as conn, conn.transaction():
            self._rows(Q["process_expired_plan"], {}, conn)
            ids = [r[0] for r in self._rows(Q["process_expired_lock"], args, conn)]
            if not ids:
                return 0
            return int(self._rows(Q["process_expired_delete"], {"ids": ids}, conn)[0][0])

    @verb
    def process_timed_out(self, now: float, limit: int) -> list[TimedOut]:
        rows = self._rows(Q["process_timed_out"], {"now": as_time(now), "limit": limit})
        return [TimedOut(decode_process(r), r[-1]) for r in rows]
