-- The named queries of corral.storage.postgres. Each starts with `-- name --` and a one-line
-- comment. `/* process_columns */` stands for codec.PROCESS_COLUMNS, `/* filters */` for the
-- optional claim filters (ids, queues, jobs) and `/* max_recovered */` for the claim's bound
-- on expired leases: a statement without them is the claim of any runnable process. `%(notify)s` is the NOTIFY channel, or NULL when LISTEN/NOTIFY is
-- off: a write that may create runnable work wakes idle workers when its transaction commits.
--
-- Times are timestamptz in the tables and seconds since the epoch (float8) on the Python
-- side: a time goes in as to_timestamp(seconds) and comes out as date_part('epoch', time)
-- (the process columns are read so: see queries.py). JSON documents are jsonb in the tables
-- and canonical JSON text (corral.storage.codec) in the arguments, cast with ::jsonb.

-- schema_version_table --
-- The migrations applied so far; created before anything else, under the migration lock.
CREATE TABLE IF NOT EXISTS corral_schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- schema_lock --
-- Serialise concurrent openers of one schema until the migrating transaction ends.
SELECT pg_advisory_xact_lock(7370637, hashtext(coalesce(current_schema(), '')))

-- schema_version --
-- The newest migration applied.
SELECT coalesce(max(version), 0) FROM corral_schema_version

-- schema_version_insert --
-- Record one applied migration.
INSERT INTO corral_schema_version (version) VALUES (%(version)s)

-- server_clock --
-- The server's clock, in epoch seconds: the one clock of every worker (see _ServerClock).
SELECT extract(epoch FROM clock_timestamp())::float8

-- notify_channel --
-- One channel per schema, so that two corral databases in one PostgreSQL never wake each other;
-- and the database, so that a caller's own connection (transactional enqueue) can be checked.
SELECT left('corral_' || coalesce(current_schema(), 'public'), 63), current_database()

-- process_insert_many --
-- Insert new processes, skipping taken custom ids, with their edges and first history event
-- (and their concurrency keys: processes with one come this way).
-- Binary parameters: no text array to quote here and parse there.
WITH input AS (
    SELECT *
    FROM unnest(
        %(ids)b::text[], %(jobs)b::text[], %(params)b::text[], %(statuses)b::text[],
        %(priorities)b::integer[], %(queues)b::text[], %(run_at)b::float8[],
        %(custom_ids)b::text[], %(client_ids)b::text[], %(tags)b::jsonb[],
        %(created_at)b::float8[], %(details)b::text[], %(deadline_at)b::float8[],
        %(schedule_to_close)b::float8[], %(start_to_close)b::float8[],
        %(heartbeat_timeout)b::float8[], %(concurrency_keys)b::text[],
        %(concurrency_limits)b::integer[]
    ) WITH ORDINALITY AS i (id, job, params, status, priority, queue, run_at, custom_id,
                            client_id, tags, created_at, detail, deadline_at,
                            schedule_to_close, start_to_close, heartbeat_timeout,
                            concurrency_key, concurrency_limit, ord)
), inserted AS (
    INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, custom_id,
                                client_id, tags, created_at, updated_at, deadline_at,
                                schedule_to_close, start_to_close, heartbeat_timeout,
                                iteration_since, concurrency_key, concurrency_limit)
    SELECT id, job, params::jsonb, status, priority, queue, to_timestamp(run_at), custom_id,
           client_id, tags, to_timestamp(created_at), to_timestamp(created_at),
           to_timestamp(deadline_at), schedule_to_close, start_to_close, heartbeat_timeout,
           to_timestamp(run_at), concurrency_key, concurrency_limit
    FROM input ORDER BY ord
    ON CONFLICT (client_id, custom_id) WHERE custom_id IS NOT NULL DO NOTHING
    RETURNING id
), edges AS (
    INSERT INTO corral_dependency (process_id, depends_on)
    SELECT d.process_id, d.depends_on
    FROM unnest(%(edge_ids)b::text[], %(edge_deps)b::text[]) AS d (process_id, depends_on)
    WHERE d.process_id IN (SELECT id FROM inserted)
), submitted AS (
    INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
    SELECT i.id, to_timestamp(i.created_at), 'submitted', NULL, i.status, 0, i.detail::jsonb
    FROM input i WHERE i.id IN (SELECT id FROM inserted) ORDER BY i.ord
)
-- The ids inserted (the others' custom ids were taken), and one wake-up if any.
SELECT (SELECT array_agg(id) FROM inserted),
       CASE WHEN %(notify)b::text IS NOT NULL AND EXISTS (SELECT FROM inserted)
            THEN pg_notify(%(notify)b, '') END

-- process_insert_new --
-- Insert processes that have no custom id (none can be taken: every row is inserted), with
-- their edges and first history event, and wake workers once. Binary parameters; only the
-- columns that differ between processes of a batch come as arrays, the rest once.
WITH input AS MATERIALIZED (
    SELECT *
    FROM unnest(
        %(ids)b::text[], %(params)b::text[], %(run_at)b::float8[], %(priorities)b::integer[]
    ) AS i (id, params, run_at, priority)
), inserted AS (
    INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, client_id,
                                tags, created_at, updated_at, deadline_at, schedule_to_close,
                                start_to_close, heartbeat_timeout, iteration_since)
    SELECT id, %(job)b::text, params::jsonb, %(status)b::text, priority, %(queue)b::text,
           to_timestamp(run_at), %(client_id)b::text, %(tags)b::text::jsonb,
           to_timestamp(%(created_at)b::float8), to_timestamp(%(created_at)b::float8),
           to_timestamp(%(deadline_at)b::float8), %(schedule_to_close)b::float8,
           %(start_to_close)b::float8, %(heartbeat_timeout)b::float8, to_timestamp(run_at)
    FROM input
), edges AS (
    INSERT INTO corral_dependency (process_id, depends_on)
    SELECT process_id, depends_on
    FROM unnest(%(edge_ids)b::text[], %(edge_deps)b::text[]) AS d (process_id, depends_on)
), submitted AS (
    INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
    SELECT id, to_timestamp(%(created_at)b::float8), 'submitted', NULL, %(status)b::text, 0,
           %(detail)b::text::jsonb
    FROM input
)
SELECT CASE WHEN %(notify)b::text IS NOT NULL THEN pg_notify(%(notify)b, '') END

