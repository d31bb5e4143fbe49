"""Operations: pausing queues, pruning, listing.

On every backend, the App and a worker in one Python process (the command line's side is
in tests/e2e)."""

from __future__ import annotations

import pytest

from corral import (
    App,
    ProcessNotFound,
    Status,
    UsageError,
)
from tests.integration.common import drain


def test_paused_workers_claim_nothing_until_resumed(app: App) -> None:
    @app.job()
    def job() -> int:
        return 1

    p = app.submit("job")
    app.pause()
    drain(app)
    assert app.get(p.id).status is Status.STARTING
    app.resume()
    drain(app)
    assert app.get(p.id).status is Status.COMPLETED


def test_prune_deletes_only_old_finished_processes(app: App) -> None:
    clock = [1_000_000.0]
    app.clock = lambda: clock[0]

    @app.job()
    def job() -> int:
        return 1

    old = app.submit("job")
    drain(app)
    clock[0] += 100 * 86400
    pending = app.submit("job")
    assert app.prune(older_than=90 * 86400) == 1
    with pytest.raises(ProcessNotFound):
        app.get(old.id)
    assert app.get(pending.id).status is Status.STARTING


def test_list_filters_by_status_and_job(app: App) -> None:
    @app.job()
    def ok() -> None: ...

    @app.job()
    def ko() -> None:
        raise ValueError("x")

    a, b = app.submit("ok"), app.submit("ko")
    drain(app)
    assert [p.id for p in app.list(status="failed")] == [b.id]
    assert [p.id for p in app.list(job="ok")] == [a.id]
    with pytest.raises(UsageError, match="unknown status"):
        app.list(status="done")
