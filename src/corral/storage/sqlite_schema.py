"""The SQLite schema as numbered migrations, applied in order by `SQLiteStorage.migrate`."""

from __future__ import annotations

# Version 1: processes, their history, dependency edges (task graphs) and paused queues.
_V1 = """
CREATE TABLE corral_process (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    store TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    progress_done REAL,
    progress_total REAL,
    priority INTEGER NOT NULL DEFAULT 0,
    queue TEXT NOT NULL DEFAULT 'default',
    run_at REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    stopped_status TEXT,
    custom_id TEXT,
    client_id TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}',
    pending_dependencies INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    version INTEGER NOT NULL DEFAULT 0,
    -- DESIGN 3, classes 2 to 6: cancel requests, then failing, ending, running, starting.
    claim_rank INTEGER GENERATED ALWAYS AS (
        CASE WHEN cancel_requested THEN 1
             WHEN status = 'failing' THEN 2
             WHEN status = 'ending' THEN 3
             WHEN status = 'running' THEN 4
             ELSE 5 END
    ) VIRTUAL
);
-- Idempotent submit: one process per (client, custom id).
CREATE UNIQUE INDEX corral_process_custom_id
    ON corral_process (client_id, custom_id) WHERE custom_id IS NOT NULL;
-- Only unleased runnable rows: a claim walks this in order, whatever the number of
-- finished processes in the table.
CREATE INDEX corral_process_runnable
    ON corral_process (claim_rank, priority DESC, run_at)
    WHERE status IN ('failing', 'ending', 'running', 'starting') AND lease_expires_at IS NULL;
-- Leased rows only: the few in flight, scanned for expired leases.
CREATE INDEX corral_process_leased
    ON corral_process (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX corral_process_finished
    ON corral_process (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX corral_process_created ON corral_process (created_at);
CREATE INDEX corral_process_status ON corral_process (status, created_at);
CREATE TABLE corral_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    process_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX corral_history_process ON corral_history (process_id, id);
CREATE TABLE corral_dependency (
    process_id TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (process_id, depends_on)
);
CREATE INDEX corral_dependency_depends_on ON corral_dependency (depends_on);
CREATE TABLE corral_paused_queue (queue TEXT PRIMARY KEY)
"""

# Version 2: the timeouts of DESIGN §6 and the leader row of the recovery sweep.
_V2 = """
ALTER TABLE corral_process ADD COLUMN deadline_at REAL;
ALTER TABLE corral_process ADD COLUMN schedule_to_close REAL;
ALTER TABLE corral_process ADD COLUMN start_to_close REAL;
ALTER TABLE corral_process ADD COLUMN heartbeat_timeout REAL;
ALTER TABLE corral_process ADD COLUMN iteration_since REAL NOT NULL DEFAULT 0;
ALTER TABLE corral_process ADD COLUMN claimed_at REAL;
ALTER TABLE corral_process ADD COLUMN heartbeat_at REAL;
UPDATE corral_process SET iteration_since = run_at;
CREATE INDEX corral_process_deadline
    ON corral_process (deadline_at) WHERE deadline_at IS NOT NULL AND finished_at IS NULL;
CREATE INDEX corral_process_schedule_to_close
    ON corral_process (iteration_since)
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL;
CREATE TABLE corral_leader (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
)
"""

# Version 3: the sweep's schedule_to_close branch searches by the expiry itself, as on
# PostgreSQL: an index on iteration_since alone made it walk every such process.
_V3 = """
DROP INDEX corral_process_schedule_to_close;
CREATE INDEX corral_process_schedule_to_close
    ON corral_process (iteration_since + schedule_to_close)
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL
"""

MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _V2), (3, _V3)]
SCHEMA_VERSION = MIGRATIONS[-1][0]