-- process_insert_one --
-- process_insert_new for one process (a plain submit): scalar parameters, no arrays to unnest.
WITH inserted AS (
    INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, client_id,
                                tags, created_at, updated_at, deadline_at, schedule_to_close,
                                start_to_close, heartbeat_timeout, iteration_since)
    VALUES (%(id)b::text, %(job)b::text, %(params)b::text::jsonb, %(status)b::text,
            %(priority)b::integer, %(queue)b::text, to_timestamp(%(run_at)b::float8),
            %(client_id)b::text, %(tags)b::text::jsonb, to_timestamp(%(created_at)b::float8),
            to_timestamp(%(created_at)b::float8), to_timestamp(%(deadline_at)b::float8),
            %(schedule_to_close)b::float8, %(start_to_close)b::float8,
            %(heartbeat_timeout)b::float8, to_timestamp(%(run_at)b::float8))
), edges AS (
    INSERT INTO corral_dependency (process_id, depends_on)
    SELECT %(id)b::text, depends_on FROM unnest(%(edge_deps)b::text[]) AS d (depends_on)
), submitted AS (
    INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
    VALUES (%(id)b::text, to_timestamp(%(created_at)b::float8), 'submitted', NULL,
            %(status)b::text, 0, %(detail)b::text::jsonb)
)
SELECT CASE WHEN %(notify)b::text IS NOT NULL THEN pg_notify(%(notify)b, '') END

-- process_get_by_custom_ids --
-- The processes holding some (client, custom id) pairs, each with whether its parameters
-- equal those given with the pair (as jsonb values: jsonb keeps no text to compare), and
-- the pair's place in the arrays.
SELECT /* process_columns */, params = t.given_params::jsonb, t.ord
FROM unnest(%(client_ids)s::text[], %(custom_ids)s::text[], %(params)s::text[])
    WITH ORDINALITY AS t (given_client_id, given_custom_id, given_params, ord)
JOIN corral_process ON (client_id, custom_id) = (t.given_client_id, t.given_custom_id)

-- process_get_many --
-- Processes by id (an insert retried after a lost connection checks what landed).
SELECT /* process_columns */ FROM corral_process WHERE id = ANY(%(ids)b::text[])

-- process_get --
-- One process by id.
SELECT /* process_columns */ FROM corral_process WHERE id = %(id)s

