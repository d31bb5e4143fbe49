"""What the conformance suite's files share: processes to insert, claims and commits with
explicit times (no test depends on the wall clock)."""

from __future__ import annotations

import uuid
from typing import Any

from corral import model
from corral.model import Status
from corral.storage.base import Claim, Claimed, IterationCommit, NewProcess, Storage

T0 = 1_000_000.0


def new(job: str = "add", *, at: float = T0, **kw: object) -> NewProcess:
    fields: dict[str, object] = {"params": {"a": 1}, "created_at": at, "run_at": at}
    fields.update(kw)
    return NewProcess(id=str(uuid.uuid4()), job=job, **fields)  # type: ignore[arg-type]


def claim(
    storage: Storage,
    now: float = T0,
    limit: int = 1,
    owner: str = "w1",
    lease: float = 30.0,
    **kw: Any,
) -> list[Claimed]:
    return storage.process_claim(
        Claim(owner=owner, now=now, lease_seconds=lease, limit=limit, **kw)
    )


def complete(
    storage: Storage,
    claimed: Claimed,
    now: float = T0 + 1,
    to: Status | None = None,
    store: dict[str, Any] | None = None,
) -> list[str]:
    change = model.committed(claimed.process, now, store=store or {"n": 1}, progress=(1, 2), to=to)
    return storage.process_commit_many(
        [IterationCommit(claimed.process.id, claimed.token, change, now)]
    )


def put_in(
    storage: Storage, status: Status, *, at: float, priority: int = 0, cancel: bool = False
) -> str:
    """A process in the given status with no lease, through the storage's own verbs."""
    p = new(at=at, priority=priority)
    storage.process_insert_many([p])
    current = storage.process_get(p.id)
    assert current is not None
    change = model.Change.of(current).with_(status=status, cancel_requested=cancel)
    assert storage.process_update(p.id, current.version, change, at)
    return p.id
