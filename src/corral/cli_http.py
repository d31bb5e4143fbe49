"""The commands of the HTTP API: `corral serve` and `corral token create|list|revoke`
(docs/http-api.md). They stand on cli.py's state and error handling."""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Annotated

import typer
from rich.table import Table

from corral.cli import JsonOpt, cli, console, guarded, state
from corral.errors import UsageError

token_cli = typer.Typer(
    help="Tokens of the HTTP API (`corral serve`): make one for each client, list, revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
cli.add_typer(token_cli, name="token")


@cli.command()
def serve(
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST",
            help="The address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 "
            "for every interface, behind TLS).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="The TCP port to listen on.")
    ] = 8000,
) -> None:
    """Serve the HTTP API (needs --app: its jobs validate what clients submit) under
    /api/v1, with its OpenAPI document at /openapi.json and interactive docs at /docs.
    Every request needs a token: `corral token create --client NAME`. Several servers may
    share one PostgreSQL database; on SQLite, run it beside the workers on one machine.
    A server also applies the timeouts, fires the schedules and prunes expired processes
    (one sweeper at a time across servers and workers), so HTTP workers need no other."""
    import uvicorn

    from corral.http import create_app
    from corral.recovery import Recovery

    app = guarded(lambda: state.database_for("serve", required=True))
    guarded(lambda: app.storage)  # the database answers (and is migrated) before we listen
    # A server takes part in the recovery sweep like a worker (one sweeper fleet-wide, by
    # the leader row): where only HTTP workers run, nothing else would apply the timeouts,
    # fire the schedules or prune what retention ends.
    owner = f"serve:{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    sweeper = threading.Thread(
        target=Recovery.of(app, owner).run, args=(stop,), name="corral-recovery", daemon=True
    )
    sweeper.start()
    try:
        uvicorn.run(
            create_app(app),
            host=host,
            port=port,
            # uvicorn's loggers go to corral's handler, in its --log-format and --log-level
            # (INFO by default for serve, as for a worker).
            log_config=None,
            log_level=None,
        )
    finally:
        stop.set()
        sweeper.join(timeout=5)


@token_cli.command("create")
def token_create(
    client: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="The client the token acts for: the client id of the processes it submits, "
            "and the only ones it sees.",
        ),
    ],
    admin: Annotated[
        bool, typer.Option("--admin", help="See and act on every client's processes.")
    ] = False,
    worker: Annotated[
        bool, typer.Option("--worker", help="May run processes through the worker protocol.")
    ] = False,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            metavar="QUEUE",
            help="A worker token's queue (repeatable; default: every queue).",
        ),
    ] = None,
) -> None:
    """Make a token and print it, once, alone on the last line: only its hash is stored,
    so keep it now (lost, revoke it and make another)."""
    from corral.http.tokens import create_token

    def run() -> None:
        if queue and not worker:
            raise UsageError("--queue is for worker tokens: add --worker")
        app = state.database_for("token create")
        info, secret = create_token(
            app.storage, client, admin=admin, worker=worker, queues=queue, now=app.clock()
        )
        scopes = ", ".join(s for s, on in (("admin", admin), ("worker", worker)) if on)
        console.print(
            f"token {info.id} for client {info.client!r}" + (f" ({scopes})" if scopes else ""),
            highlight=False,
        )
        print(secret)

    guarded(run)


@token_cli.command("list")
def token_list(as_json: JsonOpt = False) -> None:
    """List the tokens (never the tokens themselves): id, client, scopes, created, revoked."""
    from corral.http.tokens import token_json

    def run() -> None:
        found = state.database_for("token list", reads=True).storage.token_list()
        if as_json:
            print(json.dumps([token_json(t) for t in found]))
            return
        if not found:
            console.print("no tokens")
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("id", no_wrap=True)
        for col in ("client", "scopes", "created (UTC)", "revoked (UTC)"):
            table.add_column(col, overflow="fold")
        for t in found:
            shown = token_json(t)
            scopes = [s for s, on in (("admin", t.admin), ("worker", t.worker)) if on]
            if t.queues:
                scopes.append("queues " + ",".join(t.queues))
            table.add_row(
                t.id,
                t.client,
                " ".join(scopes) or "client",
                str(shown["created_at"])[:19].replace("T", " "),
                str(shown["revoked_at"] or "")[:19].replace("T", " "),
            )
        console.print(table)

    guarded(run)


@token_cli.command("revoke")
def token_revoke(
    token_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="The token's id, or its first 8 or more characters (token list)."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: requests carrying it are refused (401) from now on."""
    from corral.http.tokens import find_token

    def run() -> None:
        app = state.database_for("token revoke", reads=True)
        found = find_token(app.storage, token_id)
        if not app.storage.token_revoke(found.id, app.clock()):
            raise UsageError(f"token {found.id} was revoked already")
        if as_json:
            print(json.dumps({"id": found.id, "revoked": True}))
        else:
            console.print(f"revoked {found.id}", highlight=False)

    guarded(run)