-- runnable_backlog --
-- What a claim could take now (process_claim's WHERE, without its locks): how many, at
-- most `cap` of each class so that the work is bounded whatever the queue's size, and
-- the oldest time since which one could be claimed (an expired lease: since it expired;
-- an unleased one: since its run_at). `/* filters */`: the jobs and queues asked for. A
-- full concurrency key's rows are not counted: no claim takes them now.
WITH full_keys AS MATERIALIZED (
    SELECT concurrency_key, concurrency_limit FROM corral_process
    WHERE concurrency_key IS NOT NULL AND lease_expires_at IS NOT NULL
      AND lease_expires_at >= to_timestamp(%(now)b)
    GROUP BY concurrency_key, concurrency_limit HAVING count(*) >= concurrency_limit
), expired AS (
    SELECT lease_expires_at AS since FROM corral_process
    WHERE lease_expires_at IS NOT NULL AND lease_expires_at < to_timestamp(%(now)b)
      AND status || '' IN ('failing', 'ending', 'running', 'starting')
      AND queue NOT IN (SELECT queue FROM corral_paused_queue)
      AND NOT EXISTS (SELECT FROM corral_paused_queue WHERE queue = '*')
      /* filters */
      AND (concurrency_key IS NULL
           OR (concurrency_key, concurrency_limit) NOT IN (SELECT * FROM full_keys))
    LIMIT %(cap)b
), runnable AS (
    SELECT run_at AS since FROM corral_process
    WHERE status IN ('failing', 'ending', 'running', 'starting') AND lease_expires_at IS NULL
      AND run_at <= to_timestamp(%(now)b)
      AND queue NOT IN (SELECT queue FROM corral_paused_queue)
      AND NOT EXISTS (SELECT FROM corral_paused_queue WHERE queue = '*')
      /* filters */
      AND (concurrency_key IS NULL
           OR (concurrency_key, concurrency_limit) NOT IN (SELECT * FROM full_keys))
    LIMIT %(cap)b
)
SELECT count(*), date_part('epoch', min(since))
FROM (SELECT since FROM expired UNION ALL SELECT since FROM runnable) AS claimable

-- connection_budget --
-- The connections the server accepts from ordinary roles (max_connections less the slots
-- reserved for superusers and, from PostgreSQL 16, for pg_use_reserved_connections) and
-- the client connections open now.
SELECT current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')

-- process_claim --
-- Lease runnable processes in the order of docs/state-machine.md: expired leases, then
-- claim_rank, priority, run_at. A process with a concurrency key only while its key has a
-- free slot (corral_key_free, schema.sql: it serialises the claims of a key), and no more
-- of a key than its free slots (`kept`); a process without one pays a test for NULL.
WITH full_keys AS MATERIALIZED (
    -- The (key, limit) pairs full now by this statement's snapshot, from the few live
    -- leases of keyed processes; read once, when the first process with a key is met. A
    -- claim walking past a full key's backlog tests each row against it, cheaply, rather
    -- than count its key; corral_key_free makes the exact count, under the key's lock.
    SELECT concurrency_key, concurrency_limit FROM corral_process
    WHERE concurrency_key IS NOT NULL AND lease_expires_at IS NOT NULL
      AND lease_expires_at >= to_timestamp(%(now)b)
    GROUP BY concurrency_key, concurrency_limit HAVING count(*) >= concurrency_limit
), expired AS MATERIALIZED (
    SELECT id, lease_owner, priority, run_at, concurrency_key,
           CASE WHEN concurrency_key IS NOT NULL
                THEN corral_key_free(concurrency_key, concurrency_limit, to_timestamp(%(now)b))
           END AS free
    FROM corral_process
    WHERE lease_expires_at IS NOT NULL AND lease_expires_at < to_timestamp(%(now)b)
      -- Not a condition corral_process_status can serve (|| ''): the planner otherwise
      -- ANDs that index in, and walks every queued row and its not yet vacuumed versions.
      AND status || '' IN ('failing', 'ending', 'running', 'starting')
      AND queue NOT IN (SELECT queue FROM corral_paused_queue)
      AND NOT EXISTS (SELECT FROM corral_paused_queue WHERE queue = '*')
      /* filters */
      AND (concurrency_key IS NULL
           OR ((concurrency_key, concurrency_limit) NOT IN (SELECT * FROM full_keys)
               AND corral_key_free(concurrency_key, concurrency_limit,
                                   to_timestamp(%(now)b)) > 0))
    ORDER BY priority DESC, run_at
    -- Also at most the claim's max_recovered, when it gives one: LIMIT 0 does not even scan.
    LIMIT least(%(limit)b /* max_recovered */)
    FOR UPDATE SKIP LOCKED
), runnable AS MATERIALIZED (
    SELECT id, claim_rank, priority, run_at, concurrency_key,
           CASE WHEN concurrency_key IS NOT NULL
                THEN corral_key_free(concurrency_key, concurrency_limit, to_timestamp(%(now)b))
           END AS free
    FROM corral_process
    WHERE status IN ('failing', 'ending', 'running', 'starting') AND lease_expires_at IS NULL
      AND run_at <= to_timestamp(%(now)b)
      AND queue NOT IN (SELECT queue FROM corral_paused_queue)
      AND NOT EXISTS (SELECT FROM corral_paused_queue WHERE queue = '*')
      /* filters */
      AND (concurrency_key IS NULL
           OR ((concurrency_key, concurrency_limit) NOT IN (SELECT * FROM full_keys)
               AND corral_key_free(concurrency_key, concurrency_limit,
                                   to_timestamp(%(now)b)) > 0))
    ORDER BY claim_rank, priority DESC, run_at
    LIMIT greatest(%(limit)b - (SELECT count(*) FROM expired), 0)
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id AS chosen_id, lease_owner AS previous_owner, 1 AS claim_class, 0 AS rank,
           priority, run_at, concurrency_key, free
    FROM expired
    UNION ALL
    SELECT id, NULL, 2, claim_rank, priority, run_at, concurrency_key, free FROM runnable
), kept AS (
    SELECT chosen_id FROM chosen WHERE concurrency_key IS NULL
    UNION ALL
    -- Of each key, as many as it had free slots, the first in claim order (the least
    -- count of a key seen, should a commit have freed a slot between two counts).
    SELECT chosen_id FROM (
        SELECT chosen_id, min(free) OVER per_key AS free,
               row_number() OVER (per_key ORDER BY claim_class, rank, priority DESC, run_at)
                   AS nth
        FROM chosen WHERE concurrency_key IS NOT NULL
        WINDOW per_key AS (PARTITION BY concurrency_key)
    ) AS keyed WHERE nth <= free
), claimed AS (
    UPDATE corral_process
    SET lease_owner = %(owner)b, lease_token = lease_token + 1,
        lease_expires_at = to_timestamp(%(expires)b), attempt = attempt + 1,
        updated_at = to_timestamp(%(now)b), claimed_at = to_timestamp(%(now)b),
        heartbeat_at = to_timestamp(%(now)b), version = version + 1
    -- An array, not a join: the planner cannot guess how few rows `kept` holds.
    WHERE id = ANY (ARRAY(SELECT chosen_id FROM kept))
    RETURNING /* process_columns */, claim_rank, concurrency_key
)
SELECT claimed.*, previous_owner, claim_class
FROM claimed JOIN chosen ON chosen_id = id
ORDER BY claim_class, CASE WHEN claim_class = 2 THEN claim_rank END, claimed.priority DESC,
    claimed.run_at

-- process_commit_many --
-- Apply the commits whose token still holds the lease, release it, and record their events.
WITH input AS (
    SELECT *
    FROM unnest(
        %(ids)b::text[], %(tokens)b::bigint[], %(status)b::text[], %(store)b::text[],
        %(result)b::text[], %(error)b::text[], %(progress_done)b::float8[],
        %(progress_total)b::float8[], %(run_at)b::float8[], %(attempt)b::integer[],
        %(stopped)b::text[], %(finished_at)b::float8[], %(iteration_since)b::float8[],
        %(now)b::float8[]
    ) AS i (id, token, status, store, result, error, progress_done, progress_total, run_at,
            attempt, stopped_status, finished_at, iteration_since, now)
), locked AS MATERIALIZED (
    -- Lock in id order, so that two batches over the same rows never deadlock.
    SELECT id FROM corral_process WHERE id = ANY(%(ids)b::text[]) ORDER BY id FOR UPDATE
), landed AS (
    UPDATE corral_process p
    SET status = i.status, store = i.store::jsonb, result = i.result::jsonb,
        error = i.error::jsonb, progress_done = i.progress_done,
        progress_total = i.progress_total, run_at = to_timestamp(i.run_at),
        attempt = i.attempt, stopped_status = i.stopped_status,
        finished_at = to_timestamp(i.finished_at),
        iteration_since = to_timestamp(i.iteration_since), lease_owner = NULL,
        lease_expires_at = NULL, claimed_at = NULL, heartbeat_at = NULL,
        updated_at = to_timestamp(i.now), version = p.version + 1
    FROM input i JOIN locked l ON l.id = i.id
    WHERE p.id = i.id AND p.id = ANY(%(ids)b::text[]) AND p.lease_token = i.token
      AND p.lease_expires_at IS NOT NULL
    RETURNING p.id, p.status, p.has_dependents,
              CASE WHEN %(notify)b::text IS NOT NULL THEN pg_notify(%(notify)b, '') END
), events AS (
    INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
    SELECT process_id, to_timestamp(at), kind, from_status, to_status, attempt, detail::jsonb
    FROM unnest(
        %(e_ids)b::text[], %(e_at)b::float8[], %(e_kinds)b::text[], %(e_from)b::text[],
        %(e_to)b::text[], %(e_attempts)b::integer[], %(e_details)b::text[]
    ) WITH ORDINALITY AS e (process_id, at, kind, from_status, to_status, attempt, detail, ord)
    WHERE process_id IN (SELECT id FROM landed)
    ORDER BY ord
), settled AS (
    -- The dependents of the processes this commit ended (only those that have some):
    -- settled in this statement, so that the commit stays one round trip.
    -- No call at all when none has (the common case: a plain job).
    SELECT CASE WHEN count(*) > 0 THEN
        corral_settle(array_agg(id ORDER BY id), array_agg(status ORDER BY id),
                      array_agg(NULL::text), to_timestamp(%(settle_at)b::float8),
                      %(notify)b::text) END
    FROM landed WHERE has_dependents AND status IN ('completed', 'failed', 'canceled')
)
SELECT id FROM landed, settled

-- process_update --
-- Apply an administrative change if the version did not move, with its events; on revoke,
-- also drop the lease and move the token on, fencing out its holder. A change that ends
-- the process settles its dependents; a retry (`reopen`) makes them wait for it again.
WITH updated AS (
    UPDATE corral_process
    SET status = %(status)s, store = %(store)s::jsonb, result = %(result)s::jsonb,
        error = %(error)s::jsonb, progress_done = %(progress_done)s,
        progress_total = %(progress_total)s, run_at = to_timestamp(%(run_at)s),
        attempt = %(attempt)s, stopped_status = %(stopped)s,
        finished_at = to_timestamp(%(finished_at)s),
        iteration_since = to_timestamp(%(iteration_since)s),
        cancel_requested = %(cancel_requested)s, updated_at = to_timestamp(%(now)s),
        version = version + 1,
        lease_owner = CASE WHEN %(revoke)s THEN NULL ELSE lease_owner END,
        lease_expires_at = CASE WHEN %(revoke)s THEN NULL ELSE lease_expires_at END,
        claimed_at = CASE WHEN %(revoke)s THEN NULL ELSE claimed_at END,
        heartbeat_at = CASE WHEN %(revoke)s THEN NULL ELSE heartbeat_at END,
        lease_token = lease_token + CASE WHEN %(revoke)s THEN 1 ELSE 0 END
    WHERE id = %(id)s AND version = %(version)s
    RETURNING id, status, has_dependents,
              CASE WHEN %(notify)s::text IS NOT NULL THEN pg_notify(%(notify)s, '') END
), reopened AS (
    -- A retry: the waiting dependents of the process wait for it again.
    UPDATE corral_process
    SET pending_dependencies = pending_dependencies + 1, updated_at = to_timestamp(%(now)s),
        version = version + 1
    WHERE %(reopen)s AND status = 'waiting' AND id IN (
        SELECT d.process_id FROM corral_dependency d JOIN updated u ON d.depends_on = u.id
        WHERE u.has_dependents)
), settled AS (
    -- It ended: its dependents are settled in this statement.
    SELECT CASE WHEN count(*) > 0 THEN
        corral_settle(array_agg(id), array_agg(status), array_agg(NULL::text),
                      to_timestamp(%(now)s), %(notify)s::text) END
    FROM updated WHERE has_dependents AND status IN ('completed', 'failed', 'canceled')
), events AS (
    INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
    SELECT u.id, to_timestamp(e.at), e.kind, e.from_status, e.to_status, e.attempt,
           e.detail::jsonb
    FROM updated u, unnest(
        %(e_at)s::float8[], %(e_kinds)s::text[], %(e_from)s::text[], %(e_to)s::text[],
        %(e_attempts)s::integer[], %(e_details)s::text[]
    ) WITH ORDINALITY AS e (at, kind, from_status, to_status, attempt, detail, ord)
    ORDER BY e.ord
)
SELECT count(*) FROM updated, settled

-- process_prune --
-- Delete terminal processes finished before a time, with their history and edges, but none
-- on which an unfinished process depends (it will read its result).
WITH doomed AS (
    DELETE FROM corral_process p
    WHERE finished_at IS NOT NULL AND finished_at < to_timestamp(%(before)s)
      AND NOT (has_dependents AND EXISTS (
          SELECT FROM corral_dependency e JOIN corral_process d ON d.id = e.process_id
          WHERE e.depends_on = p.id AND d.finished_at IS NULL))
    RETURNING id
), history AS (
    DELETE FROM corral_history WHERE process_id IN (SELECT id FROM doomed)
), edges AS (
    DELETE FROM corral_dependency WHERE process_id IN (SELECT id FROM doomed)
)
SELECT count(*) FROM doomed

-- process_prunable --
-- What process_prune would delete, by job (a dry run).
SELECT job, count(*) FROM corral_process p
WHERE finished_at IS NOT NULL AND finished_at < to_timestamp(%(before)s)
  AND NOT (has_dependents AND EXISTS (
      SELECT FROM corral_dependency e JOIN corral_process d ON d.id = e.process_id
      WHERE e.depends_on = p.id AND d.finished_at IS NULL))
GROUP BY job ORDER BY job

-- process_expired_plan --
-- For the rest of the retention transaction: plans that follow the indexes (a fresh table
-- has no statistics, and the planner then may hash a whole table, the history or the
-- unfinished processes of the dependents guard, to delete a few rows).
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
    set_config('enable_mergejoin', 'off', true), set_config('enable_bitmapscan', 'off', true)

-- process_expired_lock --
-- Retention (docs/timeouts.md): up to %(limit)s completed processes past their job's
-- cut-off (the jobs and their times paired in %(jobs)s and %(before)s), oldest first, each
-- job's from the index of completed processes by job; none on which an unfinished process
-- depends (OFFSET 0 keeps that guard a lookup per candidate by the edge index: without it
-- the planner may rather hash every unfinished process once). Locked, skipping any a
-- submit holds (it is adding a dependent), so that process_expired_delete, in a later
-- snapshot, sees every dependent added before.
SELECT c.id
FROM unnest(%(jobs)s::text[], %(before)s::float8[]) AS k (job, before)
CROSS JOIN LATERAL (
    SELECT p.id, p.finished_at FROM corral_process p
    WHERE p.job = k.job AND p.status = 'completed'
      AND p.finished_at < to_timestamp(k.before)
      AND NOT (p.has_dependents AND EXISTS (
          SELECT FROM corral_dependency e JOIN corral_process d ON d.id = e.process_id
          WHERE e.depends_on = p.id AND d.finished_at IS NULL OFFSET 0))
    ORDER BY p.finished_at
    LIMIT %(limit)s
    FOR UPDATE OF p SKIP LOCKED
) c
ORDER BY c.finished_at
LIMIT %(limit)s

-- process_expired_delete --
-- Delete the processes process_expired_lock locked (%(ids)s), with their history and edges,
-- the dependents guard (as in process_expired_lock) checked again in this statement's
-- snapshot.
WITH doomed AS (
    DELETE FROM corral_process p
    WHERE p.id = ANY(%(ids)s::text[])
      AND NOT (p.has_dependents AND EXISTS (
          SELECT FROM corral_dependency e JOIN corral_process d ON d.id = e.process_id
          WHERE e.depends_on = p.id AND d.finished_at IS NULL OFFSET 0))
    RETURNING p.id
), history AS (
    DELETE FROM corral_history WHERE process_id IN (SELECT id FROM doomed)
), edges AS (
    DELETE FROM corral_dependency WHERE process_id IN (SELECT id FROM doomed)
)
SELECT count(*) FROM doomed

-- lease_renew_many --
-- Extend the leases this owner still holds, noting heartbeats and reported progress;
-- report cancel requests. The lease of a process with a concurrency key must not have
-- expired: its slot was free from then on, and another process of the key may hold it.
WITH input AS (
    SELECT *
    FROM unnest(%(ids)s::text[], %(tokens)s::bigint[], %(beats)s::float8[],
                %(done)s::float8[], %(total)s::float8[])
        AS i (id, token, heartbeat_at, done, total)
), locked AS MATERIALIZED (
    SELECT id FROM corral_process WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE
)
UPDATE corral_process p
SET lease_expires_at = to_timestamp(%(expires)s),
    heartbeat_at = coalesce(to_timestamp(i.heartbeat_at), p.heartbeat_at),
    progress_done = coalesce(i.done, p.progress_done),
    progress_total = coalesce(i.total, p.progress_total)
FROM input i JOIN locked l ON l.id = i.id
WHERE p.id = i.id AND p.id = ANY(%(ids)s::text[]) AND p.lease_token = i.token
  AND p.lease_owner = %(owner)s
  AND p.lease_expires_at IS NOT NULL
  AND (p.concurrency_key IS NULL OR p.lease_expires_at >= to_timestamp(%(now)s))
RETURNING p.id, p.cancel_requested

-- lease_release_many --
-- Give leases back without counting the try, noting each release in the history.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS i (id, token)
), locked AS MATERIALIZED (
    SELECT id FROM corral_process WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE
), released AS (
    UPDATE corral_process p
    SET lease_owner = NULL, lease_expires_at = NULL, attempt = greatest(p.attempt - 1, 0),
        updated_at = to_timestamp(%(now)s), version = p.version + 1
    FROM input i JOIN locked l ON l.id = i.id
    WHERE p.id = i.id AND p.id = ANY(%(ids)s::text[]) AND p.lease_token = i.token
      AND p.lease_expires_at IS NOT NULL
    RETURNING p.id, p.attempt,
              CASE WHEN %(notify)s::text IS NOT NULL THEN pg_notify(%(notify)s, '') END
), events AS (
    INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
    SELECT id, to_timestamp(%(now)s), 'released', NULL, NULL, attempt, '{}' FROM released
)
SELECT id FROM released

