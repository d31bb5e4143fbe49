"""The `corral` command: `corral [--app FILE] [--database URL] COMMAND`.

Exit codes: 0 done; 1 `execute` or `wait`: the process failed or was canceled, or an
unexpected error (one line; `--traceback` shows the whole trace); 2 bad usage or input, or a
database that will not work (one line, nothing written); 3 the database cannot be reached
now (try again). `corral worker` exits with why it stopped (`WORKER_EXIT_CODES`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import sys
import traceback
import types
import typing
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if typing.TYPE_CHECKING:
    from typer import TyperException as CommandLineError
else:
    try:  # typer 0.27.2 and later carry their own click, whose errors derive from this
        from typer import TyperException as CommandLineError
    except ImportError:  # older typer runs on click itself
        from click import ClickException as CommandLineError

from corral import cli_output as out
from corral import logs
from corral.app import App, parse_ref
from corral.errors import CorralError, StorageUnavailable, UsageError
from corral.loader import load_app
from corral.model import Process, Status
from corral.storage import default_url
from corral.supervisor import EXIT_CRASH_LOOP
from corral.worker import (
    DEFAULT_CONCURRENCY,
    EXIT_BUDGET,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_WEDGED,
    Worker,
    WorkerOptions,
)

#: The statuses a process is stored with (`list --status`), and what a display may show.
STATUSES = ", ".join(s.value for s in Status)
DURATION_HELP = (
    "a DURATION is a number and a unit: ms, s, m, h, d or w, and combinations (90s, 10m, "
    "1h30m, 2d); a bare number is seconds"
)
TIME_HELP = (
    "Times: every display is in UTC and says so; a --run-at without a zone means UTC too "
    "(2026-01-31T09:00 is 09:00 UTC; write +02:00 or Z for another or the same zone)."
)

#: Why `corral worker` stopped, as its exit code (the worker's own, src/corral/worker.py).
WORKER_EXIT_CODES = {
    EXIT_OK: "nothing left to do (--once), or stopped by SIGTERM or SIGINT",
    EXIT_INTERNAL: "a bug in corral (its traceback is in the log)",
    EXIT_STORAGE: "the database failed for good, or was still away when the grace ran out",
    EXIT_BUDGET: "a budget was spent (--max-time, --max-memory, --max-iterations): start it again",
    EXIT_WEDGED: "more handlers stuck past their timeouts than it tolerates: replace it",
    EXIT_CRASH_LOOP: "(--processes) a worker kept dying at start: restarts stopped, see the log",
}

cli = typer.Typer(
    name="corral",
    help="Durable jobs and multi-step processes: submit them, run workers, see what happened."
    f"\n\n{TIME_HELP} Durations: {DURATION_HELP}."
    "\n\nExit codes: 0 done; 1 the process failed (execute, wait) or a bug in corral; 2 bad "
    "usage or input, or a database that will not work; 3 the database cannot be reached "
    "now, try again. `corral worker --help` lists a worker's own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


class State:
    app_ref: str | None = None
    database: str | None = None
    traceback: bool = False
    log_format: logs.LogFormat = "text"
    _app: App | None = None

    def app(self, *, required: bool = False) -> App:
        """The user's app (jobs and their database), or a bare App when jobs are not needed."""
        if self._app is None:
            if self.app_ref:
                self._app = load_app(self.app_ref)
            elif required:
                raise UsageError(
                    "this command needs your jobs: pass --app FILE.py or "
                    "module:attr, or set CORRAL_APP"
                )
            else:
                self._app = App()
            if self.database:
                self._app.use_database(self.database)
        return self._app

    def url(self) -> str:
        """The database the command would open: --database (or CORRAL_DATABASE_URL, its
        environment form), else the app's own URL, else sqlite:///corral.db."""
        app = self._app
        return self.database or (app.database_url if app else None) or default_url()

    def database_for(self, command: str, *, reads: bool = False, required: bool = False) -> App:
        """The app, once the database it names can serve `command`: memory:// is refused
        (whatever the command wrote or read would vanish when it exits), and a command
        that only reads (`reads`) does not create a SQLite file that does not exist."""
        app = self.app(required=required)
        url = self.url()
        scheme, _, rest = url.partition("://")
        if scheme == "memory":
            raise UsageError(
                f"`corral {command}` on memory:// would vanish when it exits (an in-memory "
                "database lives inside one Python process); use a file (sqlite:///corral.db, "
                "the default) or postgresql://…, or run one process here with `corral "
                "execute`"
            )
        if reads and scheme == "sqlite":
            path = (rest[1:] if rest.startswith("/") else rest).partition("?")[0]
            if path and not os.path.exists(path):
                raise UsageError(
                    f"no database at {os.path.abspath(path)}: nothing was ever submitted "
                    "there; check --database or CORRAL_DATABASE_URL, and the directory you "
                    "run corral in"
                )
        return app


state = State()


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit `code` (inside a command)."""
    say_error(message)
    raise typer.Exit(code)


def say_error(message: str, *, level: str = "error") -> None:
    """`error: message` on stderr, on one line, printed as it is (no markup); with
    --log-format json, one JSON object like the log's."""
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    if state.log_format == "json":
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        record = {"time": now, "level": level.upper(), "logger": "corral.cli", "message": line}
        print(json.dumps(record, ensure_ascii=False), file=sys.stderr, flush=True)
        return
    style = "red" if level == "error" else "yellow"
    errors.print(Text.assemble((f"{level}:", style), " ", line), highlight=False, soft_wrap=True)


