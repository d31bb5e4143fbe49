"""The `corral` command line, end to end: bad input exits 2 with one line and writes
nothing; the everyday commands do what the README promises."""

from __future__ import annotations

import json
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.conftest import BASIC_APP, DEFAULT, Corral, history_kinds

UNKNOWN_ID = "3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a"
#: The process fields `show --json` gives; `list --json` gives them but history.
SHOW_FIELDS = {
    "id",
    "job",
    "params",
    "status",
    "store",
    "result",
    "error",
    "progress",
    "attempt",
    "custom_id",
    "client_id",
    "created_at",
    "updated_at",
    "history",
}


def assert_usage_error(r: subprocess.CompletedProcess[str], *words: str, code: int = 2) -> str:
    """Exit `code` (2: bad usage or input; 3: the database is unreachable, try again), one
    line on stderr naming the problem (each of `words`), no traceback."""
    assert r.returncode == code, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr}"
    line = lines[0]
    for word in words:  # "a|b": either will do
        alternatives = word.lower().split("|")
        assert any(a in line.lower() for a in alternatives), f"{word!r} not in {line!r}"
    assert r.stdout == "", r.stdout
    return line


def assert_nothing_written(corral: Corral) -> None:
    """No process in the database, or no database at all (`list` would not create one)."""
    if corral.db.exists():
        assert corral.json("list") == []


# --- bad input: exit 2, one line, nothing written ------------------------------------------


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    words: tuple[str, ...]
    app: Any = DEFAULT
    env: dict[str, str] | None = None
    code: int = 2


def check_cases(corral: Corral, cases: dict[str, Case]) -> None:
    """Run every case (a few at a time: each is a Python start-up), then report all the
    cases that failed at once."""

    def run(case: Case) -> subprocess.CompletedProcess[str]:
        return corral.run(*case.args, app=case.app, env=case.env, timeout=30)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, cases.values()))
    problems = []
    for (name, case), result in zip(cases.items(), results, strict=True):
        try:
            assert_usage_error(result, *case.words, code=case.code)
        except AssertionError as exc:
            problems.append(f"{name} (corral {' '.join(case.args)}): {exc}")
    assert not problems, "\n\n".join(problems)


def test_bad_submit_exits_2_and_writes_nothing(corral: Corral) -> None:
    check_cases(
        corral,
        {
            "unknown job": Case(("submit", "nope"), ("unknown job", "nope")),
            "bad parameter type": Case(("submit", "add", "-p", "a=abc"), ("'a'", "integer")),
            "missing parameter": Case(("submit", "add"), ("missing", "'a'")),
            "unknown parameter": Case(
                ("submit", "add", "-p", "a=1", "-p", "zz=3"), ("unknown", "zz")
            ),
            "malformed -p": Case(("submit", "add", "-p", "a"), ("key=value",)),
            "malformed -p, no key": Case(("submit", "add", "-p", "=1"), ("key=value",)),
            "bad type, --json": Case(("submit", "add", "-p", "a=abc", "--json"), ("'a'",)),
            "custom id too long": Case(
                ("submit", "add", "-p", "a=1", "--custom-id", "x" * 300), ("custom",)
            ),
            "bad --run-at": Case(("submit", "add", "-p", "a=1", "--run-at", "soon"), ("--run-at",)),
            "missing --params-file": Case(
                ("submit", "add", "--params-file", "nowhere.json"), ("--params-file", "nowhere")
            ),
            "execute unknown job": Case(("execute", "nope"), ("unknown job", "nope")),
            "execute bad type": Case(("execute", "add", "-p", "a=abc"), ("'a'", "integer")),
            "execute missing parameter": Case(("execute", "add"), ("missing", "'a'")),
            "execute malformed -p": Case(("execute", "add", "-p", "a"), ("key=value",)),
        },
    )
    assert_nothing_written(corral)