-- leader_acquire --
-- Take a free or expired leadership, or keep one this owner holds; a row if it holds it now.
INSERT INTO corral_leader AS l (name, owner, expires_at)
VALUES (%(name)s, %(owner)s, to_timestamp(%(expires)s))
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE l.owner = excluded.owner OR l.expires_at < to_timestamp(%(now)s)
RETURNING owner

-- process_timed_out --
-- Unfinished processes with an expired timeout (docs/timeouts.md), each found by its own index (a
-- time plus seconds in the form its index has: see schema.sql).
(SELECT /* process_columns */, 'process_timeout' FROM corral_process
 WHERE deadline_at IS NOT NULL AND finished_at IS NULL
   AND deadline_at < to_timestamp(%(now)s)
   AND status NOT IN ('failing', 'completed', 'failed', 'canceled'))
UNION ALL
(SELECT /* process_columns */, 'schedule_to_close' FROM corral_process
 WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL
   AND status IN ('failing', 'ending', 'running', 'starting')
   AND date_part('epoch', iteration_since AT TIME ZONE 'UTC') + schedule_to_close < %(now)s)
UNION ALL
(SELECT /* process_columns */, 'start_to_close' FROM corral_process
 WHERE lease_expires_at IS NOT NULL AND start_to_close IS NOT NULL
   AND date_part('epoch', claimed_at AT TIME ZONE 'UTC') + start_to_close < %(now)s)
