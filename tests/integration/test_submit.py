"""Submit: idempotent by custom id, across threads and processes; bad input writes nothing.

On every backend, the App and a worker in one Python process (the command line's side is
in tests/e2e)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from corral import (
    App,
    CustomIdConflict,
    InvalidId,
    InvalidParams,
    ProcessNotFound,
    UnknownJob,
    UsageError,
)
from tests.backends import backend_url


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