def guarded(action: Callable[[], T]) -> T:
    """Run a command body; a user's mistake or a database that will not work becomes one
    line and exit 2, an unreachable database one line and exit 3 (transient: try again).
    Other exceptions go on to `main`, which reports them as internal errors."""
    try:
        return action()
    except CorralError as exc:
        if state.traceback:
            traceback.print_exc()
        fail(str(exc), 3 if isinstance(exc, StorageUnavailable) else 2)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("corral")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        print(f"corral {version}")
        raise typer.Exit()


@cli.callback()
def main_options(
    ctx: typer.Context,
    app: Annotated[
        str | None,
        typer.Option(
            "--app",
            metavar="FILE",
            envvar="CORRAL_APP",
            help="Your jobs: a file, path/to/tasks.py[:attr], or a module, package.tasks[:attr] "
            "(attr defaults to app).",
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            metavar="URL",
            envvar="CORRAL_DATABASE_URL",
            help="sqlite:///path.db (default: sqlite:///corral.db), postgresql://user@host/db, "
            "or memory:// (execute only: it vanishes on exit). Overrides the app's own URL.",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL",
            envvar="CORRAL_LOG_LEVEL",
            help="DEBUG, INFO, WARNING or ERROR (default: INFO for workers and serve, WARNING "
            "otherwise).",
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            metavar="text|json",
            envvar="CORRAL_LOG_FORMAT",
            help="How logs (and error lines) go to stderr: text, or json (one object a line, "
            "with process_id, job, attempt and outcome on a worker's iteration lines).",
        ),
    ] = "text",
    show_traceback: Annotated[
        bool,
        typer.Option(
            "--traceback",
            envvar="CORRAL_TRACEBACK",
            help="On an error, print Python's whole traceback too (for a bug report, or an "
            "app file that does not load).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print corral's version and exit."
        ),
    ] = False,
) -> None:
    state.app_ref = app
    state.database = database
    state.traceback = show_traceback
    if log_format not in ("text", "json"):
        fail(f"--log-format {log_format!r}: use text or json")
    state.log_format = "json" if log_format == "json" else "text"
    if log_level is None:
        log_level = "INFO" if ctx.invoked_subcommand in ("work", "worker", "serve") else "WARNING"
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        fail(f"unknown log level {log_level!r}; use DEBUG, INFO, WARNING or ERROR")
    logs.configure(level, state.log_format)
    logging.captureWarnings(True)  # a library's warning is a log line too, in its format


# --- submitting ------------------------------------------------------------------------------

ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="A parameter (repeatable: -p a=1 -p b=2). A value is read as JSON unless the "
        "parameter is text in the job's schema (`corral jobs` lists them).",
    ),
]
ParamsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--params-file",
        metavar="FILE",
        help='A JSON file holding an object of parameters ({"a": 1}); -p values go on top.',
    ),
]
TagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", metavar="KEY=VALUE", help="A tag (repeatable: --tag team=x --tag env=prod)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table or words.")]
IdArg = Annotated[
    str | None,
    typer.Argument(
        metavar="ID",
        help="The process: its whole id, or its first 8 or more characters as `list` shows "
        "them (enough to name one process).",
    ),
]
CustomIdRef = Annotated[
    str | None,
    typer.Option(
        "--custom-id",
        metavar="KEY",
        help="The process submitted with this custom id (instead of ID).",
    ),
]
JobArg = Annotated[
    str, typer.Argument(metavar="JOB", help="The job's name (`corral jobs` lists them).")
]
QueueNameOpt = Annotated[
    str, typer.Option(metavar="QUEUE", help="The queue's name; * (the default) for every queue.")
]


def parse_params(
    app: App, job_name: str, pairs: list[str] | None, params_file: Path | None
) -> dict[str, Any]:
    """The parameters of a submit: the --params-file object, then each -p key=value. Their
    values are checked by the App (`submit`); here only what cannot even be read."""
    job = app.get_job(job_name)
    params: dict[str, Any] = {}
    if params_file is not None:
        params.update(read_params_file(params_file))
    fields = job.params_model.model_fields
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-p {_shorten(pair)!r}: write parameters as key=value")
        field = fields.get(key)
        if field is not None and _is_text(field.annotation):
            params[key] = raw
        else:
            try:
                params[key] = read_json(raw, f"-p {_shorten(key)}")
            except NotJson:
                params[key] = raw  # -p name=bob: not JSON, so the text itself
    return params


def read_params_file(path: Path) -> dict[str, Any]:
    what = f"--params-file {path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # a byte order mark, as some editors write, is fine
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    if not text.strip():
        raise UsageError(f'{what} is empty; write a JSON object such as {{"a": 1}} in it')
    try:
        loaded = read_json(text, what)
    except NotJson as exc:
        raise UsageError(f"{what} is not JSON: {exc}") from None
    if not isinstance(loaded, dict):
        kind = _JSON_KINDS.get(type(loaded), type(loaded).__name__)
        raise UsageError(f'{what} holds {kind}; write a JSON object such as {{"a": 1}}')
    return loaded


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


