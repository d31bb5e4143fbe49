"""Tokens of the HTTP API: made at random, shown once, stored as their SHA-256.

A token is `secrets.token_urlsafe(32)`: 256 random bits, not a password, so one fast hash
is enough (nothing to slow down a guess of). The CLI makes, lists and revokes them
(`corral token ...`); `corral serve` looks each request's token up by its hash.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from corral import ids
from corral.app import check_queue, check_text
from corral.errors import UsageError
from corral.storage.base import Storage, TokenInfo
from corral.views import iso

#: Characters of a token id that `corral token revoke` needs at least, as for process ids.
MIN_PREFIX = 8


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create_token(
    storage: Storage,
    client: str,
    *,
    admin: bool = False,
    worker: bool = False,
    queues: Sequence[str] | None = None,
    now: float,
) -> tuple[TokenInfo, str]:
    """Store a new token for `client`; the token itself, returned here, is stored nowhere."""
    if not isinstance(client, str) or not client.strip():
        raise UsageError("a token needs a client name: --client NAME")
    check_text("--client", client)
    for queue in queues or ():
        check_queue(queue, allow_all=False)
    info = TokenInfo(
        id=ids.new_id(),
        client=client,
        admin=admin,
        worker=worker,
        queues=tuple(queues) if queues else None,
        created_at=now,
    )
    secret = secrets.token_urlsafe(32)
    storage.token_insert(info, hash_token(secret))
    return info, secret


def find_token(storage: Storage, ref: str) -> TokenInfo:
    """The token a person named: its id, or a start of it (8 characters or more) that
    names one token only."""
    ref = ref.strip()
    if len(ref) < MIN_PREFIX:
        raise UsageError(
            f"{ref!r}: give a token's id, or its first {MIN_PREFIX} or more characters "
            "(`corral token list` shows them)"
        )
    found = [t for t in storage.token_list() if t.id.startswith(ref)]
    if not found:
        raise UsageError(f"no token id starts with {ref}")
    if len(found) > 1:
        raise UsageError(f"{ref} starts more than one token id; type more of it")
    return found[0]


def token_json(t: TokenInfo) -> dict[str, object]:
    return {
        "id": t.id,
        "client": t.client,
        "admin": t.admin,
        "worker": t.worker,
        "queues": None if t.queues is None else list(t.queues),
        "created_at": iso(t.created_at),
        "revoked_at": iso(t.revoked_at),
    }
