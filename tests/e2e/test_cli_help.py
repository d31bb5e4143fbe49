"""Help that helps: every command, argument and option described, metavars that read as
words, the statuses and duration units listed, repeatable options said to be, both
priorities explained, and `corral jobs` showing each job's parameters."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import typer

from corral.cli import cli
from corral.model import Status
from tests.e2e.conftest import EXAMPLE, Corral

#: Metavars as typer or click make them up from a type (`--app <str>`, `--limit INTEGER`):
#: never shown. (Newer typer adds the type after an argument's own metavar, `JOB <str>`.)
TYPE_METAVARS = re.compile(
    r"(?<![A-Z] )<(str|int|float|path|list\[str\]|int range)>|\b(TEXT|INTEGER|FLOAT)\b"
)


def command_line() -> Any:
    return typer.main.get_command(cli)


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`corral --help` and `corral COMMAND --help` for every command, run for real (once for
    this module's tests), each as one line of words."""
    corral = Corral(tmp_path_factory.mktemp("help"))
    names = ["", *sorted(command_line().commands)]

    def run(name: str) -> str:
        return corral.ok(*([name] if name else []), "--help", app=None)

    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(run, names))
    return {name: " ".join(text.split()) for name, text in zip(names, outputs, strict=True)}


def test_every_command_argument_and_option_is_described(texts: dict[str, str]) -> None:
    group = command_line()
    problems = []
    for name, command in [("", group), *sorted(group.commands.items())]:
        text = texts[name]
        if name and not (command.help or "").strip():
            problems.append(f"{name}: no description")
        for param in command.params:
            label = f"{name or 'corral'} {param.opts[0]}"
            if not (getattr(param, "help", None) or "").strip():
                problems.append(f"{label}: no help")
            if getattr(param, "multiple", False) and "repeatable" not in (param.help or ""):
                problems.append(f"{label}: repeatable, and its help does not say so")
        if found := TYPE_METAVARS.search(text):
            problems.append(f"{name or 'corral'} --help shows the metavar {found.group(0)}")
    assert not problems, "\n".join(problems)


def test_metavars_read_as_words(texts: dict[str, str]) -> None:
    expected = {
        "": ["--app FILE", "--database URL", "--log-format text|json"],
        "submit": ["JOB", "-p, --param KEY=VALUE", "--tag KEY=VALUE", "--run-at WHEN"],
        "submit ": ["--queue QUEUE", "--params-file FILE"],
        "list": ["--status STATUS", "--tag KEY=VALUE", "--job JOB"],
        "show": ["ID"],
        "wait": ["ID", "--timeout DURATION"],
        "cancel": ["ID"],
        "retry": ["ID"],
        "prune": ["--older-than DURATION"],
        "pause": ["--queue QUEUE"],
        "worker": ["--max-time DURATION", "--grace DURATION", "--queue QUEUE"],
        "execute": ["JOB", "-p, --param KEY=VALUE"],
    }
    for name, words in expected.items():
        for word in words:
            assert word in texts[name.strip()], f"{name or 'corral'} --help lacks {word!r}"


def test_statuses_units_time_and_priorities_are_explained(texts: dict[str, str]) -> None:
    for status in Status:
        assert status.value in texts["list"], status
    for state in ("queued", "scheduled for T", "retrying at T"):
        assert state in texts["list"], state
    assert "ms, s, m, h, d or w" in texts[""] and "1h30m" in texts[""]
    assert "a --run-at without a zone means UTC" in texts[""]
    # Process priority and handler priority read the other way round: both say which.
    assert "HIGHER number runs first" in texts["submit"]
    assert "the lowest ORDER runs" in texts["jobs"]


def test_jobs_shows_each_jobs_parameters(corral: Corral) -> None:
    r = corral.run("jobs", app=EXAMPLE, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    text = "\n".join(lines)
    for expected in (
        "create_data_file process; queue default, priority 0 (higher runs first)",
        "parameters filename: str (required) Where the finished .jsonl file goes.",
        "total: int = 1000 How many people to write.",
        "working_dir: str | None = null Where the temporary file lives; default: beside the",
        "handlers starting: CreateDataFile.start",
        "failing: CreateDataFile.rollback",
        "the lowest order runs",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"

    [job] = corral.json("jobs", app=EXAMPLE)
    total = next(p for p in job["params"] if p["name"] == "total")
    assert total == {
        "name": "total",
        "type": "int",
        "required": False,
        "default": 1000,
        "description": "How many people to write.",
    }
    assert job["handlers"]["running"] == "CreateDataFile.step"