class NotJson(Exception):
    """The text is not JSON at all (as `-p name=bob`), as opposed to JSON too big to read."""


def read_json(text: str, what: str) -> Any:
    """Parse JSON; JSON that Python cannot read (too deep, an integer past Python's digit
    limit) is a UsageError naming `what`, not an exception from the depths of `json`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotJson(str(exc)) from None
    except RecursionError:
        raise UsageError(f"{what}: the JSON is nested too deeply to read; flatten it") from None
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits()
        raise UsageError(
            f"{what}: the JSON holds an integer of more than {sys.get_int_max_str_digits()} "
            "digits; pass it as a string"
        ) from None


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_text(annotation: Any) -> bool:
    """Whether a parameter takes only text (str, str | None, Literal['a', 'b'], …): then
    `-p key=2024` means the string "2024", not the number."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _is_text(args[0])
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in args)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return bool(members) and all(_is_text(a) for a in members)
    return False


_NUMBER = r"\d+(?:\.\d+)?"
_UNIT = r"ms|s|m|h|d|w"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:{_UNIT}))+")
_PART = re.compile(rf"({_NUMBER})({_UNIT})")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str, *, bare_seconds: bool = True) -> float | None:
    """Seconds in `90s`, `10m`, `1h30m`, `2d12h`, `250ms` (units ms, s, m, h, d, w, largest
    first or not, spaces allowed), or in a bare number of seconds; None: not a duration."""
    compact = "".join(text.split())
    if bare_seconds and re.fullmatch(_NUMBER, compact):
        return float(compact)
    if not _DURATION.fullmatch(compact):
        return None
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))


def parse_duration(text: str, what: str) -> float:
    seconds = duration(text)
    if seconds is None:
        raise UsageError(f"{what} {text!r}: write a duration such as 45s, 10m, 1h30m, 12h or 90d")
    return seconds


