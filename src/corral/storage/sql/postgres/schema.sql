-- The whole corral schema as it is after the last migration, applied as is to an empty
-- database. tests/integration/test_postgres_migrations.py checks that it builds the same
-- schema as the numbered migrations applied in order: change both together.
-- Times are epoch seconds (double precision), as the storage interface passes them. JSON is
-- kept as the canonical text of corral.storage.codec (params compare as text for idempotent
-- submit); tags are jsonb so that a list can filter on them with @>.

CREATE TABLE corral_process (
    id text PRIMARY KEY,
    job text NOT NULL,
    params text NOT NULL,
    status text NOT NULL,
    store text NOT NULL DEFAULT '{}',
    result text,
    error text,
    progress_done double precision,
    progress_total double precision,
    priority integer NOT NULL DEFAULT 0,
    queue text NOT NULL DEFAULT 'default',
    run_at double precision NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_token bigint NOT NULL DEFAULT 0,
    lease_expires_at double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    stopped_status text,
    custom_id text,
    client_id text NOT NULL DEFAULT '',
    tags jsonb NOT NULL DEFAULT '{}',
    pending_dependencies integer NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    finished_at double precision,
    version bigint NOT NULL DEFAULT 0,
    -- DESIGN 3, classes 2 to 6: cancel requests, then failing, ending, running, starting.
    claim_rank smallint GENERATED ALWAYS AS (
        CASE WHEN cancel_requested THEN 1
             WHEN status = 'failing' THEN 2
             WHEN status = 'ending' THEN 3
             WHEN status = 'running' THEN 4
             ELSE 5 END
    ) STORED,
    -- DESIGN 6: the limits (seconds, None: none; deadline_at is absolute) and their clocks.
    deadline_at double precision,
    schedule_to_close double precision,
    start_to_close double precision,
    heartbeat_timeout double precision,
    iteration_since double precision NOT NULL DEFAULT 0,
    claimed_at double precision,
    heartbeat_at double precision
);

-- Idempotent submit: one process per (client, custom id); INSERT ... ON CONFLICT relies on it.
CREATE UNIQUE INDEX corral_process_custom_id
    ON corral_process (client_id, custom_id) WHERE custom_id IS NOT NULL;

-- Only unleased runnable rows: a claim walks this in order, whatever the number of finished
-- processes in the table.
CREATE INDEX corral_process_runnable
    ON corral_process (claim_rank, priority DESC, run_at)
    WHERE status IN ('failing', 'ending', 'running', 'starting') AND lease_expires_at IS NULL;

-- Leased rows only: the few in flight, scanned for expired leases, start_to_close and
-- heartbeat timeouts.
CREATE INDEX corral_process_leased
    ON corral_process (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE INDEX corral_process_finished
    ON corral_process (finished_at) WHERE finished_at IS NOT NULL;

CREATE INDEX corral_process_created ON corral_process (created_at);

CREATE INDEX corral_process_status ON corral_process (status, created_at);

-- The sweep finds expired deadlines and schedule_to_close windows by these.
CREATE INDEX corral_process_deadline
    ON corral_process (deadline_at) WHERE deadline_at IS NOT NULL AND finished_at IS NULL;

CREATE INDEX corral_process_schedule_to_close
    ON corral_process ((iteration_since + schedule_to_close))
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL;

-- ...and start_to_close and heartbeat timeouts of leased processes by these.
CREATE INDEX corral_process_start_to_close
    ON corral_process ((claimed_at + start_to_close))
    WHERE lease_expires_at IS NOT NULL AND start_to_close IS NOT NULL;

CREATE INDEX corral_process_heartbeat_timeout
    ON corral_process ((heartbeat_at + heartbeat_timeout))
    WHERE lease_expires_at IS NOT NULL AND heartbeat_timeout IS NOT NULL;

CREATE TABLE corral_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process_id text NOT NULL,
    at double precision NOT NULL,
    kind text NOT NULL,
    from_status text,
    to_status text,
    attempt integer NOT NULL DEFAULT 0,
    detail text NOT NULL DEFAULT '{}'
);

CREATE INDEX corral_history_process ON corral_history (process_id, id);

CREATE TABLE corral_dependency (
    process_id text NOT NULL,
    depends_on text NOT NULL,
    PRIMARY KEY (process_id, depends_on)
);

CREATE INDEX corral_dependency_depends_on ON corral_dependency (depends_on);

CREATE TABLE corral_paused_queue (queue text PRIMARY KEY);

-- One row per leadership (the recovery sweep): who holds it, until when.
CREATE TABLE corral_leader (
    name text PRIMARY KEY,
    owner text NOT NULL,
    expires_at double precision NOT NULL
);
