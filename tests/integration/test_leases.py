"""Leases: a dead worker's process taken over, a lost lease writing nothing, a stopped
worker giving its leases back.

On every backend, the App and a worker in one Python process (the command line's side is
in tests/e2e)."""

from __future__ import annotations

import threading

from corral import (
    App,
    Context,
    Retry,
    Status,
    Worker,
    WorkerOptions,
)
from corral.storage.base import Claim
from tests.integration.common import drain, kinds


def test_a_dead_workers_lease_is_recovered_by_the_next_claim(app: App) -> None:
    clock = [1_000_000.0]
    app.clock = lambda: clock[0]

    @app.job()
    def once() -> str:
        return "done"

    p = app.submit("once")
    app.storage.process_claim(Claim(owner="dead", now=clock[0], lease_seconds=5))
    drain(app)
    assert app.get(p.id).status is Status.STARTING  # lease still live: nobody takes it
    clock[0] += 6
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.COMPLETED and done.result == "done"
    events = app.history(p.id)
    expired = [e for e in events if e.kind == "lease_expired"]
    assert expired and expired[0].detail["previous_owner"] == "dead"


def test_a_lease_lost_too_often_fails_the_process_with_its_rollback(app: App) -> None:
    clock = [1_000_000.0]
    app.clock = lambda: clock[0]
    rolled: list[bool] = []

    @app.process("fragile", retry=Retry(attempts=2))
    class Fragile:
        def step(self, ctx: Context) -> bool:
            return True

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("fragile")
    for owner in ("dead1", "dead2"):
        app.storage.process_claim(Claim(owner=owner, now=clock[0], lease_seconds=5))
        clock[0] += 6
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and rolled == [True]
    assert done.error is not None and done.error.reason == "lease_lost"


def test_a_worker_that_lost_its_lease_writes_nothing(app: App) -> None:
    clock = [1_000_000.0]
    app.clock = lambda: clock[0]
    in_handler, stolen = threading.Event(), threading.Event()

    @app.process("slow")
    class Slow:
        def step(self, ctx: Context) -> bool:
            ctx.store["by"] = "slow worker"
            in_handler.set()
            assert stolen.wait(10)
            return True

    p = app.submit("slow")
    thread = threading.Thread(target=drain, args=(app,))
    thread.start()
    assert in_handler.wait(10)
    # Another worker, a minute later by its clock, finds the slow worker's lease expired
    # and takes over. (Moving the shared clock instead would race the slow worker's
    # renewer, which extends its lease from whatever the clock says when it runs.)
    later = clock[0] + 60
    [thief] = app.storage.process_claim(Claim(owner="thief", now=later, lease_seconds=60))
    stolen.set()
    thread.join(10)
    current = app.get(p.id)
    assert current.lease_owner == "thief" and current.store == {}
    assert current.status is Status.RUNNING  # the step's move to `completed` did not land
    assert "lease_lost" in kinds(app, p.id)
    assert thief.recovered


def test_a_stopped_worker_gives_its_leases_back(app: App) -> None:
    started = threading.Event()
    release = threading.Event()

    @app.job()
    def blocks() -> None:
        started.set()
        release.wait(10)

    p = app.submit("blocks")
    worker = Worker(app, WorkerOptions(grace=0.1, poll_interval=0.05))
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(10)
    worker.stop()
    thread.join(10)
    release.set()
    back = app.get(p.id)
    assert not back.leased and back.attempt == 0 and worker.stats.released == 1
    assert "released" in kinds(app, p.id)
