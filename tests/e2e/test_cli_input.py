"""What the command line does with input it cannot take: bytes that are not UTF-8 in argv or
the environment, parameter files and -p values that Python's json cannot read, an app
that does not load, and a bug (an unexpected exception). Each is one line on stderr and an
exit code (2: bad input, nothing written; 1: an internal error), never a traceback unless
--traceback asks for one."""

from __future__ import annotations

import ast
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import corral.cli
from tests.e2e.conftest import DEFAULT, Corral
from tests.e2e.test_cli_errors import assert_nothing_written, assert_usage_error

UNKNOWN_ID = "3f2b1c9e-8d4a-4c1e-9b7a-2e6f5d4c3b2a"
BAD = b"\xff"  # never valid in UTF-8: Python gives it to corral as the lone surrogate \udcff


def run(
    corral: Corral,
    *args: str | bytes,
    app: Any = DEFAULT,
    env: dict[str, str | bytes] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`corral.run`, but arguments and environment values may be bytes, passed on as they
    are (what a shell passes for $'\\xff')."""
    argv: list[str | bytes] = [*corral.argv((), app), *args]
    environment: dict[str, str | bytes] = {**corral.env(), **(env or {})}
    return subprocess.run(
        argv,
        cwd=corral.cwd,
        env=environment,  # bytes values are passed on as they are (POSIX)
        capture_output=True,
        encoding="utf-8",
        errors="backslashreplace",
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class Case:
    args: tuple[str | bytes, ...]
    words: tuple[str, ...]
    env: dict[str, str | bytes] = field(default_factory=dict)
    code: int = 2


def check_cases(corral: Corral, cases: dict[str, Case]) -> None:
    """Run every case (a few at a time), then report all that failed at once. The line is
    short, too: it does not repeat a 100 KiB argument."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: run(corral, *c.args, env=c.env), cases.values()))
    problems = []
    for (name, case), result in zip(cases.items(), results, strict=True):
        try:
            line = assert_usage_error(result, *case.words, code=case.code)
            assert len(line) < 300, f"{len(line)} characters: {line[:300]}…"
        except AssertionError as exc:
            problems.append(f"{name} (corral {case.args!r}): {exc}")
    assert not problems, "\n\n".join(problems)


# --- bytes that are not UTF-8 ------------------------------------------------------------------


def test_bytes_that_are_not_utf8_are_refused_naming_the_argument(
    corral: Corral, tmp_path: Path
) -> None:
    add = ("submit", "add", "-p", "a=1")
    cases = {
        "job name": Case(("submit", b"ad" + BAD + b"d"), ("job",)),
        "execute's job name": Case(("execute", b"ad" + BAD + b"d"), ("job",)),
        "-p value": Case(("submit", "add", "-p", b"a=" + BAD), ("--param",)),
        "-p key": Case(("submit", "add", "-p", BAD + b"=1"), ("--param",)),
        "--custom-id": Case((*add, "--custom-id", b"id-" + BAD), ("--custom-id",)),
        "--tag": Case((*add, "--tag", b"team=" + BAD), ("--tag",)),
        "--queue": Case((*add, "--queue", b"q" + BAD), ("--queue",)),
        "list --tag": Case(("list", "--tag", b"k=" + BAD), ("--tag",)),
        "pause --queue": Case(("pause", "--queue", BAD), ("--queue",)),
        "work --queue": Case(("work", "--once", "--queue", BAD), ("--queue",)),
        "show ID": Case(("show", UNKNOWN_ID.encode() + BAD), ("ID",)),
        "retry ID": Case(("retry", BAD), ("ID",)),
        "--database": Case(("--database", b"sqlite:///x" + BAD + b".db", *add), ("--database",)),
        "--app": Case(("--app", b"app" + BAD + b".py", *add), ("--app",)),
        "--log-level": Case(("--log-level", BAD, "list"), ("--log-level",)),
        "$CORRAL_DATABASE_URL": Case(
            add, ("CORRAL_DATABASE_URL",), env={"CORRAL_DATABASE_URL": b"sqlite:///" + BAD}
        ),
        "a command": Case((b"subm" + BAD + b"it",), ("no such command",)),
    }
    for name, case in cases.items():  # every refusal says what is wrong with the text
        if name != "a command":
            cases[name] = Case(case.args, (*case.words, "utf-8", r"\xff"), case.env)
    check_cases(corral, cases)
    r = run(corral, *add, app=None, env={"CORRAL_APP": b"app" + BAD + b".py"})
    assert_usage_error(r, "--app", "CORRAL_APP", "UTF-8")
    # Refused while reading the command line: not even the database was created.
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


# --- --params-file and -p key=JSON ---------------------------------------------------------------


def test_a_params_file_that_cannot_be_read_is_one_line(corral: Corral, tmp_path: Path) -> None:
    deep = 100_000
    files = {
        "latin-1.json": ('{"name": "Andr\xe9"}'.encode("latin-1"), ("UTF-8", "0xe9")),
        "deep-array.json": (b"[" * deep + b"]" * deep, ("nested",)),
        "deep-object.json": (b'{"a":' * deep + b"1" + b"}" * deep, ("nested",)),
        "huge-int.json": (b'{"a": ' + b"7" * 5000 + b"}", ("integer", "4300 digits")),
        "empty.json": (b"", ("empty",)),
        "blank.json": (b" \n", ("empty",)),
        "an-array.json": (b"[1, 2]", ("array", "object")),
        "not-json.json": (b"a = 1", ("not JSON",)),
    }
    for name, (content, _) in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "a-directory.json").mkdir()
    cases = {
        name: Case(("submit", "add", "--params-file", name), ("--params-file", name, *words))
        for name, (_, words) in files.items()
    }
    cases["a directory"] = Case(
        ("submit", "add", "--params-file", "a-directory.json"),
        ("--params-file", "a-directory.json", "directory"),
    )
    cases["a missing file"] = Case(
        ("submit", "add", "--params-file", "missing.json"),
        ("--params-file", "missing.json", "no such file"),
    )
    cases["execute, deep"] = Case(
        ("execute", "add", "--params-file", "deep-object.json"), ("--params-file", "nested")
    )
    check_cases(corral, cases)
    assert_nothing_written(corral)


