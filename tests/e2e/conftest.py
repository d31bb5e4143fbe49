"""Helpers for the end-to-end tests: real `corral` subprocesses on a per-test SQLite file.

`corral` (the fixture) runs the command line with cwd=tmp_path and its own database, and
kills whatever long-running subprocess a test left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
BASIC_APP = APPS / "e2e_basic.py"
CRASH_APP = APPS / "e2e_crash.py"
SHORT_LEASE_EXAMPLE = APPS / "short_lease_example.py"
EXAMPLE = HERE.parents[1] / "examples" / "create_data_file.py"

T = TypeVar("T")

#: `corral submit` for many processes in one Python start-up, through the public API:
#: reads [[job, params], ...] on stdin, prints the ids as a JSON array.
SUBMIT_MANY = """
import json, sys
from corral.loader import load_app
app = load_app(sys.argv[1])
ids = [app.submit(job, params).id for job, params in json.load(sys.stdin)]
app.close()
print(json.dumps(ids))
"""
#: `corral show --json` for many processes in one Python start-up (the same JSON).
SHOW_MANY = """
import json, sys
from corral.app import App
from corral.cli_output import process_json
app = App()
out = [process_json(app.get(i), app.history(i)) for i in json.load(sys.stdin)]
app.close()
print(json.dumps(out))
"""


def corral_command() -> list[str]:
    """The `corral` console script of this interpreter (its pid is the Python process
    itself, so a signal reaches the worker and no wrapper), else the same entry point."""
    script = Path(sys.executable).parent / "corral"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from corral.cli import main; main()"]


CORRAL = corral_command()
#: Marks the default of `app=` arguments: use the Corral's own app.
DEFAULT: Any = object()


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class Corral:
    """The command line, bound to one working directory, database and (optional) app."""

    def __init__(self, tmp_path: Path, app: Path | str | None = None) -> None:
        self.cwd = tmp_path
        self.db = tmp_path / "corral.db"
        self.url = f"sqlite:///{self.db}"
        self.app = app
        self.extra_env: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    # --- running commands ----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env["CORRAL_DATABASE_URL"] = self.url
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def argv(self, args: tuple[str, ...], app: Any = DEFAULT) -> list[str]:
        app = self.app if app is DEFAULT else app
        return [*CORRAL, *(["--app", str(app)] if app is not None else []), *args]

    def run(
        self, *args: str, app: Any = DEFAULT, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one command to its end; stdout and stderr are captured as text."""
        return subprocess.run(
            self.argv(args, app),
            cwd=self.cwd,
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, app: Any = DEFAULT, timeout: float = 60) -> str:
        """Run a command that must exit 0; return its stdout."""
        r = self.run(*args, app=app, timeout=timeout)
        assert r.returncode == 0, f"corral {' '.join(args)} exited {r.returncode}:\n{r.stderr}"
        return r.stdout

    def json(self, *args: str, app: Any = DEFAULT) -> Any:
        return json.loads(self.ok(*args, "--json", app=app))

    def start(self, *args: str, app: Any = DEFAULT) -> subprocess.Popen[bytes]:
        """Start a long-running command; its output goes to a log file in the work dir."""
        path = self.cwd / f"corral-{len(self.procs) + 1}.log"
        log = path.open("wb")
        try:
            proc = subprocess.Popen(
                self.argv(args, app),
                cwd=self.cwd,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def start_worker(self, *args: str, app: Any = DEFAULT) -> subprocess.Popen[bytes]:
        """`corral worker ARGS` (INFO logs, so that `stop` can tell when it is ready)."""
        return self.start("--log-level", "INFO", "worker", *args, app=app)

    def stop(self, worker: subprocess.Popen[bytes], timeout: float = 30) -> int:
        """SIGTERM a worker once it is up (its signal handlers installed); its exit code.

        A SIGTERM that arrives while Python is still importing kills it outright (-15), as
        it would any program: that is not what the graceful-stop tests are about."""
        wait_until(
            lambda: worker.poll() is not None or " started (concurrency" in self.log_of(worker),
            timeout=30,
            what="the worker to start",
        )
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        return worker.wait(timeout=timeout)

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=30)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # a zombie: leave it
                proc.wait(timeout=30)

    # --- the usual conversations ---------------------------------------------------------
    def submit(self, job: str, *params: str, app: Any = DEFAULT, **options: str) -> str:
        args = [job, *(x for p in params for x in ("-p", p))]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", value]
        out = self.json("submit", *args, app=app)
        assert out["outcome"] == "created", out
        return str(out["id"])

    def submit_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Submit many processes at once (one Python start-up instead of one per process)."""
        return self._script(SUBMIT_MANY, [str(self.app)], items)

    def show_many(self, ids: list[str]) -> list[dict[str, Any]]:
        """What `show --json` prints, for many processes at once."""
        return self._script(SHOW_MANY, [], ids)

    def _script(self, script: str, args: list[str], payload: Any) -> Any:
        r = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=self.cwd,
            env=self.env(),
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def show(self, process_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.json("show", process_id)
        return result

    def list(self, *args: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.json("list", "--limit", "1000", *args)
        return result

    def wait_status(self, process_id: str, *statuses: str, timeout: float) -> dict[str, Any]:
        return wait_until(
            lambda: (p := self.show(process_id))["status"] in statuses and p,
            timeout=timeout,
            interval=0.2,
            what=f"process {process_id} to be {' or '.join(statuses)}",
        )


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    """The command line with the basic test app, on this test's own database."""
    c = Corral(tmp_path, BASIC_APP)
    try:
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def crash_corral(tmp_path: Path) -> Iterator[Corral]:
    """The command line with the crash test app and a short lease (1.5 s)."""
    c = Corral(tmp_path, CRASH_APP)
    c.extra_env["E2E_LEASE_SECONDS"] = "1.5"
    try:
        yield c
    finally:
        c.cleanup()


def history_kinds(process: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in process["history"]]


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)
