"""docs/deploying.md: the systemd unit's fields parse (and `systemd-analyze verify` accepts
it where it is installed), its stop timeout outlasts the worker's grace, and the commands
of the unit and of the container recipe run as written against a real database: the
worker works, logs JSON, stops 0 on SIGTERM; the health check exits 0, or 3 when the
database cannot be reached."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import CORRAL, Corral, wait_until
from tests.e2e.test_docs_blocks import blocks, write_files

UNIT = "corral-worker@.service"
TASKS = """
from corral import App

app = App()


@app.job()
def add(a: int, b: int) -> int:
    return a + b
"""
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section], Key=Value lines (a key may repeat), # comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None and re.fullmatch(r"[A-Za-z]+", key), (number, raw)
        current.setdefault(key, []).append(value)
    return sections


def dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def seconds(text: str) -> float:
    """A systemd or corral time span: 45, 45s, 30s, 1m30s, 12h."""
    units = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(min|s|m|h|)", text))


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Corral]:
    write_files("deploying.md", tmp_path)
    (tmp_path / "tasks.py").write_text(TASKS)
    corral = Corral(tmp_path, app=None)
    try:
        yield corral
    finally:
        corral.cleanup()


def run_worker(corral: Corral, argv: list[str], env: dict[str, str]) -> str:
    """Run a worker command as the supervisor would; submit a job, see it done, stop it
    with SIGTERM: exit 0. Its log."""
    assert Path(argv[0]).name == "corral", argv
    corral.extra_env.update(env)
    worker = corral.start(*argv[1:])
    pid = corral.submit("add", "a=1", "b=2", app="tasks.py")
    assert corral.wait_status(pid, "completed", timeout=60)["result"] == 3
    wait_until(lambda: "add" in corral.log_of(worker), timeout=30, what="the iteration's line")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=45) == 0, corral.log_of(worker)
    return corral.log_of(worker)


def test_the_systemd_unit(project: Corral) -> None:
    c = project
    unit = parse_unit((c.cwd / UNIT).read_text())
    service = unit["Service"]
    env = dict(e.split("=", 1) for e in service["Environment"])
    assert env["CORRAL_DATABASE_URL"].startswith("postgresql://")
    [start] = service["ExecStart"]
    argv = shlex.split(start)
    grace = seconds(option(argv, "--grace"))
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the worker, not to its handlers
    assert seconds(service["TimeoutStopSec"][0]) > grace, "systemd would kill within the grace"
    assert "2" in service["RestartPreventExitStatus"][0].split()
    assert service["Restart"] == ["always"]  # 4 (a spent budget) restarts it
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]

    # The commands, as systemd would run them, on a real database.
    c.url = f"sqlite:///{c.cwd / 'corral.db'}"
    env["CORRAL_DATABASE_URL"] = c.url
    [pre] = service["ExecStartPre"]
    c.extra_env.update(env)
    assert c.run(*shlex.split(pre)[1:]).returncode == 0
    log = run_worker(c, argv, env)
    lines = [json.loads(line) for line in log.splitlines()]  # CORRAL_LOG_FORMAT=json
    assert any(r.get("outcome") == "completed" for r in lines), lines
    # Unreachable: ExecStartPre fails fast with 3 (restart after RestartSec).
    r = c.run(*shlex.split(pre)[1:], env={"CORRAL_DATABASE_URL": UNREACHABLE})
    assert r.returncode == 3, r.stderr

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the fields were parsed, not verified")
    # Verified as written, but with this machine's corral and directories.
    text = (c.cwd / UNIT).read_text()
    text = text.replace("/srv/app/venv/bin/corral", CORRAL[0]).replace("/srv/app", str(c.cwd))
    for name, extra in (("checked@.service", ""), ("bogus@.service", "Bogus=1\n")):
        path = c.cwd / name
        path.write_text(text.replace("[Install]", f"{extra}[Install]"))
        r = subprocess.run(
            [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        if extra:  # systemd-analyze does check: an unknown key is reported
            assert "Bogus" in r.stderr, r.stderr
        else:
            assert (r.returncode, r.stderr.strip()) == (0, ""), r.stderr


def test_the_container_recipe(project: Corral) -> None:
    c = project
    steps = dockerfile((c.cwd / "Dockerfile").read_text())
    instructions = dict(steps)
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    env = dict(kv.split("=", 1) for kv in shlex.split(instructions["ENV"]))
    assert env["CORRAL_APP"] == "tasks.py"
    cmd = json.loads(instructions["CMD"])
    health = instructions["HEALTHCHECK"]
    health_cmd = json.loads(health.split(" CMD ", 1)[1])

    c.url = f"sqlite:///{c.cwd / 'corral.db'}"
    log = run_worker(c, cmd, env)
    assert all(json.loads(line) for line in log.splitlines())
    # The health check: 0 while the database answers, 3 when it cannot be reached.
    assert c.run(*health_cmd[1:]).returncode == 0
    assert c.run(*health_cmd[1:], env={"CORRAL_DATABASE_URL": UNREACHABLE}).returncode == 3

    # The run command stops the container later than the worker's grace.
    [docker_run] = [b.code for b in blocks("deploying.md") if b.code.startswith("docker run")]
    stop_timeout = re.search(r"--stop-timeout (\d+)", docker_run)
    assert stop_timeout, docker_run
    assert float(stop_timeout.group(1)) > seconds(option(cmd, "--grace"))
