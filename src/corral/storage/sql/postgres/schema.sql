-- The whole corral schema as it is after the last migration, applied as is to an empty
-- database. tests/integration/test_postgres_migrations.py checks that it builds the same
-- schema as the numbered migrations applied in order: change both together.
-- Times are timestamptz and JSON documents jsonb, so that the tables can be queried with SQL
-- as they are (docs/storage-postgres.md); queries.sql converts times to and from the epoch
-- seconds the storage interface passes. Durations (the timeouts) are seconds, as floats.

CREATE TABLE corral_process (
    -- Byte order: a short id is a range of the primary key, whatever the database's collation.
    id text COLLATE "C" PRIMARY KEY,
    job text NOT NULL,
    params jsonb NOT NULL,
    status text NOT NULL,
    store jsonb NOT NULL DEFAULT '{}',
    result jsonb,
    error jsonb,
    progress_done double precision,
    progress_total double precision,
    priority integer NOT NULL DEFAULT 0,
    queue text NOT NULL DEFAULT 'default',
    run_at timestamptz NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_token bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    stopped_status text,
    custom_id text,
    client_id text NOT NULL DEFAULT '',
    tags jsonb NOT NULL DEFAULT '{}',
    pending_dependencies integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    finished_at timestamptz,
    version bigint NOT NULL DEFAULT 0,
    -- docs/state-machine.md, classes 2 to 6: cancel requests, then failing, ending, running, starting.
    claim_rank smallint GENERATED ALWAYS AS (
        CASE WHEN cancel_requested THEN 1
             WHEN status = 'failing' THEN 2
             WHEN status = 'ending' THEN 3
             WHEN status = 'running' THEN 4
             ELSE 5 END
    ) STORED,
    -- docs/timeouts.md: the limits (seconds, None: none; deadline_at is absolute) and their clocks.
    deadline_at timestamptz,
    schedule_to_close double precision,
    start_to_close double precision,
    heartbeat_timeout double precision,
    iteration_since timestamptz NOT NULL DEFAULT 'epoch',
    claimed_at timestamptz,
    heartbeat_at timestamptz,
    -- docs/graphs.md: the failure policy towards dependencies, a cascade's root cause,
    -- whether any process depends on this one, and the batch it was submitted in.
    on_dependency_failure text NOT NULL DEFAULT 'cancel',
    root_cause text COLLATE "C",
    has_dependents boolean NOT NULL DEFAULT false,
    batch_id text COLLATE "C",
    -- docs/flow-control.md: the process's concurrency key and its limit (NULL: none).
    concurrency_key text,
    concurrency_limit integer
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

-- Retention (docs/timeouts.md): the sweep finds a job's completed processes, oldest first.
CREATE INDEX corral_process_completed
    ON corral_process (job, finished_at) WHERE status = 'completed';

CREATE INDEX corral_process_created ON corral_process (created_at);

CREATE INDEX corral_process_status ON corral_process (status, created_at);

-- `list --tag k=v` filters with `tags @> '{"k": "v"}'` through this index. Partial: a
-- process without tags has no entry, and costs nothing more to insert, claim or commit.
CREATE INDEX corral_process_tags
    ON corral_process USING gin (tags jsonb_path_ops) WITH (fastupdate = off)
    WHERE tags <> '{}';

-- The sweep finds expired deadlines and schedule_to_close windows by these. A time plus
-- seconds is indexed as the seconds since the epoch of the time's UTC timestamp: an index
-- expression must be IMMUTABLE, and date_part of a timestamptz is only STABLE.
CREATE INDEX corral_process_deadline
    ON corral_process (deadline_at) WHERE deadline_at IS NOT NULL AND finished_at IS NULL;

CREATE INDEX corral_process_schedule_to_close
    ON corral_process ((date_part('epoch', iteration_since AT TIME ZONE 'UTC') + schedule_to_close))
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL;

-- ...and start_to_close and heartbeat timeouts of leased processes by these.
CREATE INDEX corral_process_start_to_close
    ON corral_process ((date_part('epoch', claimed_at AT TIME ZONE 'UTC') + start_to_close))
    WHERE lease_expires_at IS NOT NULL AND start_to_close IS NOT NULL;

CREATE INDEX corral_process_heartbeat_timeout
    ON corral_process ((date_part('epoch', heartbeat_at AT TIME ZONE 'UTC') + heartbeat_timeout))
    WHERE lease_expires_at IS NOT NULL AND heartbeat_timeout IS NOT NULL;

-- Leased processes that have a key, by key: a claim counts a key's live leases here (a
-- few rows per key, whatever the size of the queue).
CREATE INDEX corral_process_concurrency
    ON corral_process (concurrency_key, lease_expires_at)
    WHERE concurrency_key IS NOT NULL AND lease_expires_at IS NOT NULL;