def parse_when(text: str, now: float) -> float:
    """A --run-at: `+DURATION` or `DURATION` from now, or a date and time in ISO 8601; one
    without a zone is UTC, as every display is (`2026-01-31 09:00:00 UTC` is read back)."""
    relative = text.strip()
    if relative.startswith("+"):
        seconds = duration(relative[1:])
        if seconds is None:
            raise UsageError(
                f"--run-at {text!r}: after + write a duration such as 90s, 10m or 1h30m"
            )
        return now + seconds
    seconds = duration(relative, bare_seconds=False)
    if seconds is not None:
        return now + seconds
    iso_text = re.sub(r"\s*UTC$", "+00:00", relative)
    try:
        when = dt.datetime.fromisoformat(iso_text)
    except ValueError:
        raise UsageError(
            f"--run-at {text!r}: write a time in ISO 8601 (2026-01-31T09:00, UTC unless it "
            "names a zone: 2026-01-31T09:00+02:00) or a delay (+10m, 1h30m, 2d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # as every display shows it
    return when.timestamp()


@cli.command()
def submit(
    job: JobArg,
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    custom_id: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Idempotency key: submitting it again (same job and parameters) returns the "
            "same process.",
        ),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Process priority: a HIGHER number runs first (default: the job's, 0 unless "
            "it sets one). Not a generic handler's order, where the lowest runs.",
        ),
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Not before WHEN: a delay (+1h30m or 1h30m, 90s, 2d) or a time in ISO 8601 "
            "(2026-01-31T09:00), UTC unless it names a zone.",
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(metavar="QUEUE", help="Put it in this queue (default: the job's)."),
    ] = None,
    tag: TagOpt = None,
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ID",
            help="Wait for this process to end first (repeatable): the new process is "
            "waiting until every one has ended. A whole id or a unique prefix.",
        ),
    ] = None,
    on_dependency_failure: Annotated[
        str | None,
        typer.Option(
            metavar="POLICY",
            help="When a dependency fails or is canceled: 'cancel' this process too, or "
            "'run' it once every dependency has ended (default: the job's, else cancel).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a process of JOB; prints its id and `created`, or `existing` for a
    --custom-id submitted before."""

    def run() -> None:
        app = state.database_for("submit", required=True)
        params = parse_params(app, job, param, params_file)
        tags = dict(_pair(t, "--tag") for t in tag or [])
        when = parse_when(run_at, app.clock()) if run_at else None
        deps = [find_process(app, d, None).id for d in depends_on or []]
        s = app.submit(
            job,
            params,
            custom_id=custom_id,
            priority=priority,
            run_at=when,
            queue=queue,
            tags=tags,
            depends_on=deps,
            on_dependency_failure=on_dependency_failure,
        )
        if as_json:
            print(
                json.dumps(
                    {"id": s.id, "job": s.job, "status": s.status.value, "outcome": s.outcome}
                )
            )
        else:
            console.print(f"{s.id} {s.outcome}", highlight=False)

    guarded(run)


def find_process(app: App, ref: str | None, custom_id: str | None) -> Process:
    """The process a command names: by ID (whole or a unique prefix) or by --custom-id."""
    if (ref is None) == (custom_id is None):
        raise UsageError("name the process: give its ID, or --custom-id KEY (not both)")
    if custom_id is not None:
        return app.find_custom(custom_id)
    assert ref is not None
    return app.find(ref)


def check_ref(ref: str | None) -> None:
    """A malformed ID is said before the database is opened."""
    if ref is not None:
        parse_ref(ref)


def _pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} {text!r}: write key=value")
    return key, value


# --- looking -----------------------------------------------------------------------------------


@cli.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option(metavar="STATUS", help=f"Only processes stored in this status: {STATUSES}."),
    ] = None,
    job: Annotated[str | None, typer.Option(metavar="JOB", help="Only this job's.")] = None,
    queue: Annotated[
        str | None, typer.Option(metavar="QUEUE", help="Only those in this queue.")
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE", help="Only processes with this tag (repeatable: all must match)."
        ),
    ] = None,
    custom_id: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="Only the process submitted with this custom id."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="At most N, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List processes, newest first, one line each (80 columns). The id shown is the
    shortest start of the id that names one process: `show`, `cancel`, `retry` and `wait`
    take it back. The status column says what each is doing: queued (no worker took it
    yet), scheduled for T (it waits for its --run-at), retrying at T (waiting out a retry's
    backoff or a RetryLater), or its status. Times are UTC. A last line says how many more
    match past --limit."""

    def run() -> None:
        tags = dict(_pair(t, "--tag") for t in tag or []) or None
        if status is not None and status not in {s.value for s in Status}:
            raise UsageError(f"--status {status!r}: use one of {STATUSES}")
        app = state.database_for("list", reads=True)
        where = {"status": status, "job": job, "tags": tags, "queue": queue}
        processes = app.list(**where, limit=limit, custom_id=custom_id)  # type: ignore[arg-type]
        more = 0
        if len(processes) == limit:
            more = app.count(**where, custom_id=custom_id) - limit  # type: ignore[arg-type]
        now = app.clock()
        if as_json:
            print(json.dumps([out.process_json(p, now=now) for p in processes]))
            return
        if not processes:
            console.print("no processes")
            return
        shorts = app.short_ids([p.id for p in processes])
        console.print(out.process_table(processes, now, shorts))
        if more > 0:
            console.print(f"{more} more past --limit {limit}", highlight=False)

    guarded(run)


@cli.command()
def show(
    process_id: IdArg = None,
    custom_id: CustomIdRef = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Show status and progress live until the process ends; exit as `execute` "
            "does (0 completed, 1 failed or canceled, 130 interrupted).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one process: what it is doing (queued, scheduled for T, retrying at T, or its
    status), queue, priority, tags, run at, its concurrency key and how many of its slots
    are held, the lease holder and its expiry while one runs, parameters, store, progress,
    result or error, the attempts it took, and its history. Times are UTC."""

    def run() -> int:
        check_ref(process_id)
        app = state.database_for("show", reads=True)
        process = find_process(app, process_id, custom_id)
        if follow:
            from corral.follow import follow_process

            ended = follow_process(app, process.id, errors, on_signals=_on_signals)
            if ended is None:
                return 130
            process = ended
        history = app.history(process.id)
        now = app.clock()
        deps = app.storage.dependencies_of([process.id]).get(process.id, [])
        _, dependents = app.dependencies(process.id)
        if as_json:
            shown = out.process_json(process, history, now=now) | out.edges_json(deps, dependents)
            print(json.dumps(shown))
        else:
            slots = app.storage.process_concurrency(process.id, now)
            out.show_process(console, process, history, now, slots, deps, dependents)
        if not follow:
            return 0
        return 0 if process.status is Status.COMPLETED else 1

    raise typer.Exit(guarded(run))


@cli.command()
def why(process_id: IdArg = None, custom_id: CustomIdRef = None, as_json: JsonOpt = False) -> None:
    """Say why a process is not running now: every reason (waiting for dependencies,
    scheduled for T, retrying at T, its queue paused, a worker's lease expired, its
    concurrency key full and who holds it, no running worker registers its job or serves
    its queue, every such worker busy, a cancel requested), or that it runs or is next.
    Times are UTC."""

    def run() -> None:
        check_ref(process_id)
        app = state.database_for("why", reads=True)
        process = find_process(app, process_id, custom_id)
        reasons = app.explain(process.id)
        if as_json:
            print(
                json.dumps(
                    {
                        "id": process.id,
                        "reasons": [{"code": r.code, "message": r.message} for r in reasons],
                    }
                )
            )
        else:
            for r in reasons:
                console.print(f"- {r.message}", highlight=False, soft_wrap=True)

    guarded(run)


@cli.command()
def graph(
    batch_id: Annotated[str, typer.Argument(metavar="ID", help="The batch's id (app.batch()).")],
    nodes: Annotated[
        bool,
        typer.Option("--nodes/--counts-only", help="List every process and its dependencies."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Show a task graph submitted as one batch: its processes by status (read from the
    batch's rows only), then each process with the ids it depends on."""

    def run() -> int:
        app = state.database_for("graph", reads=True)
        g = app.graph(batch_id, nodes=nodes)
        if as_json:
            print(json.dumps(g.to_json()))
            return 0
        counts = ", ".join(f"{n} {st}" for st, n in g.counts.to_json().items() if n)
        done = "done" if g.done else "running"
        console.print(
            f"batch {g.id}: {g.counts.total} processes, {done}: {counts}", highlight=False
        )
        deps: dict[str, list[str]] = {}
        for dependent, dependency in g.edges:
            deps.setdefault(dependent, []).append(dependency)
        for p in g.processes:
            after = f" <- {', '.join(deps[p.id])}" if p.id in deps else ""
            console.print(f"{p.id} {p.job} {p.status.value}{after}", highlight=False)
        return 0

    raise typer.Exit(guarded(run))


@cli.command()
def wait(
    process_id: IdArg = None,
    custom_id: CustomIdRef = None,
    timeout: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Give up after this long (default: never)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the process as `show --json` does.")
    ] = False,
) -> None:
    """Wait until the process ends. Exit 0 when it completed, 1 when it failed or was
    canceled, 124 when it still runs after --timeout."""

    def run() -> int:
        seconds = None if timeout is None else parse_duration(timeout, "--timeout")
        check_ref(process_id)
        app = state.database_for("wait", reads=True)
        found = find_process(app, process_id, custom_id)
        try:
            process = app.wait(found.id, timeout=seconds)
        except TimeoutError as exc:
            say_error(str(exc))
            return 124
        if as_json:
            history = app.history(process.id)
            print(json.dumps(out.process_json(process, history, now=app.clock())))
        else:
            console.print(f"{process.id} {process.status.value}", highlight=False)
        return 0 if process.status is Status.COMPLETED else 1

    raise typer.Exit(guarded(run))


@cli.command()
def jobs(as_json: JsonOpt = False) -> None:
    """List the app's jobs: their parameters (type, default, description), queue,
    priority, retention (keep_for), limits (concurrency, rate), schedule, and which
    handler runs in each status. A generic
    handler serves every job without its own; among generic handlers of one status, the
    lowest ORDER runs (a process's priority is the other way: the higher runs first)."""

    def run() -> None:
        app = state.app(required=True)
        described = [_describe_job(app, name) for name in sorted(app.registry.jobs)]
        if as_json:
            print(json.dumps(described))
            return
        for i, job in enumerate(described):
            if i:
                console.print()
            console.print(_job_grid(job))
        console.print(
            "\nhandler order: among generic handlers of one status the lowest order runs; "
            "process priority (submit --priority): the highest number runs first.",
            highlight=False,
        )

    guarded(run)


def _describe_job(app: App, name: str) -> dict[str, Any]:
    job = app.registry.jobs[name]
    params = []
    for field_name, field in job.params_model.model_fields.items():
        required = field.is_required()
        default: Any = None
        if not required:
            default = field.get_default(call_default_factory=True)
        params.append(
            {
                "name": field_name,
                "type": _type_name(field.annotation),
                "required": required,
                "default": _jsonable(default),
                "description": field.description,
            }
        )
    handlers = {}
    for _, _, by_status in (row for row in app.registry.table() if row[0] == name):
        handlers = {status.value: text for status, text in by_status.items()}
    return {
        "name": name,
        "kind": job.kind,
        "queue": job.queue,
        "priority": job.priority,
        "keep_for": job.keep_for,
        "on_dependency_failure": job.on_dependency_failure,
        "concurrency": job.concurrency,
        "concurrency_key": job.concurrency_key
        if isinstance(job.concurrency_key, str)
        else (None if job.concurrency_key is None else "(a function)"),
        "rate": None if job.rate is None else str(job.rate),
        "cron": None if job.schedule is None else f"{job.schedule.cron} ({job.schedule.timezone})",
        "params": params,
        "handlers": handlers,
    }


def _job_grid(job: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        Text(job["name"], style="bold cyan"),
        f"{job['kind']}; queue {job['queue']}, priority {job['priority']} (higher runs first)",
    )
    grid.add_row("keeps", _keeps(job["keep_for"]))
    limits = []
    if job["concurrency"] is not None:
        per = f" per {job['concurrency_key']}" if job["concurrency_key"] else ""
        limits.append(f"at most {job['concurrency']} running{per}")
    if job["rate"] is not None:
        limits.append(f"starts at most {job['rate']}")
    if limits:
        grid.add_row("limits", "; ".join(limits))
    if job["cron"] is not None:
        grid.add_row("schedule", job["cron"])
    if job["on_dependency_failure"] != "cancel":
        grid.add_row("dependencies", "a failed one does not cancel it: it runs once all ended")
    label = "parameters"
    for p in job["params"]:
        text = Text(f"{p['name']}: {p['type']}", style="green")
        if p["required"]:
            text.append(" (required)")
        else:
            text.append(f" = {json.dumps(p['default'])}")
        if p["description"]:
            text.append(f"  {p['description']}", style="dim")
        grid.add_row(label, text)
        label = ""
    if not job["params"]:
        grid.add_row(label, "none")
    label = "handlers"
    for status, handler in job["handlers"].items():
        grid.add_row(label, f"{status}: {handler}")
        label = ""
    return grid


def _keeps(keep_for: float | None) -> str:
    """A job's retention, as `corral jobs` shows it (docs/timeouts.md, "Retention")."""
    if keep_for is None:
        return "completed processes until `corral prune`"
    if keep_for == 0:
        return "completed processes: deleted at the workers' next sweep"
    return f"completed processes for {format_duration(keep_for)} after they finish"


def format_duration(seconds: float) -> str:
    """Seconds as `corral prune --older-than` reads them: 90d, 1h30m, 45s, 0.5s."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


# --- commands on processes -----------------------------------------------------------------------


@cli.command()
def cancel(
    process_id: IdArg = None, custom_id: CustomIdRef = None, as_json: JsonOpt = False
) -> None:
    """Cancel a process: at once if it never started, else after its rollback."""

    def run() -> None:
        check_ref(process_id)
        app = state.database_for("cancel", reads=True)
        p = app.cancel(find_process(app, process_id, custom_id).id)
        what = "canceled" if p.status is Status.CANCELED else "cancel requested"
        if as_json:
            print(json.dumps({**out.process_json(p, now=app.clock()), "outcome": what}))
        else:
            console.print(f"{p.id} {what}", highlight=False)

    guarded(run)


@cli.command()
def retry(
    process_id: IdArg = None,
    custom_id: CustomIdRef = None,
    with_dependents: Annotated[
        bool,
        typer.Option(
            "--with-dependents",
            help="Also resume what its failure canceled down its task graph: each such "
            "process waits again for its dependencies (one that depends on another failed "
            "process stays canceled).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resume a failed or canceled process where it stopped, with its store."""

    def run() -> None:
        check_ref(process_id)
        app = state.database_for("retry", reads=True)
        p = app.retry(find_process(app, process_id, custom_id).id)
        resumed = app.resume_dependents(p.id) if with_dependents else []
        if as_json:
            shown = out.process_json(p, now=app.clock())
            if with_dependents:
                shown["resumed_dependents"] = resumed
            print(json.dumps(shown))
            return
        console.print(f"{p.id} {p.status.value}", highlight=False)
        if with_dependents:
            console.print(f"resumed {len(resumed)} dependents", highlight=False)
            for pid in resumed:
                console.print(f"  {pid}", highlight=False)
        else:
            _, dependents = app.dependencies(p.id)
            if dependents:
                console.print(
                    f"{len(dependents)} processes depend on it; those its end canceled stay "
                    "canceled (`corral retry --with-dependents` resumes them)",
                    highlight=False,
                    soft_wrap=True,
                )

    guarded(run)


@cli.command()
def pause(queue: QueueNameOpt = "*", as_json: JsonOpt = False) -> None:
    """Make workers stop claiming from a queue (running iterations finish). With --app,
    warns when no job of the app uses the queue (a typo pauses nothing you run)."""

    def run() -> None:
        app = state.database_for("pause")
        if queue != "*" and state.app_ref:
            used = sorted({job.queue for job in app.registry.jobs.values()})
            if queue not in used:
                say_error(
                    f"no job of {state.app_ref} uses queue {queue!r} (they use: "
                    f"{', '.join(used) or 'none'}); paused it anyway, for processes "
                    "submitted to it with --queue",
                    level="warning",
                )
        app.pause(queue)

    guarded(run)
    _said({"queue": queue, "paused": True}, f"paused {queue}", as_json)


@cli.command()
def resume(queue: QueueNameOpt = "*", as_json: JsonOpt = False) -> None:
    """Let workers claim from a queue again."""
    guarded(lambda: state.database_for("resume").resume(queue))
    _said({"queue": queue, "paused": False}, f"resumed {queue}", as_json)


def _said(data: dict[str, Any], words: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
    else:
        console.print(words, highlight=False)


@cli.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="Delete processes that ended longer ago than this (e.g. 90d, 12h).",
        ),
    ] = "90d",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what would be deleted, by job; delete nothing."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete processes that ended longer ago than --older-than, with their history,
    whatever their job's keep_for; failed and canceled ones too. The workers also delete
    on their own the completed processes of jobs with a keep_for once that has passed; a
    process that an unfinished one depends on is kept either way."""

    def run() -> None:
        seconds = parse_duration(older_than, "--older-than")
        if dry_run:
            by_job = state.database_for("prune", reads=True).prunable(seconds)
            total = sum(by_job.values())
            words = f"would prune {total} processes" + "".join(
                f"\n  {job}: {n}" for job, n in by_job.items()
            )
            _said({"would_prune": total, "by_job": by_job}, words, as_json)
            return
        n = state.database_for("prune").prune(seconds)
        _said({"pruned": n}, f"pruned {n} processes", as_json)

    guarded(run)


@cli.command()
def queues(as_json: JsonOpt = False) -> None:
    """List queues: those that hold processes, those the app's jobs use, and paused ones,
    with how many processes each holds by status."""

    def run() -> None:
        app = state.database_for("queues", reads=True)
        found = app.queues()
        if as_json:
            print(
                json.dumps(
                    [
                        {
                            "queue": q.name,
                            "paused": q.paused,
                            "counts": {s.value: n for s, n in q.counts.items()},
                        }
                        for q in found
                    ]
                )
            )
        elif found:
            console.print(out.queue_table(found))
        else:
            console.print("no queues")

    guarded(run)


@cli.command()
def workers(as_json: JsonOpt = False) -> None:
    """List the workers in the registry: host, pid, app, concurrency, started, last seen,
    and what each runs. A worker not seen for a lease's length (it died, or cannot reach
    the database) shows as gone; the registry forgets it after an hour."""

    def run() -> None:
        app = state.database_for("workers", reads=True)
        found = app.workers()
        now = app.clock()
        if as_json:
            print(json.dumps([out.worker_json(w, now, app.lease_seconds) for w in found]))
        elif found:
            console.print(out.worker_table(found, now, app.lease_seconds))
        else:
            console.print("no workers")

    guarded(run)


@cli.command()
def schedules(as_json: JsonOpt = False) -> None:
    """List the app's cron schedules (needs --app): job, cron, time zone, missed-run and
    overlap policies, the last run (its occurrence, its process and that process's status:
    `pruned` once it is gone) and the next run. Times are UTC. The workers fire them: one
    process per occurrence, with the job's default parameters."""

    def run() -> None:
        app = state.database_for("schedules", reads=True, required=True)
        found = app.schedules()
        if as_json:
            print(json.dumps([out.schedule_json(s) for s in found]))
        elif found:
            last = [s.last_process_id for s in found if s.last_process_id is not None]
            console.print(out.schedule_table(found, app.short_ids(last)))
        else:
            console.print("no schedules")

    guarded(run)


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema (also done automatically on first use)."""

    def run() -> None:
        version = state.database_for("migrate").storage.migrate()
        console.print(f"schema version {version}", highlight=False)

    guarded(run)


# --- working ---------------------------------------------------------------------------

ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        min=1,
        metavar="N",
        help="Iterations run at once: threads for plain handlers, one event loop for async "
        f"ones (default {DEFAULT_CONCURRENCY}: enough for I/O-bound jobs).",
    ),
]

_EXIT_LINES = "\n".join(f"  {code}  {why}" for code, why in sorted(WORKER_EXIT_CODES.items()))


def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Exit when nothing is left to do (a crontab line).")
    ] = False,
    max_time: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Stop claiming after this long, then exit 4."),
    ] = None,
    max_memory: Annotated[
        float | None,
        typer.Option(
            metavar="MB", help="Stop claiming once resident memory passes MB megabytes, exit 4."
        ),
    ] = None,
    max_iterations: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Stop claiming after starting N iterations, then exit 4."
        ),
    ] = None,
    grace: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="After SIGTERM or SIGINT, how long running iterations get to finish before "
            "their leases are given back (0: at once).",
        ),
    ] = "30s",
    concurrency: ConcurrencyOpt = DEFAULT_CONCURRENCY,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", metavar="QUEUE", help="Only this queue (repeatable; default: all)."
        ),
    ] = None,
    processes: Annotated[
        str | None,
        typer.Option(
            metavar="MIN..MAX",
            help="Run a supervisor of MIN to MAX worker processes (N: exactly N) that scales "
            "them with the runnable backlog (docs/supervisor.md).",
        ),
    ] = None,
    scale_down_after: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="With --processes: shrink only after fewer workers would have done for this long.",
        ),
    ] = "60s",
    quiet_timeout: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="With --processes: how long a worker let go may finish its iterations "
            "before SIGTERM.",
        ),
    ] = "10m",
) -> None:
    def run() -> WorkerOptions:
        seconds = None if max_time is None else parse_duration(max_time, "--max-time")
        if seconds is not None and seconds <= 0:
            raise UsageError("--max-time must be more than 0 seconds")
        if max_memory is not None and max_memory <= 0:
            raise UsageError("--max-memory must be more than 0 MB")
        return WorkerOptions(
            concurrency=concurrency,
            once=once,
            max_time=seconds,
            max_memory_mb=max_memory,
            max_iterations=max_iterations,
            grace=parse_duration(grace, "--grace"),
            queues=queue,
            app_name=state.app_ref or "",
        )

    # Checked here, under a supervisor too: a bad option is one line now, not every
    # worker dying at start.
    options = guarded(run)
    if processes is None:
        _run_worker(options)
    elif once:
        fail("--once and --processes do not go together: a supervisor keeps its workers up")
    else:
        _run_supervisor(options, processes, scale_down_after, quiet_timeout)


worker.__doc__ = f"""Run a worker: claim runnable processes and run their iterations until
stopped (with --once: until nothing is left to do). SIGTERM or SIGINT: stop claiming, let
running iterations finish within --grace, then give their leases back; a second signal
gives them back at once. SIGUSR1: stop claiming and exit once the running iterations have
ended, however long they take (quiet). One worker of the fleet at a time also applies the
timeouts and fires the app's cron schedules (`corral schedules`). `work` is the same command
(its older name).