UNION ALL
(SELECT /* process_columns */, 'heartbeat_timeout' FROM corral_process
 WHERE lease_expires_at IS NOT NULL AND heartbeat_timeout IS NOT NULL
   AND date_part('epoch', heartbeat_at AT TIME ZONE 'UTC') + heartbeat_timeout < %(now)s)
LIMIT %(limit)s

-- process_concurrency --
-- A process's concurrency key and limit, and the live leases of that key (at or after
-- `now`): what a claim counts, found by the same index. No row: no such process; one row of
-- NULLs: no key, or no live lease.
SELECT p.concurrency_key, p.concurrency_limit, h.id, h.lease_owner,
       date_part('epoch', h.lease_expires_at)
FROM corral_process p
LEFT JOIN corral_process h
    ON h.concurrency_key = p.concurrency_key AND h.lease_expires_at IS NOT NULL
   AND h.lease_expires_at >= to_timestamp(%(now)s)
WHERE p.id = %(id)s
ORDER BY h.lease_expires_at, h.id

-- history_list --
-- A process's history, oldest first.
SELECT process_id, date_part('epoch', at), kind, from_status, to_status, attempt, detail
FROM corral_history WHERE process_id = %(id)s ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s

-- history_append --
-- Append events that change no process.
INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
SELECT process_id, to_timestamp(at), kind, from_status, to_status, attempt, detail::jsonb
FROM unnest(
    %(e_ids)s::text[], %(e_at)s::float8[], %(e_kinds)s::text[], %(e_from)s::text[],
    %(e_to)s::text[], %(e_attempts)s::integer[], %(e_details)s::text[]
) WITH ORDINALITY AS e (process_id, at, kind, from_status, to_status, attempt, detail, ord)
ORDER BY ord

