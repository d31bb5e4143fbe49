"""Async handlers run concurrently on one event loop of the worker, not a thread each, and
one stuck past its timeout is canceled rather than left holding a thread."""

from __future__ import annotations

import asyncio
import threading
import time

from corral import App, Context, Retry, Status, Worker, WorkerOptions
from tests.e2e.conftest import wait_until


def test_async_handlers_share_one_loop_and_overlap(app: App) -> None:
    threads: set[int] = set()
    running = 0
    most = 0

    @app.job()
    async def fetch(i: int) -> int:
        nonlocal running, most
        threads.add(threading.get_ident())
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.3)
        running -= 1
        return i

    ids = [s.id for s in app.submit_many("fetch", [{"i": i} for i in range(20)])]
    began = time.monotonic()
    Worker(app, WorkerOptions(once=True, concurrency=20, poll_interval=0.02)).run()
    took = time.monotonic() - began
    assert [app.get(pid).result for pid in ids] == list(range(20))
    assert len(threads) == 1, "every async handler ran on the worker's one event loop"
    assert most >= 10, f"at most {most} ran at once"
    assert took < 20 * 0.3  # they overlapped


def test_a_process_class_mixing_sync_and_async_handlers_runs(app: App) -> None:
    @app.process("mixed")
    class Mixed:
        def validate(self, ctx: Context) -> None:
            ctx.store["validated"] = True

        async def start(self, ctx: Context) -> None:
            await asyncio.sleep(0)
            ctx.store["started"] = True

        def step(self, ctx: Context) -> bool:
            return True

        async def finish(self, ctx: Context) -> str:
            return "done"

    p = app.submit("mixed")
    Worker(app, WorkerOptions(once=True, poll_interval=0.02)).run()
    done = app.get(p.id)
    assert (done.status, done.result) == (Status.COMPLETED, "done")
    assert done.store == {"validated": True, "started": True}


def test_an_async_handler_past_start_to_close_is_canceled_not_stuck(app: App) -> None:
    canceled = threading.Event()

    @app.job(start_to_close=0.3, retry=Retry(attempts=1))
    async def hangs() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            canceled.set()
            raise

    p = app.submit("hangs")
    worker = Worker(app, WorkerOptions(poll_interval=0.02, concurrency=1))
    out = []
    thread = threading.Thread(target=lambda: out.append(worker.run()))
    thread.start()
    try:
        wait_until(lambda: app.get(p.id).status.terminal, timeout=15, interval=0.02)
        assert canceled.wait(5)
        done = app.get(p.id)
        assert done.status is Status.FAILED and done.error is not None
        assert done.error.reason == "timeout"
    finally:
        worker.stop(immediately=True)
        thread.join(10)
    assert out[0].stuck == 0
