"""The code blocks of the docs for real projects, as the tests of each doc read them.

A fenced block is preceded by a marker that says what a test does with it:

- `<!-- file: NAME -->`: the block is the file NAME, written into a directory where the
  test then runs it (its tests, its app, its commands);
- `<!-- run: WHAT -->`: a shell command line that the test runs (WHAT names it);
- `<!-- not run: WHY -->`: shown only (another system's code, to compare with).

This module's own test checks that every block of those docs has a marker, so that no
example goes untested by accident."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: The docs whose examples the tests run.
REAL_PROJECT_DOCS = (
    "testing.md",
    "fastapi.md",
    "django.md",
    "deploying.md",
    "from-celery-and-rq.md",
)

_BLOCK = re.compile(
    r"(?:<!-- (?P<kind>file|run|not run): (?P<arg>.+?) -->\n)?"
    r"```(?P<lang>[\w-]*)\n(?P<code>.*?)\n```",
    re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    kind: str | None  # file, run, not run; None: no marker
    arg: str
    lang: str
    code: str
    line: int


def blocks(doc: str) -> list[Block]:
    text = (DOCS / doc).read_text()
    return [
        Block(
            m.group("kind"),
            m.group("arg") or "",
            m.group("lang"),
            m.group("code") + "\n",
            text.count("\n", 0, m.start()) + 1,
        )
        for m in _BLOCK.finditer(text)
    ]


def write_files(doc: str, dest: Path) -> dict[str, Path]:
    """Write every `file:` block of `doc` into `dest`; name -> path."""
    written = {}
    for block in blocks(doc):
        if block.kind == "file":
            path = dest / block.arg
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code)
            written[block.arg] = path
    return written


def commands(doc: str) -> dict[str, str]:
    """The `run:` blocks of `doc`: what -> the command line."""
    return {b.arg: b.code.strip() for b in blocks(doc) if b.kind == "run"}


def test_every_block_of_the_docs_says_how_it_is_tested() -> None:
    problems = []
    for doc in REAL_PROJECT_DOCS:
        found = blocks(doc)
        assert found, f"docs/{doc} has no code block"
        for block in found:
            if block.kind is None:
                problems.append(f"docs/{doc} line {block.line}: a ```{block.lang} block unmarked")
        names = [b.arg for b in found if b.kind == "file"]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            problems.append(f"docs/{doc}: files written twice: {sorted(duplicates)}")
    assert not problems, "\n".join(problems)
