"""The README's first screen and its section on the command line say what the command
line does: its first command runs as written (on fewer people) and states how long it
takes; every command and exit code is in its tables; the rules for time and priorities are
written down; the docs it links to exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer

from corral.cli import WORKER_EXIT_CODES, cli
from tests.e2e.conftest import Corral

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def test_the_first_command_runs_and_says_how_long_it_takes(corral: Corral) -> None:
    first_screen = README[: README.index("\n---\n")]
    [first, *_] = re.findall(r"```bash\n(.*?)\n```", first_screen, re.DOTALL)
    assert re.search(r"about \d+ seconds", first_screen), "no duration next to the first command"
    install, _, command = first.partition(" && ")
    assert install == "pip install -e '.[dev]'"
    argv = shlex.split(command)
    assert argv[0] == "corral"
    # As written, but 2,000 people instead of 100,000, in a directory of its own.
    argv = [a.replace("total=100000", "total=2000") for a in argv]
    argv = [str(ROOT / a) if a.startswith("examples/") else a for a in argv]
    corral.url = "sqlite:///corral.db"  # the embedded default, as the README says
    r = corral.run(*argv[1:], app=None)
    assert r.returncode == 0, r.stderr
    assert "completed" in r.stderr
    assert len((corral.cwd / "people.jsonl").read_text().splitlines()) == 2000
    assert (corral.cwd / "corral.db").exists()


def test_the_command_line_section_lists_every_command_and_exit_code() -> None:
    text = section("The command line")
    commands = typer.main.get_command(cli).commands
    table = [line for line in text.splitlines() if line.startswith("| `")]
    for name in commands:
        assert any(re.search(rf"`{name}\b|, `{name}\b| `{name}` is", row) for row in table) or (
            f"`{name}` is the same command" in text
        ), f"corral {name} is not in the README's table"
    codes = {int(m) for m in re.findall(r"^\| (\d+) \|", text, re.MULTILINE)}
    assert set(WORKER_EXIT_CODES) <= codes, set(WORKER_EXIT_CODES) - codes
    assert {0, 1, 2, 3, 4, 5, 6, 124} == codes


def test_the_rules_are_written_down() -> None:
    text = " ".join(section("The command line").split())
    for rule in (
        "Every display is in UTC and says so",
        "a `--run-at` without a zone means UTC too",
        "`+1h30m` or `1h30m`",
        "the **higher** number runs first",
        "the **lowest** order runs",
        "`queued`",
        "`scheduled for T`",
        "`retrying at T`",
        "`--log-format json`",
        "`corral --version`",
    ):
        assert rule in text, rule
    for link in re.findall(r"\]\((docs/[^)]+)\)", section("The command line")):
        assert (ROOT / link).is_file(), link