def test_a_param_value_that_json_cannot_read_is_one_line(corral: Corral) -> None:
    # One argument holds at most 128 KiB (Linux's MAX_ARG_STRLEN): nested 60,000 and
    # 20,000 deep, still far past what Python's json reads.
    deep_array = "[" * 60_000 + "]" * 60_000
    deep_object = '{"a":' * 20_000 + "1" + "}" * 20_000
    cases = {
        "deep array": Case(("submit", "add", "-p", f"a={deep_array}"), ("-p a", "nested")),
        "deep object": Case(("submit", "add", "-p", f"a={deep_object}"), ("-p a", "nested")),
        "huge integer": Case(
            ("submit", "add", "-p", "a=" + "7" * 5000), ("-p a", "integer", "4300 digits")
        ),
        "execute, deep": Case(("execute", "add", "-p", f"a={deep_array}"), ("-p a", "nested")),
    }
    check_cases(corral, cases)
    assert_nothing_written(corral)


def test_a_params_file_with_a_byte_order_mark_is_read(corral: Corral, tmp_path: Path) -> None:
    (tmp_path / "params.json").write_bytes('{"a": 40}'.encode("utf-8-sig"))
    pid = corral.json("submit", "add", "--params-file", "params.json")["id"]
    corral.ok("work", "--once")
    assert corral.show(pid)["result"] == 42


# --- messages are printed as they are ----------------------------------------------------------


