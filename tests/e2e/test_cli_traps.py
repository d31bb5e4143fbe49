"""No silent traps: a command that only reads does not create a database; memory:// refuses
what would vanish on exit; an app file that does not load says where; `corral --version`;
pausing a queue no job uses warns; .gitignore covers every file corral puts beside a
database."""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from tests.e2e.conftest import Corral, wait_until
from tests.e2e.test_cli_errors import Case, assert_usage_error, check_cases

UNKNOWN_ID = "3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a"
ROOT = Path(__file__).resolve().parents[2]
NO_URL = {"CORRAL_DATABASE_URL": ""}


def test_commands_that_read_do_not_create_a_database(corral: Corral, tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    url = f"sqlite:///{missing}"
    cases = {}
    for command in (
        ("list",),
        ("list", "--json"),
        ("show", UNKNOWN_ID),
        ("wait", UNKNOWN_ID),
        ("cancel", UNKNOWN_ID),
        ("retry", UNKNOWN_ID),
    ):
        words = ("no database", str(missing))
        cases[" ".join(command)] = Case(("--database", url, *command), words)
        cases[f"{command[0]} (env, with a query)"] = Case(
            command, words, env={"CORRAL_DATABASE_URL": f"{url}?busy_timeout=5"}
        )
    # The default database, relative to the working directory.
    cases["list (default)"] = Case(("list",), ("no database", "corral.db"))
    corral.url = "sqlite:///corral.db"
    check_cases(corral, cases)
    assert not missing.exists()
    assert not (tmp_path / "corral.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())

    # `jobs` needs no database at all.
    assert "add" in corral.ok("--database", url, "jobs")
    assert not missing.exists()
    # A command that writes creates it, as always; then reading works.
    corral.url = url
    pid = corral.submit("add", "a=1")
    assert missing.exists()
    assert [p["id"] for p in corral.list()] == [pid]


def test_memory_refuses_what_would_vanish_and_execute_works(corral: Corral, tmp_path: Path) -> None:
    in_memory = tmp_path / "in_memory.py"
    in_memory.write_text(
        "from corral import App\napp = App('memory://')\n\n"
        "@app.job()\ndef add(a: int, b: int = 2) -> int:\n    return a + b\n"
    )
    cases = {}
    for command in (
        ("submit", "add", "-p", "a=1"),
        ("list",),
        ("show", UNKNOWN_ID),
        ("worker", "--once"),
        ("work", "--once"),
        ("worker",),
        ("pause",),
        ("prune",),
    ):
        name = " ".join(command)
        cases[f"--database memory:// {name}"] = Case(
            ("--database", "memory://", *command), ("memory://", "vanish", command[0])
        )
        # (CORRAL_DATABASE_URL, like --database, would override the app's own URL.)
        cases[f"App('memory://') {name}"] = Case(
            command, ("memory://", "vanish"), app=in_memory, env=NO_URL
        )
    check_cases(corral, cases)
    assert not (tmp_path / "corral.db").exists()

    runs = ((corral.app, ("--database", "memory://"), {}), (in_memory, (), NO_URL))
    for app, args, env in runs:
        r = corral.run(*args, "execute", "add", "-p", "a=40", app=app, env=env)
        assert r.returncode == 0, r.stderr
        assert "completed" in r.stderr, r.stderr
    assert not (tmp_path / "corral.db").exists()


def test_an_app_that_fails_to_load_names_file_and_line(corral: Corral, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("import json\n\nSETTINGS = json.loads('{oops')\n")
    apps = {
        "syntax.py": (
            "from corral import App\n\napp = App(\ndef broken(:\n",
            "line 4",
            "SyntaxError",
        ),
        "imports.py": ("import os\nimport no_such_dependency_xyz\n", "line 2", "ModuleNotFound"),
        "raises.py": ("x = 1\n\n\nraise ValueError('boom at import')\n", "line 4", "boom"),
        # The error is in a module the app imports, inside the standard library: the line
        # named is the user's own (helper.py line 3), not json's.
        "uses_helper.py": ("import helper\n", "line 3", "JSONDecodeError"),
        "exits.py": ("import sys\nsys.exit('no config')\n", "line 2", "sys.exit"),
    }
    for name, (source, _, _) in apps.items():
        (tmp_path / name).write_text(source)
    cases = {
        name: Case(("submit", "add"), (where, what), app=tmp_path / name)
        for name, (_, where, what) in apps.items()
    }
    check_cases(corral, cases)
    r = corral.run("submit", "add", app=tmp_path / "uses_helper.py")
    assert f"{tmp_path / 'helper.py'} line 3" in r.stderr, r.stderr

    # A module reference (module:attr) says the same.
    r = corral.run("list", app="uses_helper", env={"PYTHONPATH": str(tmp_path)})
    assert_usage_error(r, "helper.py line 3", "JSONDecodeError")

    traced = corral.run("--traceback", "submit", "add", app=tmp_path / "uses_helper.py")
    assert traced.returncode == 2
    assert "Traceback (most recent call last)" in traced.stderr
    assert "SETTINGS = json.loads('{oops')" in traced.stderr, traced.stderr
    assert traced.stderr.strip().splitlines()[-1].startswith("error: --app"), traced.stderr
    assert not (tmp_path / "corral.db").exists()


def test_version(corral: Corral) -> None:
    r = corral.run("--version", app=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"corral {metadata.version('corral')}\n"
    assert r.stderr == ""


def test_pausing_a_queue_no_job_uses_warns(corral: Corral) -> None:
    r = corral.run("pause", "--queue", "emials")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "paused emials"
    [line] = r.stderr.splitlines()
    assert line.startswith("warning:"), line
    assert "'emials'" in line and "default" in line, line

    for args, app in ((("pause", "--queue", "default"), corral.app), (("pause",), corral.app)):
        r = corral.run(*args, app=app)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
    r = corral.run("pause", "--queue", "emials", app=None)  # no app: nothing to compare with
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    corral.ok("resume", "--queue", "emials")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_gitignore_covers_every_file_beside_a_database(corral: Corral, tmp_path: Path) -> None:
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in ("corral.db", "jobs.sqlite3"):
        corral.url = f"sqlite:///{tmp_path / name}"
        corral.submit("add", "a=1")
        worker = corral.start_worker()  # a running worker: the WAL and its index exist
        wal = tmp_path / f"{name}-wal"
        wait_until(wal.exists, timeout=30, what="the WAL")
        beside = sorted(p.name for p in tmp_path.glob(f"{name}*"))
        assert len(beside) >= 4, beside  # the database, its WAL, its index, the writers' lock
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        untracked = sorted(line[3:] for line in status.splitlines())
        assert not [u for u in untracked if u.startswith(name)], (untracked, beside)
        assert corral.stop(worker) == 0