With --processes MIN..MAX, a supervisor runs MIN to MAX such workers (the same options) as
subprocesses: it starts more at once when the runnable backlog grows, quiets idle ones
after --scale-down-after of lower need, restarts a crashed one, and drains them all on
SIGTERM or SIGINT (docs/supervisor.md).

\b
Exit codes (why it stopped):
{_EXIT_LINES}
"""
cli.command("worker")(worker)
cli.command("work", help="The same as `corral worker` (its older name): see its --help.")(worker)


def _run_worker(options: WorkerOptions) -> None:
    app = guarded(lambda: state.database_for("worker", required=True))
    w = guarded(lambda: Worker(app, options))
    _on_signals(lambda: w.stop())
    # A supervisor shrinking its fleet: stop claiming, exit when what runs has ended.
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: w.quiet())
    stats = guarded(w.run)  # its last log line says why it stopped and what it did: no other
    if stats.exit_code:
        raise typer.Exit(stats.exit_code)


#: The options only a supervisor takes: its workers are started without them.
SUPERVISOR_OPTIONS = ("--processes", "--scale-down-after", "--quiet-timeout")


def _run_supervisor(options: WorkerOptions, processes: str, window: str, quiet: str) -> None:
    from corral.scaling import Bounds, parse_processes
    from corral.supervisor import Supervisor, SupervisorOptions, worker_argv

    def make() -> Supervisor:
        options.check()
        low, high = parse_processes(processes)
        bounds = Bounds(
            low, high, options.concurrency, parse_duration(window, "--scale-down-after")
        )
        app = state.database_for("worker", required=True)
        return Supervisor(
            app.storage,
            SupervisorOptions(
                bounds=bounds,
                argv=worker_argv(sys.argv[1:], SUPERVISOR_OPTIONS),
                grace=options.grace,
                quiet_timeout=parse_duration(quiet, "--quiet-timeout"),
                jobs=app.registry.local_jobs(),
                queues=options.queues,
            ),
        )

    supervisor = guarded(make)
    _on_signals(supervisor.stop)
    try:
        code = guarded(supervisor.run)
    finally:
        supervisor.storage.close()
    if code:
        raise typer.Exit(code)


def _on_signals(stop: Callable[[], None]) -> None:
    def handle(signum: int, _frame: object) -> None:
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


@cli.command()
def execute(
    job: JobArg,
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    custom_id: Annotated[
        str | None, typer.Option(metavar="KEY", help="Idempotency key, as for submit.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="At the end, print the process as `show --json` does."),
    ] = False,
) -> None:
    """Submit one process and drive it to its end here, with a progress bar on stderr;
    other workers may help. Works on memory:// too. When it completes, its result is
    printed (JSON) on stdout. Exit 0 when it completed, 1 when it failed or was canceled,
    130 when interrupted (it is left for any worker to continue)."""
    from corral.execute import drive

    def run() -> int:
        app = state.app(required=True)
        params = parse_params(app, job, param, params_file)
        submitted = app.submit(job, params, custom_id=custom_id)
        code = drive(app, submitted.id, console=errors, on_signals=_on_signals)
        if code == 130:
            return code
        p = app.get(submitted.id)
        if as_json:
            print(json.dumps(out.process_json(p, app.history(p.id), now=app.clock())))
        elif p.status is Status.COMPLETED:
            print(json.dumps(p.result))
        return code

    code = guarded(run)
    raise typer.Exit(code)


def check_text(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Refuse a value that is not UTF-8 text. Python hands a byte that is not UTF-8 (from
    argv or the environment) over as a lone surrogate, which no database, JSON file or
    terminal takes: refused here, before anything is written, naming the argument."""
    for text in value if isinstance(value, list | tuple) else [value]:
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raw = text.encode("utf-8", "surrogateescape")
                source = ctx.get_parameter_source(param.name or "")
                env = f" (from ${param.envvar})" if source and source.name == "ENVIRONMENT" else ""
                raise typer.BadParameter(
                    f"{_shorten(repr(raw), 60)}{env} is not UTF-8 text (byte "
                    f"0x{raw[exc.start]:02x} at position {exc.start}); pass UTF-8 text"
                ) from None
    return value