def test_malformed_or_unknown_id_exits_2(corral: Corral) -> None:
    corral.ok("migrate")  # a database without that process
    cases = {}
    for command in ("show", "cancel", "retry"):
        for bad_id in ("xyz", "", "3f2b1c9", "3f2b1c9e%"):
            cases[f"{command} {bad_id!r}"] = Case((command, bad_id), ("not a process id",))
        cases[f"{command} unknown"] = Case((command, UNKNOWN_ID), ("no process", UNKNOWN_ID))
        # The start of an id (8 characters or more) that starts none.
        cases[f"{command} unknown prefix"] = Case(
            (command, UNKNOWN_ID[:23]), ("no process id starts with", UNKNOWN_ID[:23])
        )
    check_cases(corral, cases)
    assert_nothing_written(corral)


def test_unusable_database_exits_2_and_unreachable_3(corral: Corral, tmp_path: Path) -> None:
    (tmp_path / "not-sqlite.db").write_text("this is not a database\n" * 100)
    before = (tmp_path / "not-sqlite.db").read_bytes()
    (tmp_path / "a-directory").mkdir()
    urls = {
        "missing directory": ("sqlite:///nonexistent_dir/x.db", ("nonexistent_dir",)),
        "not a SQLite file": ("sqlite:///not-sqlite.db", ("not-sqlite.db",)),
        "a directory": (f"sqlite:///{tmp_path / 'a-directory'}", ("a-directory",)),
        "unreachable PostgreSQL": (
            "postgresql://nobody@127.0.0.1:1/x",
            ("postgres|127.0.0.1|connect",),
        ),
        "unknown scheme": ("foo://x", ("foo",)),
        "no scheme": ("corral.db", ("scheme",)),
    }
    cases = {}
    # An unreachable server is transient (exit 3: try again); the rest will not get better.
    codes = {"unreachable PostgreSQL": 3}
    for name, (url, words) in urls.items():
        code = codes.get(name, 2)
        cases[f"{name}: submit"] = Case(
            ("--database", url, "submit", "add", "-p", "a=1"), words, code=code
        )
        cases[f"{name}: list (env)"] = Case(
            ("list",), words, env={"CORRAL_DATABASE_URL": url}, code=code
        )
    for name in ("missing directory", "not a SQLite file", "unreachable PostgreSQL"):
        url, words = urls[name]
        code = codes.get(name, 2)
        cases[f"{name}: work --once"] = Case(
            ("--database", url, "work", "--once"), words, code=code
        )
        cases[f"{name}: show"] = Case(("--database", url, "show", UNKNOWN_ID), words, code=code)
    check_cases(corral, cases)
    assert (tmp_path / "not-sqlite.db").read_bytes() == before
    assert not (tmp_path / "nonexistent_dir").exists()
    assert list((tmp_path / "a-directory").iterdir()) == []
    assert not (tmp_path / "corral.db").exists(), "the default database was created"


def test_app_errors_exit_2(corral: Corral, tmp_path: Path) -> None:
    submit = ("submit", "add", "-p", "a=1")
    cases = {
        "missing file": Case(submit, ("missing.py", "no such file"), app=tmp_path / "missing.py"),
        "missing attribute": Case(submit, ("missing_attr",), app=f"{BASIC_APP}:missing_attr"),
        "not an App": Case(submit, ("not a corral App",), app=f"{BASIC_APP}:add"),
        "missing module": Case(submit, ("no_such_module_anywhere",), app="no_such_module_anywhere"),
    }
    for command in (submit, ("execute", "add", "-p", "a=1"), ("jobs",), ("work", "--once")):
        cases[f"no --app: {command[0]}"] = Case(command, ("--app",), app=None)
    check_cases(corral, cases)
    assert_nothing_written(corral)