CREATE TABLE corral_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Process ids in byte order, as corral_process's: joins on them use the indexes.
    process_id text COLLATE "C" NOT NULL,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    from_status text,
    to_status text,
    attempt integer NOT NULL DEFAULT 0,
    detail jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX corral_history_process ON corral_history (process_id, id);

CREATE TABLE corral_dependency (
    process_id text COLLATE "C" NOT NULL,
    depends_on text COLLATE "C" NOT NULL,
    PRIMARY KEY (process_id, depends_on)
);

CREATE INDEX corral_dependency_depends_on ON corral_dependency (depends_on);

-- A graph's counts by status read the batch's rows only.
CREATE INDEX corral_process_batch
    ON corral_process (batch_id, status) WHERE batch_id IS NOT NULL;

-- What a failure canceled down the graph (`retry --with-dependents` resumes it).
CREATE INDEX corral_process_root_cause
    ON corral_process (root_cause) WHERE root_cause IS NOT NULL;

-- One row per batch (`app.batch()`): a batch submitted again with its custom id is the
-- same batch.
CREATE TABLE corral_batch (
    id text COLLATE "C" PRIMARY KEY,
    client_id text NOT NULL DEFAULT '',
    custom_id text,
    created_at timestamptz NOT NULL,
    size integer NOT NULL
);

CREATE UNIQUE INDEX corral_batch_custom_id
    ON corral_batch (client_id, custom_id) WHERE custom_id IS NOT NULL;

CREATE TABLE corral_paused_queue (queue text PRIMARY KEY);

