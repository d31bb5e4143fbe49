"""Leases: renewals fenced by token and owner, releases, and the leadership of the
recovery sweep (see docs/leases-and-fencing.md)."""

from __future__ import annotations

from collections.abc import Mapping

from corral.storage.base import Progress, Renewal
from corral.storage.postgres.connection import Connected, verb
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import as_time, as_time_or_none


class Leases(Connected):
    """lease_renew_many, lease_release_many, leader_acquire."""

    @verb
    def lease_renew_many(
        self,
        owner: str,
        tokens: Mapping[str, int],
        now: float,
        lease_seconds: float,
        heartbeats: Mapping[str, float] | None = None,
        progress: Mapping[str, Progress] | None = None,
    ) -> Renewal:
        if not tokens:
            return Renewal(frozenset(), frozenset())
        beats = heartbeats or {}
        reported = progress or {}
        args = {
            "ids": list(tokens),
            "tokens": list(tokens.values()),
            "beats": [as_time_or_none(beats.get(pid)) for pid in tokens],
            "done": [reported.get(pid, (None, None))[0] for pid in tokens],
            "total": [reported.get(pid, (None, None))[1] for pid in tokens],
            "owner": owner,
            "expires": as_time(now + lease_seconds),
            "now": as_time(now),
        }
        rows = self._rows(Q["lease_renew_many"], args)
        held = {r[0] for r in rows}
        cancel = {r[0] for r in rows if r[1]}
        return Renewal(frozenset(set(tokens) - held), frozenset(cancel))

    @verb
    def lease_release_many(self, tokens: Mapping[str, int], now: float) -> list[str]:
        if not tokens:
            return []
        args = {"ids": list(tokens), "tokens": list(tokens.values()), "now": as_time(now)}
        released = {r[0] for r in self._rows(Q["lease_release_many"], args)}
        if released:
            self.notify_local()
        return [pid for pid in tokens if pid in released]

    @verb
    def leader_acquire(self, name: str, owner: str, now: float, ttl: float) -> bool:
        args = {"name": name, "owner": owner, "now": as_time(now), "expires": as_time(now + ttl)}
        return bool(self._rows(Q["leader_acquire"], args))