def test_retry_or_cancel_in_the_wrong_status_exits_2(corral: Corral) -> None:
    pid = corral.submit("add", "a=1")
    assert_usage_error(corral.run("retry", pid), "failed or canceled", "starting")
    process = corral.show(pid)
    assert process["status"] == "starting"
    assert history_kinds(process) == ["submitted"], "a refused retry wrote history"

    corral.ok("work", "--once")
    assert corral.show(pid)["status"] == "completed"
    assert_usage_error(corral.run("retry", pid), "completed")
    assert_usage_error(corral.run("cancel", pid), "completed")
    process = corral.show(pid)
    assert process["status"] == "completed"
    assert process["result"] == 3


def test_other_bad_options_exit_2(corral: Corral) -> None:
    assert_usage_error(corral.run("list", "--status", "sleeping"), "sleeping")
    assert_usage_error(corral.run("prune", "--older-than", "a while"), "--older-than")
    assert_usage_error(corral.run("work", "--once", "--max-time", "0"), "--max-time")
    assert_nothing_written(corral)


# --- the happy paths -------------------------------------------------------------------------


def test_submit_json_and_custom_id(corral: Corral) -> None:
    out = corral.json("submit", "add", "-p", "a=1")
    assert set(out) == {"id", "job", "status", "outcome"}
    assert str(uuid.UUID(out["id"])) == out["id"]
    assert (out["job"], out["status"], out["outcome"]) == ("add", "starting", "created")

    first = corral.json("submit", "add", "-p", "a=5", "--custom-id", "sum-5")
    again = corral.json("submit", "add", "-p", "a=5", "--custom-id", "sum-5")
    assert first["outcome"] == "created"
    assert again["outcome"] == "existing"
    assert again["id"] == first["id"]

    # Without --json: "<id> existing".
    plain = corral.ok("submit", "add", "-p", "a=5", "--custom-id", "sum-5").split()
    assert plain == [first["id"], "existing"]

    # The same custom id with other parameters, or another job: a conflict, nothing written.
    r = corral.run("submit", "add", "-p", "a=6", "--custom-id", "sum-5", "--json")
    assert_usage_error(r, "sum-5")
    r = corral.run("submit", "greet", "-p", "name=x", "--custom-id", "sum-5")
    assert_usage_error(r, "sum-5")
    processes = corral.list()
    assert sorted(p["id"] for p in processes) == sorted([out["id"], first["id"]])


def test_list_and_show_json_fields(corral: Corral) -> None:
    simple = corral.submit("add", "a=40")
    multi = corral.submit("count_to", "n=3")
    text = corral.submit("greet", "name=123")  # a string parameter is not read as JSON
    corral.ok("work", "--once")

    listed = corral.list()
    assert [p["id"] for p in listed] == [text, multi, simple], "not newest first"
    for p in listed:
        assert set(p) >= SHOW_FIELDS - {"history"}, SHOW_FIELDS - set(p)
        assert "history" not in p
        assert p["status"] == "completed"
    assert [p["id"] for p in corral.list("--job", "add")] == [simple]
    assert [p["id"] for p in corral.list("--status", "completed", "--limit", "1")] == [text]
    assert corral.list("--status", "failed") == []

    p = corral.show(multi)
    assert set(p) >= SHOW_FIELDS, SHOW_FIELDS - set(p)
    assert p["job"] == "count_to"
    assert p["params"] == {"n": 3, "path": None}
    assert p["store"] == {"i": 3, "total": 6}
    assert p["result"] == {"steps": 3, "total": 6}
    assert p["progress"] == {"done": 3, "total": 3}
    assert p["error"] is None
    assert p["attempt"] == 0
    assert (p["custom_id"], p["client_id"]) == (None, "")
    assert p["created_at"] <= p["updated_at"]
    moves = [(e["from"], e["to"]) for e in p["history"] if e["kind"] == "transition"]
    assert moves == [("starting", "running"), ("running", "ending"), ("ending", "completed")]
    assert p["history"][0]["kind"] == "submitted"

    assert corral.show(simple)["result"] == 42
    assert corral.show(text)["params"] == {"name": "123"}
    assert corral.show(text)["result"] == "hello 123"