-- One row per leadership (the recovery sweep): who holds it, until when.
CREATE TABLE corral_leader (
    name text PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- One row per running worker, refreshed with its lease renewals and removed when it stops:
-- a row that is not refreshed any more is a worker that died.
CREATE TABLE corral_worker (
    owner text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    app text NOT NULL,
    jobs jsonb NOT NULL,
    queues jsonb,
    concurrency integer NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    running jsonb NOT NULL DEFAULT '[]'
);

-- The end of some processes, applied to their dependents (docs/graphs.md): called by the
-- statement that ends them, in its transaction, so that a worker's commit stays one round
-- trip. Each round takes the waiting dependents of the processes that ended, in id order
-- (so that two transactions settling shared dependents lock them in the same order and
-- never deadlock), and updates each by its key: one fewer pending per dependency that
-- ended; under the `cancel` policy a dependency that failed or was canceled cancels the
-- dependent (caused by the first such one in id order, with its root cause); else the
-- dependent is runnable once nothing is pending. The rule is corral.graph.RULE, which the
-- conformance tests hold both backends to. An UPDATE re-reads a row that a concurrent
-- transaction changed before it counts down, so two dependencies ending at once both
-- count. The dependents it cancels are the next round. Returns how many became runnable
-- (and wakes workers on `notify` if any did). Its plans follow the edges: nested loops
-- over the edge index and the primary key (without statistics on a young table the
-- planner may otherwise prefer a walk of every waiting process).
CREATE FUNCTION corral_settle(
    ended_ids text[], ended_statuses text[], ended_roots text[], at timestamptz, notify text
) RETURNS integer LANGUAGE plpgsql
SET enable_hashjoin = off SET enable_mergejoin = off SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    promoted integer := 0;
    hit record;
    moved text;
    root text;
    next_ids text[];
    next_roots text[];
BEGIN
    WHILE coalesce(cardinality(ended_ids), 0) > 0 LOOP
        next_ids := '{}';
        next_roots := '{}';
        FOR hit IN
            SELECT d.process_id AS id, count(*)::integer AS n,
                   (array_agg(e.id ORDER BY e.id)
                       FILTER (WHERE e.status <> 'completed'))[1] AS cause,
                   (array_agg(e.status ORDER BY e.id)
                       FILTER (WHERE e.status <> 'completed'))[1] AS cause_status,
                   (array_agg(coalesce(e.root, e.id) ORDER BY e.id)
                       FILTER (WHERE e.status <> 'completed'))[1] AS cause_root
            FROM unnest(ended_ids, ended_statuses, ended_roots) AS e (id, status, root)
            JOIN corral_dependency d ON d.depends_on = e.id
            GROUP BY d.process_id
            ORDER BY d.process_id
        LOOP
            UPDATE corral_process p
            SET pending_dependencies = p.pending_dependencies - hit.n,
                status = CASE
                    WHEN p.on_dependency_failure = 'cancel' AND hit.cause IS NOT NULL
                        THEN 'canceled'
                    WHEN p.pending_dependencies - hit.n = 0
                        THEN coalesce(p.stopped_status, 'starting')
                    ELSE 'waiting' END,
                -- A parent waiting for its children resumes where it left off (its
                -- stopped_status, then forgotten); a canceled one keeps it, for a retry.
                stopped_status = CASE
                    WHEN p.pending_dependencies - hit.n = 0
                         AND NOT (p.on_dependency_failure = 'cancel' AND hit.cause IS NOT NULL)
                        THEN NULL
                    ELSE p.stopped_status END,
                run_at = CASE WHEN p.pending_dependencies - hit.n = 0
                              AND NOT (p.on_dependency_failure = 'cancel'
                                       AND hit.cause IS NOT NULL)
                         THEN greatest(p.run_at, at) ELSE p.run_at END,
                iteration_since = CASE WHEN p.pending_dependencies - hit.n = 0
                              AND NOT (p.on_dependency_failure = 'cancel'
                                       AND hit.cause IS NOT NULL)
                         THEN greatest(p.run_at, at) ELSE p.iteration_since END,
                finished_at = CASE WHEN p.on_dependency_failure = 'cancel'
                                   AND hit.cause IS NOT NULL
                              THEN at ELSE p.finished_at END,
                root_cause = CASE WHEN p.on_dependency_failure = 'cancel'
                                  AND hit.cause IS NOT NULL
                             THEN hit.cause_root ELSE p.root_cause END,
                updated_at = at, version = p.version + 1
            WHERE p.id = hit.id AND p.status = 'waiting'
            RETURNING p.status, p.root_cause INTO moved, root;
            IF NOT FOUND OR moved = 'waiting' THEN
                CONTINUE;
            END IF;
            IF moved <> 'canceled' THEN  -- starting, or a parent resuming
                promoted := promoted + 1;
                INSERT INTO corral_history (process_id, at, kind, from_status, to_status,
                                            attempt, detail)
                VALUES (hit.id, at, 'transition', 'waiting', moved, 0,
                        jsonb_build_object('reason', 'dependencies_done'));
            ELSE
                next_ids := next_ids || hit.id;
                next_roots := next_roots || root;
                INSERT INTO corral_history (process_id, at, kind, from_status, to_status,
                                            attempt, detail)
                VALUES (hit.id, at, 'transition', 'waiting', 'canceled', 0,
                        jsonb_build_object(
                            'reason', CASE WHEN hit.cause_status = 'failed'
                                           THEN 'dependency_failed'
                                           ELSE 'dependency_canceled' END,
                            'caused_by', hit.cause, 'root_cause', root));
            END IF;
        END LOOP;
        ended_ids := next_ids;
        ended_roots := next_roots;
        ended_statuses := array_fill('canceled'::text, ARRAY[cardinality(next_ids)]);
    END LOOP;
    IF promoted > 0 AND notify IS NOT NULL THEN
        PERFORM pg_notify(notify, '');
    END IF;
    RETURN promoted;
END
$$;

-- One row per cron schedule (docs/graphs.md, "Schedules"): the latest occurrence handled
-- (fired or dropped), the last one fired and its process (which may have been pruned since),
-- and a version that fences two sweepers; written with the occurrences' submits.
CREATE TABLE corral_schedule (
    name text PRIMARY KEY,
    handled_until timestamptz NOT NULL,
    last_occurrence timestamptz,
    last_process_id text COLLATE "C",
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
-- How many more processes of `key` a claim may lease at `at` (max_leased minus the live
-- leases of the key), or 0 when a concurrent claim is taking a slot of the same key.
-- The claim calls it for each process with a key it considers. It takes the key's
-- transaction-level advisory lock first, without waiting: a claim that cannot have it
-- skips the key, as SKIP LOCKED skips a row, so claims never wait on each other nor
-- deadlock. Holding it until its transaction ends, a claim counts and takes a slot
-- before any other claim of that key can count. VOLATILE, so that the count runs on a
-- fresh snapshot, taken after the lock: it sees the leases of every claim of the key
-- that committed before (the claim's own statement started earlier, and would not).
CREATE FUNCTION corral_key_free(key text, max_leased integer, at timestamptz)
RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(
        7370638, hashtext(coalesce(current_schema(), '') || '/' || key)
    ) THEN
        RETURN 0;
    END IF;
    RETURN max_leased - (
        SELECT count(*) FROM corral_process
        WHERE concurrency_key = key AND lease_expires_at IS NOT NULL AND lease_expires_at >= at
    );
END
$$;

-- One token bucket per (job, key) of a rate limit (docs/flow-control.md): its level of
-- tokens at `updated_at`; a worker takes a token before it starts an iteration.
CREATE TABLE corral_rate (
    bucket text PRIMARY KEY,
    tokens double precision NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A graph's counts by status: counter rows, and the deltas that triggers append at each
-- move of a process of a batch, folded into the counters by the recovery sweep
-- (docs/graphs.md, "Graph counters"; why deltas: 0012_batch_counts.sql).
CREATE TABLE corral_batch_count (
    batch_id text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (batch_id, status)
);

-- A queue of moves, emptied by every sweep: vacuumed after a thousand dead rows rather
-- than a fraction of its (always small) size, so that a reader's index scan does not
-- walk the moves folded since the last vacuum for long.
CREATE TABLE corral_batch_delta (
    batch_id text COLLATE "C" NOT NULL,
    src text COLLATE "C",  -- the status it left (none: inserted)
    dst text COLLATE "C"  -- the status it took (none: deleted)
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

CREATE INDEX corral_batch_delta_batch ON corral_batch_delta (batch_id);

CREATE FUNCTION corral_batch_count_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO corral_batch_delta (batch_id, dst) VALUES (NEW.batch_id, NEW.status);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO corral_batch_delta (batch_id, src) VALUES (OLD.batch_id, OLD.status);
    ELSE
        INSERT INTO corral_batch_delta (batch_id, src, dst)
        VALUES (NEW.batch_id, OLD.status, NEW.status);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER corral_batch_count_insert AFTER INSERT ON corral_process
FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL)
EXECUTE FUNCTION corral_batch_count_move();

CREATE TRIGGER corral_batch_count_update AFTER UPDATE OF status ON corral_process
FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status)
EXECUTE FUNCTION corral_batch_count_move();

CREATE TRIGGER corral_batch_count_delete AFTER DELETE ON corral_process
FOR EACH ROW WHEN (OLD.batch_id IS NOT NULL)
EXECUTE FUNCTION corral_batch_count_move();

-- The tokens of the HTTP API (docs/http-api.md): only each token's SHA-256 is kept. A token
-- acts for its client; `admin` sees every client's processes; `worker` may use the worker
-- protocol, from `queues` (NULL: every queue). A revoked token keeps its row.
CREATE TABLE corral_token (
    id text COLLATE "C" PRIMARY KEY,
    client text NOT NULL,
    hash text NOT NULL UNIQUE,
    admin boolean NOT NULL DEFAULT false,
    worker boolean NOT NULL DEFAULT false,
    queues jsonb,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- The answers to the worker protocol's claims, by client and claim id (migration 14).
CREATE TABLE corral_worker_claim (
    client text NOT NULL,
    claim_id text NOT NULL,
    answer text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (client, claim_id)
);
CREATE INDEX corral_worker_claim_created ON corral_worker_claim (created_at);