def _check_all_text(command: Any) -> None:
    """Put `check_text` on every parameter of the command line (present and future ones),
    before any other callback a parameter has."""
    for param in command.params:
        then = param.callback

        def callback(ctx: Any, param: Any, value: Any, then: Any = then) -> Any:
            value = check_text(ctx, param, value)
            return then(ctx, param, value) if then is not None else value

        param.callback = callback
    for sub in getattr(command, "commands", {}).values():
        _check_all_text(sub)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args = sys.argv[1:] or ["--help"]
    # Before parsing, so that a bad command line is said in the format asked for too.
    if _asks_for_json(args):
        state.log_format = "json"
    try:
        command = typer.main.get_command(cli)
        _check_all_text(command)
        code = command.main(args=args, prog_name="corral", standalone_mode=False)
    except CommandLineError as exc:  # bad command line: one line, exit 2
        context = getattr(exc, "ctx", None)
        hint = f" (see: {context.command_path} --help)" if context is not None else ""
        say_error(f"{exc.format_message()}{hint}")
        sys.exit(2)
    except typer.Abort:
        errors.print("aborted", highlight=False)
        sys.exit(1)
    except Exception as exc:  # a bug of corral's, or of a library under it
        # (--traceback is looked for in argv too, for an error before it was parsed)
        if state.traceback or "--traceback" in args:
            traceback.print_exc()
        else:
            say_error(f"internal error: {_describe(exc)}; run with --traceback for details")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _asks_for_json(args: list[str]) -> bool:
    """Whether the command line or the environment asks for JSON lines (looked for before
    parsing: no command has an option of that name)."""
    pairs = zip(args, [*args[1:], ""], strict=True)
    if any(a == "--log-format=json" or (a, b) == ("--log-format", "json") for a, b in pairs):
        return True
    return os.environ.get("CORRAL_LOG_FORMAT") == "json"


def _describe(exc: BaseException) -> str:
    """`module.Type: first line of the message`."""
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"
    lines = str(exc).strip().splitlines()
    return f"{kind}: {lines[0]}" if lines else kind


# The HTTP API's commands (serve, token) live in their own module, which adds them to `cli`
# when imported; it needs the names above, hence the import down here.
from corral import cli_http  # noqa: E402, F401
