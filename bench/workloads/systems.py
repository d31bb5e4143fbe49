"""The systems the suite compares: what they are, where their adapter lives, what they promise.

Plain data, importable without any queue library (the harness reads it before the peers'
virtual environment exists).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SystemInfo:
    name: str
    label: str
    #: "module:Class" of the adapter, importable with bench/ on sys.path.
    adapter: str
    #: "project": the project's own Python (corral); "peers": bench/.peers/venv.
    python: str
    store: str
    guarantee: str


CORRAL_GUARANTEE = (
    "at-least-once per iteration; a lost worker's lease expires and the next claim retries it; "
    "store and status writes exactly-once (one transaction fenced by the lease token)"
)

SYSTEMS: list[SystemInfo] = [
    SystemInfo(
        "corral-sqlite",
        "corral (SQLite)",
        "apps.corral_app:CorralSQLite",
        "project",
        "SQLite",
        CORRAL_GUARANTEE + "; SQLite in WAL mode, outcomes committed with synchronous=FULL, "
        "leases alone without an fsync (the default)",
    ),
    SystemInfo(
        "corral-pg",
        "corral (PostgreSQL)",
        "apps.corral_app:CorralPostgres",
        "project",
        "PostgreSQL",
        CORRAL_GUARANTEE,
    ),
    SystemInfo(
        "procrastinate",
        "Procrastinate",
        "peers.procrastinate_peer:Procrastinate",
        "peers",
        "PostgreSQL",
        "at-most-once by default: a job whose worker dies stays `doing` until stalled jobs are "
        "retried by hand or by a periodic task (then at-least-once); rows stay in PostgreSQL",
    ),
    SystemInfo(
        "pgqueuer",
        "PgQueuer",
        "peers.pgqueuer_peer:PgQueuer",
        "peers",
        "PostgreSQL",
        "at-least-once: a picked job whose heartbeat goes stale is picked again by another "
        "worker; finished jobs move to a log table",
    ),
    SystemInfo(
        "celery",
        "Celery",
        "peers.celery_peer:Celery",
        "peers",
        "Redis",
        "at-most-once by default (the message is acknowledged before the task runs); "
        "at-least-once with acks_late, redelivered after the Redis visibility timeout (1 h)",
    ),
    SystemInfo(
        "rq",
        "RQ",
        "peers.rq_peer:RQ",
        "peers",
        "Redis",
        "at-most-once by default: a job whose worker dies is moved to the failed registry, "
        "re-run only with a Retry policy",
    ),
    SystemInfo(
        "dramatiq",
        "Dramatiq",
        "peers.dramatiq_peer:Dramatiq",
        "peers",
        "Redis",
        "at-least-once: messages are acknowledged after the actor returns; a dead worker's "
        "unacknowledged messages are requeued",
    ),
    SystemInfo(
        "huey",
        "Huey",
        "peers.huey_peer:Huey",
        "peers",
        "SQLite",
        "at-most-once: a task leaves the queue when a consumer dequeues it, and is lost if "
        "that consumer dies before finishing it",
    ),
]

BY_NAME = {s.name: s for s in SYSTEMS}
CORRAL = ("corral-sqlite", "corral-pg")
PEERS = tuple(s.name for s in SYSTEMS if s.python == "peers")
