-- Version 1: processes, their history, dependency edges (task graphs) and paused queues.
-- Statements are separated by `;` and run one by one (see corral.storage.sqlite.sql).

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
    -- The claim order's classes 2 to 6 (docs/storage-sqlite.md): cancel requests, then
    -- failing, ending, running, starting.
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
-- finished processes in the table. The claim's WHERE repeats this one word for word
-- (queries.sql, select_runnable): SQLite uses a partial index only then.
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

-- Task graphs: a process waits for the processes it depends on.
CREATE TABLE corral_dependency (
    process_id TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (process_id, depends_on)
);

CREATE INDEX corral_dependency_depends_on ON corral_dependency (depends_on);

-- A row per paused queue; '*' pauses them all.
CREATE TABLE corral_paused_queue (queue TEXT PRIMARY KEY);
