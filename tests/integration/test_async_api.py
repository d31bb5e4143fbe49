"""The App from an event loop: `asubmit`, `aget`, `await_result`, `acancel` never block the
loop (a FastAPI endpoint calls them), on every backend."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from corral import App, Status, Worker, WorkerOptions
from corral.errors import InvalidParams


def test_submit_and_await_the_result_without_blocking_the_loop(app: App) -> None:
    @app.job()
    def add(a: int, b: int) -> int:
        return a + b

    worker = Worker(app, WorkerOptions(poll_interval=0.02))
    thread = threading.Thread(target=worker.run)
    thread.start()

    async def scenario() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:  # runs only while the loop is free
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        beat = asyncio.create_task(ticker())
        submitted = await app.asubmit("add", {"a": 1, "b": 2}, custom_id="sum")
        assert (await app.aget(submitted.id)).id == submitted.id
        done = await app.await_result(submitted.id, timeout=10)
        beat.cancel()
        assert done.status is Status.COMPLETED
        return int(done.result), ticks

    try:
        began = time.monotonic()
        result, ticks = asyncio.run(scenario())
        assert result == 3
        # The loop kept turning while the database was asked and the worker ran.
        assert ticks >= 1 and time.monotonic() - began < 10
    finally:
        worker.stop(immediately=True)
        thread.join(10)


def test_bad_input_raises_the_same_errors(app: App) -> None:
    @app.job()
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(InvalidParams):
        asyncio.run(app.asubmit("add", {"a": "one", "b": 2}))

    async def cancel_at_once() -> Status:
        p = await app.asubmit("add", {"a": 1, "b": 2})
        return (await app.acancel(p.id)).status

    assert asyncio.run(cancel_at_once()) is Status.CANCELED
