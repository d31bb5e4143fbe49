"""A worker says what it does, as a log collector reads it: `--log-format json` (or
CORRAL_LOG_FORMAT=json) makes every line on stderr one JSON object, the iteration lines
carrying process_id, job, attempt and outcome; the worker's stop line comes once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Corral

APP = """
from pathlib import Path

from corral import App, Context, Retry

app = App()


@app.job()
def add(ctx: Context, a: int) -> int:
    ctx.log.info("adding one to %d", a)
    return a + 1


@app.job(retry=Retry(attempts=2, backoff=0, jitter=0))
def flaky(ctx: Context, marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).write_text("tried")
        raise RuntimeError("the first try fails")
    return "second try"


@app.job()
def boom(ctx: Context) -> None:
    raise ValueError("kaboom")
"""


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of stderr, each a JSON object (the test fails naming a line that is not)."""
    records = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\nin:\n{stderr}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_a_worker_logs_one_json_object_a_line(corral: Corral, tmp_path: Path) -> None:
    app = tmp_path / "tasks.py"
    app.write_text(APP)
    corral.app = app
    added = corral.submit("add", "a=1")
    flaky = corral.submit("flaky", f"marker={tmp_path / 'marker'}")
    boom = corral.submit("boom")

    r = corral.run("--log-format", "json", "worker", "--once")
    assert r.returncode == 0, r.stderr
    records = json_lines(r.stderr)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record

    iterations = [r for r in records if r["logger"] == "corral.iteration"]
    for record in iterations:
        assert {"process_id", "job", "attempt", "outcome"} <= set(record), record
    seen = {(r["process_id"], r["job"], r["attempt"], r["outcome"]) for r in iterations}
    assert (added, "add", 1, "completed") in seen, seen
    assert (flaky, "flaky", 1, "retried") in seen, seen
    assert (flaky, "flaky", 2, "completed") in seen, seen
    assert (boom, "boom", 1, "failed") in seen, seen

    # ctx.log lines of a handler carry the same fields.
    [own] = [r for r in records if r["message"] == "adding one to 1"]
    assert (own["process_id"], own["job"], own["attempt"]) == (added, "add", 1), own

    # The worker's own stop line, once, last, in words; the CLI adds none of its own.
    stops = [r for r in records if " stopped: " in r["message"]]
    assert len(stops) == 1, stops
    assert records[-1] is stops[0]
    assert "nothing left to do" in stops[0]["message"]


def test_the_log_format_from_the_environment_and_its_errors(corral: Corral) -> None:
    # CORRAL_LOG_FORMAT=json: a worker's lines, and an error line too, are JSON.
    env = {"CORRAL_LOG_FORMAT": "json"}
    r = corral.run("worker", "--once", env=env)
    assert r.returncode == 0, r.stderr
    assert json_lines(r.stderr), "no log lines"

    r = corral.run("worker", "--once", "--max-time", "soon", env=env)
    assert r.returncode == 2, r.stderr
    [record] = json_lines(r.stderr)
    assert record["level"] == "ERROR"
    assert "--max-time" in record["message"]

    # A command line that does not parse is said in JSON too.
    r = corral.run("--log-format", "json", "worker", "--bogus")
    assert r.returncode == 2, r.stderr
    [record] = json_lines(r.stderr)
    assert "--bogus" in record["message"]

    r = corral.run("--log-format", "xml", "list")
    assert r.returncode == 2
    assert "--log-format" in r.stderr and "text or json" in r.stderr, r.stderr


def test_the_stop_line_is_printed_once_in_words(corral: Corral) -> None:
    corral.submit("add", "a=1")
    r = corral.run("work", "--once")
    assert r.returncode == 0, r.stderr
    stops = [line for line in r.stderr.splitlines() if "stopped" in line]
    assert len(stops) == 1, r.stderr
    assert "nothing left to do (idle); 1 iteration: 1 completed" in stops[0], stops[0]
    assert r.stderr.splitlines()[-1] == stops[0]
