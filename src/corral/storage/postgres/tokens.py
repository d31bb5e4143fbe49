"""The HTTP API's tokens (corral_token, by hash), and the counts of `GET /stats`."""

from __future__ import annotations

from corral.model import Status
from corral.storage import codec
from corral.storage.base import ProcessStats, TokenInfo
from corral.storage.postgres.connection import Connected, verb
from corral.storage.postgres.queries import Q
from corral.storage.postgres.values import as_time
from corral.storage.shared import token_from_row


class Tokens(Connected):
    """token_insert, token_by_hash, token_list, token_revoke, process_stats,
    worker_claim_get, worker_claim_put."""

    @verb
    def token_insert(self, token: TokenInfo, token_hash: str) -> None:
        args = {
            "id": token.id,
            "client": token.client,
            "hash": token_hash,
            "admin": token.admin,
            "worker": token.worker,
            "queues": None if token.queues is None else codec.dumps(list(token.queues)),
            "created_at": as_time(token.created_at),
        }
        self._rows(Q["token_insert"], args)

    @verb
    def token_by_hash(self, token_hash: str) -> TokenInfo | None:
        rows = self._rows(Q["token_by_hash"], {"hash": token_hash})
        return token_from_row(rows[0], codec.loads) if rows else None

    @verb
    def token_list(self) -> list[TokenInfo]:
        return [token_from_row(r, codec.loads) for r in self._rows(Q["token_list"], {})]

    @verb
    def token_revoke(self, token_id: str, now: float) -> bool:
        return bool(self._rows(Q["token_revoke"], {"id": token_id, "now": as_time(now)}))

    @verb
    def process_stats(self, since: float, client_id: str | None = None) -> ProcessStats:
        args = {"client": client_id, "since": as_time(since)}
        counts = [
            (queue, job, Status(status), int(n))
            for queue, job, status, n in self._rows(Q["process_stats_counts"], args)
        ]
        completions = [
            (float(minute), int(n))
            for minute, n in self._rows(Q["process_stats_completions"], args)
        ]
        return ProcessStats(counts, completions)

    @verb
    def worker_claim_get(self, client: str, claim_id: str) -> str | None:
        rows = self._rows(Q["worker_claim_get"], {"client": client, "claim_id": claim_id})
        return str(rows[0][0]) if rows else None

    @verb
    def worker_claim_put(
        self, client: str, claim_id: str, answer: str, now: float, keep: float
    ) -> str:
        key = {"client": client, "claim_id": claim_id}
        with self._connection() as conn, conn.transaction():
            self._rows(Q["worker_claim_prune"], {"before": now - keep}, conn)
            self._rows(Q["worker_claim_put"], {**key, "answer": answer, "now": now}, conn)
            return str(self._rows(Q["worker_claim_get"], key, conn)[0][0])