-- queue_pause --
-- Stop claims from a queue (`*`: every queue).
INSERT INTO corral_paused_queue (queue) VALUES (%(queue)s) ON CONFLICT DO NOTHING

-- queue_resume --
-- Let claims take from a queue again (`*`: resume every queue).
DELETE FROM corral_paused_queue
WHERE queue = %(queue)s OR %(queue)s = '*'
RETURNING CASE WHEN %(notify)s::text IS NOT NULL THEN pg_notify(%(notify)s, '') END

-- queue_paused --
-- The paused queues.
SELECT queue FROM corral_paused_queue ORDER BY 1

-- process_id_neighbors --
-- For each id, the stored ids just before and after it in id order: two probes of the
-- primary key each.
SELECT t.id,
       (SELECT p.id FROM corral_process p WHERE p.id < t.id ORDER BY p.id DESC LIMIT 1),
       (SELECT p.id FROM corral_process p WHERE p.id > t.id ORDER BY p.id LIMIT 1)
FROM unnest(%(ids)s::text[]) AS t (id)

-- queue_counts --
-- Processes by queue and status.
SELECT queue, status, count(*) FROM corral_process GROUP BY queue, status

-- worker_register --
-- Add a worker's row, or replace the row of the same owner.
INSERT INTO corral_worker (owner, host, pid, app, jobs, queues, concurrency, started_at,
                           last_seen_at, running)
VALUES (%(owner)s, %(host)s, %(pid)s, %(app)s, %(jobs)s::jsonb, %(queues)s::jsonb,
        %(concurrency)s, to_timestamp(%(started_at)s), to_timestamp(%(last_seen_at)s),
        %(running)s::jsonb)
ON CONFLICT (owner) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, app = excluded.app, jobs = excluded.jobs,
    queues = excluded.queues, concurrency = excluded.concurrency,
    started_at = excluded.started_at, last_seen_at = excluded.last_seen_at,
    running = excluded.running

-- worker_seen --
-- Refresh a worker's last sighting and what it runs; no row if it has none.
UPDATE corral_worker
SET last_seen_at = to_timestamp(%(now)s), running = %(running)s::jsonb
WHERE owner = %(owner)s
RETURNING owner

-- worker_remove --
-- Delete a worker's row.
DELETE FROM corral_worker WHERE owner = %(owner)s

-- worker_list --
-- Every registered worker, oldest first.
SELECT owner, host, pid, app, jobs, queues, concurrency, date_part('epoch', started_at),
       date_part('epoch', last_seen_at), running
FROM corral_worker ORDER BY started_at, owner

-- worker_prune --
-- Delete the rows of workers not seen since a time.
DELETE FROM corral_worker WHERE last_seen_at < to_timestamp(%(before)s) RETURNING owner

-- graph_lock_existing --
-- The processes a graph's new nodes depend on that exist already: locked in id order, so
-- that none can end unseen before the edges are written, marked as having dependents (the
-- commit that ends them settles them), with their status and root cause.
WITH locked AS (
    SELECT id FROM corral_process WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR UPDATE
)
UPDATE corral_process p SET has_dependents = true
FROM locked l WHERE p.id = l.id
RETURNING p.id, p.status, p.root_cause

-- process_insert_graph --
-- Processes of a graph, with their initial status, pending count, policy and batch, their
-- edges, their submitted events and whether each has dependents in the batch.
WITH input AS (
    SELECT *
    FROM unnest(
        %(ids)s::text[], %(jobs)s::text[], %(params)s::text[], %(statuses)s::text[],
        %(priorities)s::integer[], %(queues)s::text[], %(run_at)s::float8[],
        %(custom_ids)s::text[], %(client_ids)s::text[], %(tags)s::text[],
        %(created_at)s::float8[], %(details)s::text[], %(deadline_at)s::float8[],
        %(schedule_to_close)s::float8[], %(start_to_close)s::float8[],
        %(heartbeat_timeout)s::float8[], %(pending)s::integer[], %(policies)s::text[],
        %(batch_ids)s::text[], %(has_dependents)s::boolean[], %(concurrency_keys)s::text[],
        %(concurrency_limits)s::integer[]
    ) WITH ORDINALITY AS i (id, job, params, status, priority, queue, run_at, custom_id,
                            client_id, tags, created_at, detail, deadline_at,
                            schedule_to_close, start_to_close, heartbeat_timeout, pending,
                            policy, batch_id, has_dependents, concurrency_key,
                            concurrency_limit, ord)
), inserted AS (
    INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, custom_id,
                                client_id, tags, created_at, updated_at, deadline_at,
                                schedule_to_close, start_to_close, heartbeat_timeout,
                                iteration_since, pending_dependencies, on_dependency_failure,
                                batch_id, has_dependents, concurrency_key, concurrency_limit)
    SELECT id, job, params::jsonb, status, priority, queue, to_timestamp(run_at), custom_id,
           client_id, tags::jsonb, to_timestamp(created_at), to_timestamp(created_at),
           to_timestamp(deadline_at), schedule_to_close, start_to_close, heartbeat_timeout,
           to_timestamp(run_at), pending, policy, batch_id, has_dependents, concurrency_key,
           concurrency_limit
    FROM input ORDER BY ord
), edges AS (
    INSERT INTO corral_dependency (process_id, depends_on)
    SELECT * FROM unnest(%(edge_ids)s::text[], %(edge_deps)s::text[])
), submitted AS (
    INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
    SELECT id, to_timestamp(created_at), 'submitted', NULL, status, 0, detail::jsonb
    FROM input ORDER BY ord
)
SELECT CASE WHEN %(notify)s::text IS NOT NULL AND 'starting' = ANY(%(statuses)s::text[])
            THEN pg_notify(%(notify)s, '') END