def test_brackets_in_a_message_are_printed_not_read_as_markup(corral: Corral) -> None:
    line = assert_usage_error(corral.run("submit", "x[/y]"), "unknown job")
    assert "x[/y]" in line, line
    line = assert_usage_error(corral.run("submit", "[bold]job[/bold]"), "unknown job")
    assert "[bold]job[/bold]" in line, line


# --- an app that does not load -------------------------------------------------------------


def test_an_app_that_fails_to_load_is_one_line(corral: Corral, tmp_path: Path) -> None:
    apps = {
        "raises.py": ('raise ValueError("boom at import")\n', ("raises.py", "ValueError", "boom")),
        "syntax.py": ("def broken(:\n", ("syntax.py", "SyntaxError")),
        "imports.py": (
            "import no_such_dependency_xyz\n",
            ("imports.py", "no_such_dependency_xyz"),
        ),
    }
    for name, (source, _) in apps.items():
        (tmp_path / name).write_text(source)
    results = {name: corral.run("submit", "add", app=tmp_path / name) for name in apps}
    for name, (_, words) in apps.items():
        assert_usage_error(results[name], *words)
    traced = corral.run("--traceback", "submit", "add", app=tmp_path / "raises.py")
    assert traced.returncode == 2
    assert "Traceback (most recent call last)" in traced.stderr
    assert 'raise ValueError("boom at import")' in traced.stderr, traced.stderr
    assert not (tmp_path / "corral.db").exists()


# --- a bug: exit 1, one line; --traceback shows it all ---------------------------------------

BROKEN_APP = """
from corral import App


class Broken(App):
    def list(self, *args, **kwargs):
        raise RuntimeError("the list broke\\nand said more on a second line")


app = Broken()
"""


def test_an_unexpected_error_is_one_line_and_traceback_shows_it(
    corral: Corral, tmp_path: Path
) -> None:
    app = tmp_path / "broken.py"
    app.write_text(BROKEN_APP)
    corral.ok("migrate", app=None)
    r = corral.run("list", app=app)
    line = assert_usage_error(r, "internal error", "RuntimeError", "the list broke", code=1)
    assert "--traceback" in line, line
    assert "second line" not in line

    for traced in (
        corral.run("--traceback", "list", app=app),
        corral.run("list", app=app, env={"CORRAL_TRACEBACK": "1"}),
    ):
        assert traced.returncode == 1, traced.stderr
        assert "Traceback (most recent call last)" in traced.stderr
        assert 'raise RuntimeError("the list broke' in traced.stderr
        assert "and said more on a second line" in traced.stderr
        assert traced.stdout == ""


# --- the command line itself ---------------------------------------------------------------


def test_the_cli_imports_nothing_private_of_typer_or_click() -> None:
    """A private module (typer._click, click._compat, ...) can change or vanish in any
    release; typer 0.26 moved click inside itself as typer._click, which older typer
    releases do not have."""
    tree = ast.parse(Path(corral.cli.__file__).read_text())
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in ("typer", "click") and any(p.startswith("_") for p in parts):
                private.append(name)
    assert private == []


def test_a_round_trip_and_refusals_on_this_typer(corral: Corral) -> None:
    """The one CLI test that CI also runs with the lowest versions pyproject.toml allows:
    parsing (list options, an argument, a callback on every parameter) and the errors of a
    bad command line, on whichever typer (and click) is installed."""
    pid = corral.submit("count_to", "n=2", tag="team=x", queue="default")
    corral.ok("work", "--once")
    assert corral.show(pid)["result"] == {"steps": 2, "total": 3}
    assert [p["id"] for p in corral.list("--tag", "team=x")] == [pid]
    assert "Usage:" in corral.ok(app=None)  # no command: the help
    assert_usage_error(corral.run("list", "--bogus"), "--bogus")
    assert_usage_error(corral.run("frobnicate"), "frobnicate")
    assert_usage_error(run(corral, "submit", b"ad" + BAD + b"d"), "job", "UTF-8")
    assert_usage_error(corral.run("list", "--limit", "many"), "--limit")
