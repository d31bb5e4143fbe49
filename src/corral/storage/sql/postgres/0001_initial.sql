-- Version 1: processes, their history, dependency edges (task graphs) and paused queues.
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
    -- docs/state-machine.md, classes 2 to 6: cancel requests, then failing, ending, running, starting.
    claim_rank smallint GENERATED ALWAYS AS (
        CASE WHEN cancel_requested THEN 1
             WHEN status = 'failing' THEN 2
             WHEN status = 'ending' THEN 3
             WHEN status = 'running' THEN 4
             ELSE 5 END
    ) STORED
);

-- Idempotent submit: one process per (client, custom id); INSERT ... ON CONFLICT relies on it.
CREATE UNIQUE INDEX corral_process_custom_id
    ON corral_process (client_id, custom_id) WHERE custom_id IS NOT NULL;

-- Only unleased runnable rows: a claim walks this in order, whatever the number of finished
-- processes in the table.
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
