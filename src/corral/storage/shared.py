"""What every backend does the same way: the custom-id rule of idempotent submit, the
bookkeeping of wake-ups (the epoch a waiter compares with), and reading a worker
registry row and a token's row."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from corral.errors import CustomIdConflict
from corral.model import Process
from corral.storage import codec
from corral.storage.base import NewProcess, TokenInfo, WorkerInfo


def same_submit(
    existing: Process, new: NewProcess, params_json: str, *, same_params: bool | None = None
) -> bool:
    """Whether a process already holding `new`'s custom id is the same submit (same job,
    same parameters): then submitting again returns it. Raises CustomIdConflict if not.

    Parameters are compared by their canonical text, unless the backend compared them
    itself (`same_params`: PostgreSQL compares jsonb values, as jsonb keeps no text)."""
    if same_params is None:
        same_params = codec.dumps(existing.params) == params_json
    if existing.job != new.job or not same_params:
        raise CustomIdConflict(
            f"custom id {new.custom_id!r} already names process {existing.id} of job "
            f"{existing.job!r} with other parameters"
        )
    return True


class Wakeups:
    """An epoch that grows with every change that may create work, and waits on it.

    `epoch()` is read by a waiter before it looks for work; `wait(epoch, timeout)` returns
    True as soon as the epoch has moved past it (something changed since the waiter
    looked), or False after `timeout`. `bump()` records a change: a write through this
    storage, or another process's write as the backend learns of it (NOTIFY, inotify)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._epoch = 0

    def epoch(self) -> int:
        return self._epoch

    def bump(self) -> None:
        with self._changed:
            self._epoch += 1
            self._changed.notify_all()

    def wait(self, epoch: int, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._changed:
            while self._epoch == epoch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True


def worker_from_row(row: Sequence[Any], loads: Callable[[Any], Any]) -> WorkerInfo:
    """A registry row (owner, host, pid, app, jobs, queues, concurrency, started_at,
    last_seen_at, running; times in seconds) as a WorkerInfo; `loads` reads the backend's
    JSON arrays."""
    owner, host, pid, app, jobs, queues, concurrency, started_at, last_seen_at, running = row
    return WorkerInfo(
        owner=owner,
        host=host,
        pid=pid,
        app=app,
        jobs=loads(jobs),
        queues=None if queues is None else loads(queues),
        concurrency=concurrency,
        started_at=started_at,
        last_seen_at=last_seen_at,
        running=loads(running),
    )


def token_from_row(row: Sequence[Any], loads: Callable[[Any], Any]) -> TokenInfo:
    """A token's row (id, client, admin, worker, queues, created_at, revoked_at; times in
    seconds) as a TokenInfo; `loads` reads the backend's JSON array of queues."""
    token_id, client, admin, worker, queues, created_at, revoked_at = row
    return TokenInfo(
        id=token_id,
        client=client,
        admin=bool(admin),
        worker=bool(worker),
        queues=None if queues is None else tuple(loads(queues)),
        created_at=float(created_at),
        revoked_at=None if revoked_at is None else float(revoked_at),
    )