-- graph_cancel_at_once --
-- New nodes that a dependency which had already failed cancels at once (corral.graph
-- decided), with their events.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::text[], %(roots)s::text[]) AS i (id, root)
), canceled AS (
    UPDATE corral_process p
    SET status = 'canceled', finished_at = to_timestamp(%(at)s), root_cause = i.root,
        version = p.version + 1
    FROM input i WHERE p.id = i.id
)
INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
SELECT process_id, to_timestamp(at), kind, from_status, to_status, attempt, detail::jsonb
FROM unnest(
    %(e_ids)s::text[], %(e_at)s::float8[], %(e_kinds)s::text[], %(e_from)s::text[],
    %(e_to)s::text[], %(e_attempts)s::integer[], %(e_details)s::text[]
) WITH ORDINALITY AS e (process_id, at, kind, from_status, to_status, attempt, detail, ord)
ORDER BY ord

-- batch_insert --
-- A batch (app.batch()); nothing if its (client, custom id) is taken: the id of the
-- batch inserted, else none.
INSERT INTO corral_batch (id, client_id, custom_id, created_at, size)
VALUES (%(id)s, %(client_id)s, %(custom_id)s, to_timestamp(%(created_at)s), %(size)s)
ON CONFLICT (client_id, custom_id) WHERE custom_id IS NOT NULL DO NOTHING
RETURNING id

-- batch_by_custom_id --
-- The batch holding a (client, custom id).
SELECT id, client_id, custom_id, extract(epoch FROM created_at)::float8, size
FROM corral_batch WHERE client_id = %(client_id)s AND custom_id = %(custom_id)s

-- batch_get --
-- A batch by id.
SELECT id, client_id, custom_id, extract(epoch FROM created_at)::float8, size
FROM corral_batch WHERE id = %(id)s

-- batch_counts --
-- A batch's processes by status: its counter rows plus the deltas not folded yet (see
-- 0012_batch_counts.sql), not its processes. One statement, so one snapshot: a fold moves
-- deltas into the counters in one transaction, and is seen whole or not at all.
SELECT status, sum(n) FROM (
    SELECT status, n FROM corral_batch_count WHERE batch_id = %(id)s
    UNION ALL
    SELECT m.status, m.n FROM corral_batch_delta d
    CROSS JOIN LATERAL (VALUES (d.src, -1), (d.dst, 1)) AS m (status, n)
    WHERE d.batch_id = %(id)s AND m.status IS NOT NULL
) AS moves
GROUP BY status HAVING sum(n) <> 0

-- batch_counts_fold --
-- Fold up to %(limit)s committed deltas into the counter rows: how many. SKIP LOCKED, so
-- that two sweepers (a leadership handing over) fold disjoint deltas and never wait; the
-- counter rows are written once each, in key order, so they cannot deadlock either.
WITH gone AS (
    DELETE FROM corral_batch_delta WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM corral_batch_delta LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    ))
    RETURNING batch_id, src, dst
), folded AS (
    INSERT INTO corral_batch_count AS c (batch_id, status, n)
    SELECT gone.batch_id, m.status, sum(m.n) FROM gone
    CROSS JOIN LATERAL (VALUES (gone.src, -1), (gone.dst, 1)) AS m (status, n)
    WHERE m.status IS NOT NULL
    GROUP BY gone.batch_id, m.status
    ORDER BY gone.batch_id, m.status
    ON CONFLICT (batch_id, status) DO UPDATE SET n = c.n + excluded.n
)
SELECT count(*) FROM gone

-- batch_processes --
-- The processes of a batch, in id order (submit order).
SELECT /* process_columns */ FROM corral_process WHERE batch_id = %(id)s ORDER BY id

-- batch_edges --
-- The edges inside a batch: (dependent, dependency).
SELECT e.process_id, e.depends_on FROM corral_dependency e
JOIN corral_process p ON p.id = e.process_id WHERE p.batch_id = %(id)s
ORDER BY e.process_id, e.depends_on

-- dependencies_of --
-- What processes see of their dependencies: dependent, then the dependency's id, status,
-- result and error, in id order.
SELECT e.process_id, p.id, p.status, p.result, p.error
FROM corral_dependency e JOIN corral_process p ON p.id = e.depends_on
WHERE e.process_id = ANY(%(ids)s::text[]) ORDER BY e.process_id, p.id

-- process_edges --
-- The ids a process depends on (first column 'on'), and those of its dependents ('by').
SELECT 'on', depends_on FROM corral_dependency WHERE process_id = %(id)s
UNION ALL
SELECT 'by', process_id FROM corral_dependency WHERE depends_on = %(id)s
ORDER BY 1, 2

-- process_get_by_custom_id --
-- The process holding a (client, custom id), if any.
SELECT /* process_columns */ FROM corral_process
WHERE client_id = %(client_id)s AND custom_id = %(custom_id)s

-- schedule_list --
-- Every schedule's row, with the status of its last process now (NULL: none, or pruned).
SELECT s.name, date_part('epoch', s.handled_until), s.version,
       date_part('epoch', s.last_occurrence), s.last_process_id, p.status
FROM corral_schedule s LEFT JOIN corral_process p ON p.id = s.last_process_id
ORDER BY s.name

-- schedule_create --
-- A schedule's first row (version 1), unless another sweeper wrote it first (this one then
-- waits for that one's commit and writes nothing).
INSERT INTO corral_schedule (name, handled_until, version, updated_at)
VALUES (%(name)s, to_timestamp(%(handled_until)s), 1, to_timestamp(%(now)s))
ON CONFLICT (name) DO NOTHING
RETURNING version

-- schedule_advance --
-- Move a schedule on, if its row is still at the version the sweeper read. The row lock it
-- takes makes a second sweeper wait for the first's commit, then find the version moved.
UPDATE corral_schedule
SET handled_until = to_timestamp(%(handled_until)s), version = version + 1,
    updated_at = to_timestamp(%(now)s)
WHERE name = %(name)s AND version = %(version)s
RETURNING version