def test_jobs_lists_handlers_per_status(corral: Corral) -> None:
    jobs = {j["name"]: j for j in corral.json("jobs")}
    generic = "cleanup (generic, order 110)"
    expected = {
        "add": {"starting": "add", "failing": generic},
        "record": {"starting": "record", "failing": generic},
        "double": {"starting": "double", "failing": generic},
        "count_to": {
            "starting": "CountTo.start",
            "running": "CountTo.step",
            "ending": "CountTo.finish",
            "failing": generic,
        },
        "async_count": {
            "starting": "-",
            "running": "AsyncCount.step",
            "ending": "AsyncCount.finish",
            "failing": generic,
        },
        "fragile": {
            "starting": "Fragile.start",
            "running": "Fragile.step",
            "ending": "-",
            "failing": "Fragile.rollback",  # a job's own rollback wins over the generic one
        },
    }
    for job, handlers in expected.items():
        assert jobs[job]["handlers"] == handlers, (job, jobs[job]["handlers"])

    # The same in words: each job, then its handlers, in the order of the statuses.
    text = corral.ok("jobs")
    at = 0
    for cell in ("count_to", "CountTo.start", "CountTo.step", "CountTo.finish", generic):
        found = text.find(cell, at)
        assert found >= 0, f"{cell!r} missing or out of order in:\n{text}"
        at = found + len(cell)


def test_cancel_a_process_that_never_started(corral: Corral) -> None:
    pid = corral.submit("add", "a=1")
    out = corral.ok("cancel", pid)
    assert out.split() == [pid, "canceled"]
    p = corral.show(pid)
    assert p["status"] == "canceled"
    assert p["result"] is None
    assert ("starting", "canceled") in [(e["from"], e["to"]) for e in p["history"]]
    corral.ok("work", "--once")
    assert corral.show(pid)["status"] == "canceled", "a worker ran a canceled process"


def test_pause_and_resume(corral: Corral) -> None:
    ids = [corral.submit("add", f"a={i}") for i in range(3)]
    assert "paused" in corral.ok("pause")
    corral.ok("work", "--once", "--max-time", "10")
    assert {corral.show(i)["status"] for i in ids} == {"starting"}
    assert "resumed" in corral.ok("resume")
    corral.ok("work", "--once")
    assert [corral.show(i)["result"] for i in ids] == [2, 3, 4]


def test_prune_deletes_finished_processes(corral: Corral) -> None:
    done = corral.submit("add", "a=1")
    canceled = corral.submit("add", "a=2")
    corral.ok("cancel", canceled)
    failed = corral.submit("boom")
    corral.ok("work", "--once")
    assert corral.show(failed)["status"] == "failed"
    waiting = corral.submit("add", "a=3")

    assert "pruned 0" in corral.ok("prune", "--older-than", "1d")
    assert len(corral.list()) == 4
    out = corral.ok("prune", "--older-than", "0s")
    assert "pruned 3" in out, out
    assert [p["id"] for p in corral.list()] == [waiting]
    for pid in (done, canceled, failed):
        assert_usage_error(corral.run("show", pid), "no process")


def test_optional_string_parameter_is_not_read_as_json(corral: Corral) -> None:
    # count_to's `path: str | None`; the example's `working_dir: str | None` is the same.
    r = corral.run("submit", "count_to", "-p", "n=1", "-p", "path=2024", "--json")
    assert r.returncode == 0, r.stderr
    assert corral.show(json.loads(r.stdout)["id"])["params"]["path"] == "2024"


def test_usage_errors_are_one_line(corral: Corral) -> None:
    check_cases(
        corral,
        {
            "unknown command": Case(("frobnicate",), ("frobnicate",)),
            "unknown option": Case(("list", "--bogus"), ("--bogus",)),
            "missing job": Case(("submit",), ("job",)),
            "bad --limit": Case(("list", "--limit", "0"), ("--limit",)),
            "bad --priority": Case(("submit", "add", "-p", "a=1", "--priority", "hi"), ("prio",)),
        },
    )
    assert_nothing_written(corral)
