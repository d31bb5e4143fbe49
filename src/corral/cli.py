"""The `corral` command: `corral [--app FILE.py|module:attr] [--database URL] COMMAND`.

Exit codes: 0 done; 1 `execute`'s process did not complete, or an unexpected error (one
line; `--traceback` shows the whole trace); 2 bad usage or input, or a database that will
not work (one line, nothing written); 3 the database cannot be reached now (try again).
"""

from __future__ import annotations

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
from corral.app import App
from corral.errors import CorralError, StorageUnavailable, UsageError
from corral.loader import load_app
from corral.model import Status
from corral.worker import Worker, WorkerOptions

cli = typer.Typer(
    name="corral",
    help="Durable jobs and multi-step processes: submit them, run workers, see what happened.",
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


state = State()


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit `code` (inside a command)."""
    say_error(message)
    raise typer.Exit(code)


def say_error(message: str) -> None:
    """`error: message` on stderr, on one line, printed as it is (no markup)."""
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    errors.print(Text.assemble(("error:", "red"), " ", line), highlight=False, soft_wrap=True)


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


@cli.callback()
def main_options(
    ctx: typer.Context,
    app: Annotated[
        str | None,
        typer.Option(
            "--app",
            envvar="CORRAL_APP",
            help="Your jobs: FILE.py or module:attr (attr defaults to app).",
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="CORRAL_DATABASE_URL",
            help="memory://, sqlite:///path.db (default sqlite:///corral.db) or postgresql://…",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            help="DEBUG, INFO, WARNING or ERROR (default: INFO for workers, WARNING otherwise)."
        ),
    ] = None,
    show_traceback: Annotated[
        bool,
        typer.Option(
            "--traceback",
            envvar="CORRAL_TRACEBACK",
            help="On an error, print Python's whole traceback too (for a bug report).",
        ),
    ] = False,
) -> None:
    state.app_ref = app
    state.database = database
    state.traceback = show_traceback
    if log_level is None:
        log_level = "INFO" if ctx.invoked_subcommand in ("work", "worker") else "WARNING"
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        fail(f"unknown log level {log_level!r}; use DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


# --- submitting ------------------------------------------------------------------------------

ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="A parameter as key=value (repeatable); values that are not strings "
        "in the job's schema are read as JSON.",
    ),
]
ParamsFileOpt = Annotated[
    Path | None, typer.Option("--params-file", help="A JSON file with an object of parameters.")
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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(text: str, what: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"{what} {text!r}: write a duration such as 45s, 10m, 12h or 90d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_when(text: str, now: float) -> float:
    if text.startswith("+"):
        return now + parse_duration(text[1:], "--run-at")
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--run-at {text!r}: use ISO 8601 (2026-01-31T09:00:00+00:00) or +duration (+10m)"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a local time, as a person typing it means
    return when.timestamp()


@cli.command()
def submit(
    job: Annotated[str, typer.Argument(help="The job to run.")],
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    custom_id: Annotated[
        str | None,
        typer.Option(help="Idempotency key: submitting it again returns the same process."),
    ] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    run_at: Annotated[str | None, typer.Option(help="Not before: ISO 8601 or +duration.")] = None,
    queue: Annotated[str | None, typer.Option(help="Queue name.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value tag (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Submit a process of JOB; prints its id and whether it was created or already existed."""

    def run() -> None:
        app = state.app(required=True)
        params = parse_params(app, job, param, params_file)
        tags = dict(_pair(t, "--tag") for t in tag or [])
        when = parse_when(run_at, app.clock()) if run_at else None
        s = app.submit(
            job, params, custom_id=custom_id, priority=priority, run_at=when, queue=queue, tags=tags
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


def _pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{option} {text!r}: write key=value")
    return key, value


# --- looking -----------------------------------------------------------------------------------


@cli.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value tag (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List processes, newest first."""

    def run() -> None:
        tags = dict(_pair(t, "--tag") for t in tag or []) or None
        processes = state.app().list(status=status, job=job, tags=tags, limit=limit)
        if as_json:
            print(json.dumps([out.process_json(p) for p in processes]))
        elif processes:
            console.print(out.process_table(processes))
        else:
            console.print("no processes")

    guarded(run)


@cli.command()
def show(
    process_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show one process: parameters, store, progress, result or error, and its history."""

    def run() -> None:
        app = state.app()
        process = app.get(process_id)
        history = app.history(process.id)
        if as_json:
            print(json.dumps(out.process_json(process, history)))
        else:
            out.show_process(console, process, history)

    guarded(run)


@cli.command()
def jobs() -> None:
    """List the app's jobs and, per status, which handler would run."""

    def run() -> None:
        app = state.app(required=True)
        table = Table(box=None, header_style="bold")
        table.add_column("job")
        table.add_column("kind")
        statuses = (Status.STARTING, Status.RUNNING, Status.ENDING, Status.FAILING)
        for status in statuses:
            table.add_column(status.value)
        for name, kind, handlers in app.registry.table():
            table.add_row(name, kind, *(handlers.get(s, "") for s in statuses))
        console.print(table)

    guarded(run)


# --- commands on processes -----------------------------------------------------------------------


@cli.command()
def cancel(process_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a process: at once if it never started, else after its rollback."""

    def run() -> None:
        p = state.app().cancel(process_id)
        what = "canceled" if p.status is Status.CANCELED else "cancel requested"
        console.print(f"{p.id} {what}", highlight=False)

    guarded(run)


@cli.command()
def retry(process_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Resume a failed or canceled process where it stopped, with its store."""

    def run() -> None:
        p = state.app().retry(process_id)
        console.print(f"{p.id} {p.status.value}", highlight=False)

    guarded(run)


@cli.command()
def pause(queue: Annotated[str, typer.Option(help="Queue to pause; * for all.")] = "*") -> None:
    """Make workers stop claiming (running iterations finish)."""
    guarded(lambda: state.app().pause(queue))
    console.print(f"paused {queue}", highlight=False)


@cli.command()
def resume(queue: Annotated[str, typer.Option(help="Queue to resume; * for all.")] = "*") -> None:
    """Let workers claim again."""
    guarded(lambda: state.app().resume(queue))
    console.print(f"resumed {queue}", highlight=False)


@cli.command()
def prune(
    older_than: Annotated[
        str, typer.Option(help="Age of finished processes to delete, e.g. 90d, 12h.")
    ] = "90d",
) -> None:
    """Delete processes that ended longer ago than --older-than, with their history."""

    def run() -> None:
        n = state.app().prune(parse_duration(older_than, "--older-than"))
        console.print(f"pruned {n} processes", highlight=False)

    guarded(run)


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema (also done automatically on first use)."""

    def run() -> None:
        version = state.app().storage.migrate()
        console.print(f"schema version {version}", highlight=False)

    guarded(run)


# --- working ---------------------------------------------------------------------------

ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Iterations run at once.")]
QueueOpt = Annotated[list[str] | None, typer.Option("--queue", help="Only these queues.")]


@cli.command()
def work(
    once: Annotated[bool, typer.Option("--once", help="Drain until idle, then exit 0.")] = False,
    max_time: Annotated[float | None, typer.Option(help="Stop claiming after S seconds.")] = None,
    max_memory: Annotated[
        float | None, typer.Option(help="Stop claiming past MB resident.")
    ] = None,
    concurrency: ConcurrencyOpt = 1,
    queue: QueueOpt = None,
) -> None:
    """Work through runnable processes; with --once, exit when idle (fit for a crontab line)."""
    if max_time is not None and max_time <= 0:
        fail("--max-time must be > 0 seconds")
    if max_memory is not None and max_memory <= 0:
        fail("--max-memory must be > 0 MB")
    options = WorkerOptions(
        concurrency=concurrency,
        once=once,
        max_time=max_time,
        max_memory_mb=max_memory,
        queues=queue,
    )
    _run_worker(options)


@cli.command()
def worker(
    concurrency: ConcurrencyOpt = 1,
    grace: Annotated[
        float, typer.Option(help="Seconds running iterations get after SIGTERM.")
    ] = 30.0,
    queue: QueueOpt = None,
) -> None:
    """Run a long-lived worker. SIGTERM or SIGINT: finish running iterations, then exit;
    a second signal gives their leases back at once."""
    _run_worker(WorkerOptions(concurrency=concurrency, grace=grace, queues=queue))


def _run_worker(options: WorkerOptions) -> None:
    app = guarded(lambda: state.app(required=True))
    w = guarded(lambda: Worker(app, options))
    _on_signals(lambda: w.stop())
    stats = guarded(w.run)
    errors.print(
        f"worker stopped ({stats.stopped_by}): {stats.iterations} iterations, "
        f"{stats.completed} completed, {stats.failed} failed, {stats.lost} leases lost, "
        f"{stats.released} released",
        highlight=False,
        soft_wrap=True,
    )
    # Why it stopped, as an exit code: 0 idle or a signal, 3 the database failed for good
    # or was away when the grace ran out, 5 too many stuck handlers (see README).
    if stats.exit_code:
        raise typer.Exit(stats.exit_code)


def _on_signals(stop: Callable[[], None]) -> None:
    def handle(signum: int, _frame: object) -> None:
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


@cli.command()
def execute(
    job: Annotated[str, typer.Argument(help="The job to run.")],
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    custom_id: Annotated[str | None, typer.Option(help="Idempotency key.")] = None,
    concurrency: ConcurrencyOpt = 1,
) -> None:
    """Submit one process and drive it to an end here, with a progress bar; other workers
    may help. Exit 0 when it completed, 1 when it failed or was canceled."""
    from corral.execute import drive

    def run() -> int:
        app = state.app(required=True)
        params = parse_params(app, job, param, params_file)
        submitted = app.submit(job, params, custom_id=custom_id)
        return drive(
            app, submitted.id, concurrency=concurrency, console=errors, on_signals=_on_signals
        )

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


def _describe(exc: BaseException) -> str:
    """`module.Type: first line of the message`."""
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"
    lines = str(exc).strip().splitlines()
    return f"{kind}: {lines[0]}" if lines else kind