-- schedule_fired --
-- The last occurrence fired and its process, once it is inserted.
UPDATE corral_schedule
SET last_occurrence = to_timestamp(%(occurrence)s), last_process_id = %(process_id)s
WHERE name = %(name)s

-- canceled_by_root --
-- The processes a cascade from a root canceled, locked in id order.
SELECT id FROM corral_process WHERE root_cause = %(root)s AND status = 'canceled'
ORDER BY id FOR UPDATE

-- edges_of --
-- The edges of some processes: (dependent, dependency).
SELECT process_id, depends_on FROM corral_dependency WHERE process_id = ANY(%(ids)s::text[])

-- dependency_statuses --
-- The statuses of a process's dependencies.
SELECT p.status FROM corral_dependency e JOIN corral_process p ON p.id = e.depends_on
WHERE e.process_id = %(id)s

-- dependent_resume --
-- A dependent that a cascade canceled, resumed with the process it depends on, and its
-- history event.
WITH resumed AS (
    UPDATE corral_process SET status = %(status)s, pending_dependencies = %(pending)s,
        run_at = to_timestamp(%(now)s), iteration_since = to_timestamp(%(now)s),
        finished_at = NULL, root_cause = NULL, cancel_requested = false, attempt = 0,
        error = NULL, stopped_status = NULL, updated_at = to_timestamp(%(now)s),
        version = version + 1
    WHERE id = %(id)s AND status = 'canceled'
    RETURNING id
)
INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
SELECT id, to_timestamp(%(now)s), 'transition', 'canceled', %(status)s, 0,
       %(detail)s::jsonb
FROM resumed

-- spawn_parent --
-- A parent that spawned children waits for those not ended; it runs its next handler
-- whatever their outcome (it reads them in ctx.dependencies), so its policy is `run`.
UPDATE corral_process SET pending_dependencies = %(pending)s, on_dependency_failure = 'run'
WHERE id = %(id)s

-- spawn_resume --
-- A parent whose children all ended already (custom ids of processes that existed): it
-- resumes at once where its spawning iteration left it, with its event.
WITH resumed AS (
    UPDATE corral_process SET status = stopped_status, stopped_status = NULL,
        run_at = to_timestamp(%(at)s), iteration_since = to_timestamp(%(at)s),
        updated_at = to_timestamp(%(at)s), version = version + 1
    WHERE id = %(id)s AND status = 'waiting' AND stopped_status IS NOT NULL
    RETURNING id, status
)
INSERT INTO corral_history (process_id, at, kind, from_status, to_status, attempt, detail)
SELECT id, to_timestamp(%(at)s), 'transition', 'waiting', status, 0,
       '{"reason": "dependencies_done"}'::jsonb
FROM resumed

-- graph_mark_dependents --
-- Processes that now have dependents: the commit that ends them settles them.
UPDATE corral_process SET has_dependents = true
WHERE id = ANY(%(ids)s::text[]) AND NOT has_dependents

-- rate_bucket_new --
-- A bucket met for the first time: full.
INSERT INTO corral_rate (bucket, tokens, updated_at)
VALUES (%(bucket)s, %(tokens)s, to_timestamp(%(now)s))
ON CONFLICT (bucket) DO NOTHING

-- rate_bucket --
-- A bucket's level of tokens and when it was written, locked until the take is written.
SELECT tokens, extract(epoch FROM updated_at)::float8 FROM corral_rate
WHERE bucket = %(bucket)s FOR UPDATE

-- rate_bucket_set --
-- A bucket's new level (corral.rates.take decided it).
UPDATE corral_rate SET tokens = %(tokens)s, updated_at = to_timestamp(%(now)s)
WHERE bucket = %(bucket)s

-- process_stats_counts --
-- Processes by queue, job and status; only client %(client)s's unless it is NULL.
SELECT queue, job, status, count(*) FROM corral_process
WHERE %(client)s::text IS NULL OR client_id = %(client)s::text GROUP BY queue, job, status

-- process_stats_completions --
-- Completions by minute (its start, epoch seconds) since a time; only client %(client)s's
-- unless it is NULL. Served by the index of finished processes.
SELECT floor(date_part('epoch', finished_at) / 60) * 60 AS minute, count(*)
FROM corral_process
WHERE finished_at >= to_timestamp(%(since)s) AND status = 'completed'
  AND (%(client)s::text IS NULL OR client_id = %(client)s::text)
GROUP BY minute ORDER BY minute

-- token_insert --
-- A token of the HTTP API, by its hash.
INSERT INTO corral_token (id, client, hash, admin, worker, queues, created_at)
VALUES (%(id)s, %(client)s, %(hash)s, %(admin)s, %(worker)s, %(queues)s::jsonb,
        to_timestamp(%(created_at)s))

-- token_by_hash --
-- The token whose hash this is, unless revoked.
SELECT id, client, admin, worker, queues, date_part('epoch', created_at),
       date_part('epoch', revoked_at)
FROM corral_token WHERE hash = %(hash)s AND revoked_at IS NULL

-- token_list --
-- Every token, oldest first.
SELECT id, client, admin, worker, queues, date_part('epoch', created_at),
       date_part('epoch', revoked_at)
FROM corral_token ORDER BY created_at, id

-- token_revoke --
-- Revoke a token that is not revoked yet.
UPDATE corral_token SET revoked_at = to_timestamp(%(now)s)
WHERE id = %(id)s AND revoked_at IS NULL RETURNING id

-- worker_claim_get --
-- The answer a claim with this id gave this client, if it is kept.
SELECT answer FROM corral_worker_claim WHERE client = %(client)s AND claim_id = %(claim_id)s

-- worker_claim_put --
-- Keep a claim's answer, unless one of that id is kept already (a concurrent replay).
INSERT INTO corral_worker_claim (client, claim_id, answer, created_at)
VALUES (%(client)s, %(claim_id)s, %(answer)s, to_timestamp(%(now)s))
ON CONFLICT (client, claim_id) DO NOTHING

-- worker_claim_prune --
-- Forget the answers of claims older than the cutoff.
DELETE FROM corral_worker_claim WHERE created_at < to_timestamp(%(before)s)
