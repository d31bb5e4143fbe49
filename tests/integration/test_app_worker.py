"""The App and the worker together, in one Python process, on every backend.

Scenarios as a user meets them: submit, let a worker run, read the outcome.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corral import (
    App,
    Context,
    CustomIdConflict,
    Invalid,
    InvalidId,
    InvalidParams,
    ProcessNotFound,
    Retry,
    RetryLater,
    Status,
    UnknownJob,
    UsageError,
    Worker,
    WorkerOptions,
)
from corral.storage.base import Claim
from tests.backends import backend_url


@pytest.fixture
def app(backend: str, tmp_path: Path) -> Iterator[App]:
    with backend_url(backend, tmp_path) as url:
        a = App(url, lease_seconds=5)
        yield a
        a.close()


def drain(app: App, **kw: Any) -> None:
    Worker(app, WorkerOptions(once=True, poll_interval=0.05, **kw)).run()


def kinds(app: App, pid: str) -> list[str]:
    return [e.kind for e in app.history(pid)]


# --- the happy paths -------------------------------------------------------------------------


def test_a_simple_job_completes_with_its_result(app: App) -> None:
    @app.job()
    def add(ctx: Context, a: int, b: int) -> int:
        return a + b

    p = app.submit("add", {"a": 1, "b": 2})
    assert (p.outcome, p.status) == ("created", Status.STARTING)
    drain(app)
    done = app.wait(p.id, timeout=5)
    assert (done.status, done.result, done.attempt) == (Status.COMPLETED, 3, 0)
    assert kinds(app, p.id) == ["submitted", "transition"]


def test_a_multi_step_process_keeps_its_store_between_iterations(app: App) -> None:
    seen: list[str] = []

    class Params(BaseModel):
        steps: int

    @app.process("count", params=Params)
    class Count:
        def start(self, ctx: Context[Params]) -> None:
            seen.append("start")
            ctx.store["n"] = 0

        def step(self, ctx: Context[Params]) -> bool:
            seen.append("step")
            ctx.store["n"] += 1
            ctx.progress(ctx.store["n"], ctx.params.steps)
            return bool(ctx.store["n"] >= ctx.params.steps)

        def finish(self, ctx: Context[Params]) -> dict[str, int]:
            seen.append("finish")
            return {"n": ctx.store["n"]}

    p = app.submit("count", {"steps": 4})
    drain(app)
    done = app.get(p.id)
    assert seen == ["start", "step", "step", "step", "step", "finish"]
    assert (done.status, done.store, done.result) == (Status.COMPLETED, {"n": 4}, {"n": 4})
    assert (done.progress_done, done.progress_total) == (4, 4)
    moves = [(e.from_status, e.to_status) for e in app.history(p.id) if e.kind == "transition"]
    assert moves == [
        (Status.STARTING, Status.RUNNING),
        (Status.RUNNING, Status.ENDING),
        (Status.ENDING, Status.COMPLETED),
    ]


def test_async_handlers_work_like_plain_ones(app: App) -> None:
    @app.job()
    async def slow_add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        return a + b

    @app.process("async_steps")
    class AsyncSteps:
        async def step(self, ctx: Context) -> bool:
            await asyncio.sleep(0)
            ctx.store["n"] = ctx.store.get("n", 0) + 1
            return bool(ctx.store["n"] == 3)

    a = app.submit("slow_add", {"a": 2, "b": 3})
    b = app.submit("async_steps")
    drain(app, concurrency=2)
    assert app.get(a.id).result == 5
    assert app.get(b.id).store == {"n": 3} and app.get(b.id).status is Status.COMPLETED


def test_concurrent_slots_complete_every_process_once(app: App) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    @app.job()
    def note(i: int) -> int:
        time.sleep(0.002)
        with lock:
            calls.append(i)
        return i

    ids = [app.submit("note", {"i": i}).id for i in range(60)]
    drain(app, concurrency=4)
    assert sorted(calls) == list(range(60))
    assert {app.get(pid).status for pid in ids} == {Status.COMPLETED}


# --- errors, rollbacks and retries -----------------------------------------------------------


def test_an_error_runs_the_rollback_and_records_type_message_traceback(app: App) -> None:
    rolled: list[dict[str, Any]] = []

    @app.process("breaks")
    class Breaks:
        def start(self, ctx: Context) -> None:
            ctx.store["tmp"] = "made"

        def step(self, ctx: Context) -> bool:
            ctx.store["half"] = True  # never saved: the iteration fails
            raise ValueError("disk full")

        def rollback(self, ctx: Context) -> None:
            rolled.append(dict(ctx.store))

    p = app.submit("breaks")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED
    assert done.error is not None
    assert (done.error.type, done.error.message) == ("ValueError", "disk full")
    assert "raise ValueError" in done.error.traceback
    assert rolled == [{"tmp": "made"}]
    assert done.stopped_status is Status.RUNNING


def test_a_generic_rollback_runs_for_jobs_without_their_own(app: App) -> None:
    cleaned: list[str] = []

    @app.job()
    def fails() -> None:
        raise RuntimeError("no")

    @app.handler(status="failing", priority=110)
    def cleanup(ctx: Context) -> None:
        cleaned.append(ctx.job)

    p = app.submit("fails")
    drain(app)
    assert cleaned == ["fails"] and app.get(p.id).status is Status.FAILED


def test_a_rollback_returning_false_is_called_until_it_is_done(app: App) -> None:
    calls: list[int] = []

    @app.process("unwind")
    class Unwind:
        def start(self, ctx: Context) -> None:
            ctx.store["done_steps"] = 3

        def step(self, ctx: Context) -> bool:
            raise OSError("lost the mount")

        def rollback(self, ctx: Context) -> bool:
            calls.append(ctx.store["done_steps"])
            ctx.store["done_steps"] -= 1  # undo one step per iteration, keeping its place
            return bool(ctx.store["done_steps"] == 0)

    p = app.submit("unwind")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and done.store == {"done_steps": 0}
    assert calls == [3, 2, 1]


def test_retries_follow_the_policy_and_are_in_the_history(app: App) -> None:
    tries: list[int] = []

    @app.job(retry=Retry(attempts=3, backoff=0, jitter=0))
    def flaky(ctx: Context) -> str:
        tries.append(ctx.attempt)
        if len(tries) < 3:
            raise ConnectionError("try again")
        return "ok"

    p = app.submit("flaky")
    drain(app)
    done = app.get(p.id)
    assert (done.status, done.result, tries) == (Status.COMPLETED, "ok", [1, 2, 3])
    assert kinds(app, p.id).count("retry_scheduled") == 2
    assert kinds(app, p.id).count("attempt") == 2


def test_attempts_spent_fail_the_process(app: App) -> None:
    @app.job(retry=Retry(attempts=2, backoff=0, jitter=0))
    def always() -> None:
        raise ConnectionError("down")

    p = app.submit("always")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and kinds(app, p.id).count("error") == 2


def test_retry_later_waits_without_using_an_attempt(app: App) -> None:
    @app.job(retry=Retry(attempts=1))
    def waits(ctx: Context) -> None:
        raise RetryLater(after=60, reason="file not there yet")

    p = app.submit("waits")
    before = app.clock()
    drain(app)
    pending = app.get(p.id)
    assert pending.status is Status.STARTING and pending.attempt == 0
    assert pending.run_at >= before + 60
    assert "retry_later" in kinds(app, p.id)


def test_validate_rejects_a_process_as_invalid_before_start(app: App) -> None:
    started: list[bool] = []

    @app.process("checked")
    class Checked:
        def validate(self, ctx: Context) -> None:
            raise Invalid("input file missing")

        def start(self, ctx: Context) -> None:
            started.append(True)

    p = app.submit("checked")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and not started
    assert done.error is not None and done.error.reason == "invalid"
    assert done.error.message == "input file missing"


def test_a_step_must_say_whether_it_is_done(app: App) -> None:
    @app.process("forgetful")
    class Forgetful:
        def step(self, ctx: Context) -> None:  # returns None: a mistake, not "call again"
            pass

    p = app.submit("forgetful")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and done.error is not None
    assert done.error.type == "TypeError" and "must return True" in done.error.message


def test_a_result_that_is_not_json_fails_the_process(app: App) -> None:
    @app.job()
    def weird() -> object:
        return object()

    p = app.submit("weird")
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.FAILED and "JSON" in (done.error.message if done.error else "")


# --- cancel and retry ------------------------------------------------------------------------


def test_cancel_before_start_ends_it_at_once(app: App) -> None:
    ran: list[bool] = []

    @app.job()
    def never() -> None:
        ran.append(True)

    p = app.submit("never")
    assert app.cancel(p.id).status is Status.CANCELED
    drain(app)
    assert not ran and app.get(p.id).status is Status.CANCELED


def test_cancel_of_a_started_process_rolls_it_back_then_ends_canceled(app: App) -> None:
    rolled: list[bool] = []

    @app.process("long")
    class Long:
        def step(self, ctx: Context) -> bool:
            return False  # would run forever

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("long")
    Worker(app, WorkerOptions(once=True, max_time=0.2, poll_interval=0.01)).run()
    assert app.get(p.id).status is Status.RUNNING
    assert app.cancel(p.id).cancel_requested
    drain(app)
    assert app.get(p.id).status is Status.CANCELED and rolled == [True]


def test_a_running_handler_sees_the_cancel_request(app: App) -> None:
    app.lease_seconds = 0.3  # renewals every 0.1 s carry the request to the handler
    rolled: list[bool] = []
    running = threading.Event()

    @app.process("patient")
    class Patient:
        def step(self, ctx: Context) -> bool:
            running.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ctx.heartbeat()  # raises Cancelled once asked
                time.sleep(0.02)
            return True

        def rollback(self, ctx: Context) -> None:
            rolled.append(True)

    p = app.submit("patient")
    worker = Worker(
        app, WorkerOptions(poll_interval=0.05), until=lambda: app.get(p.id).status.terminal
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert running.wait(5)
    app.cancel(p.id)
    thread.join(15)
    assert not thread.is_alive()
    assert app.get(p.id).status is Status.CANCELED and rolled == [True]


def test_retry_resumes_a_failed_process_where_it_stopped(app: App) -> None:
    fail = [True]

    @app.process("resumable")
    class Resumable:
        def start(self, ctx: Context) -> None:
            ctx.store["started"] = ctx.store.get("started", 0) + 1

        def step(self, ctx: Context) -> bool:
            if fail[0]:
                raise RuntimeError("transient")
            return True

    p = app.submit("resumable")
    drain(app)
    assert app.get(p.id).status is Status.FAILED
    fail[0] = False
    resumed = app.retry(p.id)
    assert resumed.status is Status.RUNNING and resumed.error is None
    drain(app)
    done = app.get(p.id)
    assert done.status is Status.COMPLETED and done.store == {"started": 1}
    with pytest.raises(UsageError.__mro__[1]):  # CorralError: only failed/canceled retry
        app.retry(p.id)


# --- leases: crash recovery and fencing ------------------------------------------------------


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
    clock[0] += 60  # the slow worker's lease expires; another worker takes over
    [thief] = app.storage.process_claim(Claim(owner="thief", now=clock[0], lease_seconds=60))
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


# --- submit ----------------------------------------------------------------------------------


def test_submit_with_a_custom_id_is_idempotent(app: App) -> None:
    @app.job()
    def add(a: int, b: int) -> int:
        return a + b

    first = app.submit("add", {"a": 1, "b": 2}, custom_id="sum-1")
    again = app.submit("add", {"b": 2, "a": 1}, custom_id="sum-1")
    assert (first.outcome, again.outcome, again.id) == ("created", "existing", first.id)
    with pytest.raises(CustomIdConflict):
        app.submit("add", {"a": 5, "b": 2}, custom_id="sum-1")
    assert len(app.list()) == 1


def test_concurrent_submitters_of_one_custom_id_create_one_process(app: App, backend: str) -> None:
    @app.job()
    def add(a: int, b: int) -> int:
        return a + b

    ids: list[str] = []
    lock = threading.Lock()
    # One App per thread, each with its own connection, as separate submitters would.
    apps = [app] if backend == "memory" else [App(app.database_url) for _ in range(8)]
    for other in apps:
        other.registry = app.registry

    def go(a: App) -> None:
        s = a.submit("add", {"a": 1, "b": 2}, custom_id="same")
        with lock:
            ids.append(s.id)

    threads = [threading.Thread(target=go, args=(apps[i % len(apps)],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 16 and len(set(ids)) == 1 and len(app.list()) == 1
    for other in apps:
        if other is not app:
            other.close()


def test_bad_input_is_a_clear_error_and_writes_nothing(app: App) -> None:
    @app.job()
    def add(a: int, b: int) -> int:
        return a + b

    @app.job()
    def anything(x: Any) -> None: ...

    bad: list[tuple[type[Exception], str, Any, dict[str, Any]]] = [
        (UnknownJob, "nope", {}, {}),
        (InvalidParams, "add", {"a": "one", "b": 2}, {}),
        (InvalidParams, "add", {"a": 1}, {}),
        (InvalidParams, "add", {"a": 1, "b": 2, "c": 3}, {}),
        (InvalidParams, "add", [1, 2], {}),
        (InvalidParams, "anything", {"x": object()}, {}),
        (InvalidParams, "anything", {"x": "x" * (1024 * 1024 + 1)}, {}),
        (UsageError, "add", {"a": 1, "b": 2}, {"custom_id": ""}),
        (UsageError, "add", {"a": 1, "b": 2}, {"priority": "high"}),
        (UsageError, "add", {"a": 1, "b": 2}, {"tags": {"a": 1}}),
        (UsageError, "add", {"a": 1, "b": 2}, {"run_at": "tomorrow"}),
    ]
    for error, job, params, kw in bad:
        with pytest.raises(error):
            app.submit(job, params, **kw)
    assert app.list() == []
    with pytest.raises(InvalidId, match="not a process id"):
        app.get("42")
    with pytest.raises(ProcessNotFound):
        app.get("3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a")


# --- operations ------------------------------------------------------------------------------


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


def test_submitters_in_separate_processes_create_one_process(backend: str, tmp_path: Path) -> None:
    if backend == "memory":
        pytest.skip("a memory database lives in one process")
    import subprocess
    import sys

    script = tmp_path / "jobs.py"
    script.write_text(
        "from corral import App\n"
        "app = App()\n"
        "@app.job()\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
    )
    submit = (
        "import sys; sys.path.insert(0, sys.argv[1]); from jobs import app; "
        "print(app.submit('add', {'a': 1, 'b': 2}, custom_id='once').id)"
    )
    with backend_url(backend, tmp_path) as url:
        env = {**__import__("os").environ, "CORRAL_DATABASE_URL": url}
        App(url).close()  # create the schema first: this test is about submits
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", submit, str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        ids = {p.communicate(timeout=60)[0].strip() for p in procs}
        assert all(p.returncode == 0 for p in procs)
        assert len(ids) == 1
        check = App(url)
        assert len(check.list()) == 1
        check.close()
