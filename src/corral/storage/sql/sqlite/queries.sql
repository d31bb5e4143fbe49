-- The named queries of corral.storage.sqlite. Each starts with `-- name --` and a one-line
-- comment. Filled in as they load (corral.storage.sqlite.sql): `/* process_columns */` is
-- the process row's columns (corral.storage.columns.SELECT_LIST), `/* history_columns */`
-- the history row's (codec.HISTORY_COLUMNS), `/* claimable */` the statuses a claim may
-- take ('failing', 'ending', 'running', 'starting': word for word the WHERE of the partial
-- index corral_process_runnable, or SQLite would not use it), `/* prunable */` the rows
-- that pruning may delete (corral.storage.sqlite.sql says which), `/* key_free */` how many
-- more processes of the row's concurrency key may be leased at `?1` (its limit minus the live
-- leases of the key, counted on the partial index corral_process_concurrency), `/* key_full */`
-- whether the row's key and limit are among those full now (the same count, made once per
-- statement: a cheap test for each row of a full key's backlog). Filled in per call: `/* ... */`
-- markers named in the query's comment. Parameters are positional (`?`) unless named.

-- schema_version_table --
-- The migrations applied so far (one row per version).
CREATE TABLE IF NOT EXISTS corral_schema_version (version INTEGER NOT NULL)

-- schema_version --
-- The newest migration applied; NULL on an empty database.
SELECT max(version) FROM corral_schema_version

-- schema_version_insert --
-- Record one applied migration.
INSERT INTO corral_schema_version VALUES (?)

-- process_insert --
-- One new process, every column (in the order of /* process_columns */, then its
-- concurrency key and limit) bound or fixed: a batch repeats the last `(...)` group per
-- row (inserts._multi_row).
INSERT INTO corral_process (/* process_columns */, concurrency_key, concurrency_limit) VALUES
(?, ?, ?, ?, '{}', NULL, NULL, NULL, NULL, ?, ?, ?, 0, NULL, 0, NULL, 0,
 NULL, ?, ?, ?, ?, ?, NULL, 0, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)

-- process_insert_shared --
-- Processes of one submit call: the values they share bound once (?1 to ?10: job, status,
-- queue, client_id, tags, created_at, deadline_at and the three timeouts), then four per
-- process (id, params, run_at, priority); a batch repeats the last `(...)` group per row.
INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, custom_id,
    client_id, tags, created_at, updated_at, deadline_at, schedule_to_close, start_to_close,
    heartbeat_timeout, iteration_since, store, attempt, lease_token, cancel_requested,
    version)
SELECT column1, ?1, column2, ?2, column4, ?3, column3, NULL, ?4, ?5, ?6, ?6, ?7,
    ?8, ?9, ?10, column3, '{}', 0, 0, 0, 0
FROM (VALUES (?, ?, ?, ?))

-- history_insert --
-- One history event; a batch repeats the last `(...)` group per row.
INSERT INTO corral_history (/* history_columns */) VALUES (?, ?, ?, ?, ?, ?, ?)

-- history_insert_submitted --
-- The submitted events of the processes just inserted (rowids above the largest before,
-- the second parameter), in their order, all with the same detail (the first).
INSERT INTO corral_history (/* history_columns */)
SELECT id, created_at, 'submitted', NULL, status, 0, ? FROM corral_process
WHERE rowid > ? ORDER BY rowid

-- process_max_rowid --
-- The largest rowid before a batch: the batch's rows get larger ones (below 2**62).
SELECT max(rowid) FROM corral_process

-- dependency_insert --
-- One edge of a task graph.
INSERT INTO corral_dependency (process_id, depends_on) VALUES (?, ?)

-- tag_insert --
-- One tag of a new process: process id, key, value; a batch repeats the last `(...)` group
-- per row.
INSERT INTO corral_tag (process_id, key, value) VALUES (?, ?, ?)

-- process_get --
-- One process by id.
SELECT /* process_columns */ FROM corral_process WHERE id = ?

-- process_get_by_custom_id --
-- The process holding a (client, custom id), if any.
SELECT /* process_columns */ FROM corral_process WHERE client_id = ? AND custom_id = ?

-- process_list --
-- Processes, filtered by `/* tags */` and `/* where */` (built per call, with their
-- parameters: reads.py), oldest or newest first by `/* order */` (ASC or DESC), at most
-- `?` of them. `/* tags */` is empty or the corral_tag rows that lead to the processes.
SELECT /* process_columns */ FROM /* tags */ corral_process /* where */
ORDER BY created_at /* order */, id /* order */ LIMIT ?

-- paused_queues --
-- The paused queues ('*': all of them).
SELECT queue FROM corral_paused_queue ORDER BY 1

-- select_expired --
-- Claim order, class 1: processes whose lease expired (a worker died mid-iteration), with
-- the owner of that lease; found by the lease index, few rows. `/* indexed_by */` names
-- corral_process_leased when the claim walks the queue (SQLite's planner otherwise prefers
-- corral_process_status and walks every runnable row: milliseconds per claim with 20,000
-- queued); `/* filters */` are the claim's AND clauses (ids, queues, jobs, paused queues).
-- `?1` is now. A process with a concurrency key comes only while its key has a free slot,
-- with how many (`/* key_free */`: see claims.py, which keeps no more of a key than that).
SELECT id, lease_owner, concurrency_key,
       CASE WHEN concurrency_key IS NOT NULL THEN /* key_free */ END
FROM corral_process /* indexed_by */
WHERE lease_expires_at IS NOT NULL AND lease_expires_at < ?1
  AND status IN (/* claimable */) /* filters */
  AND (concurrency_key IS NULL OR (NOT /* key_full */ AND /* key_free */ > 0))
ORDER BY priority DESC, run_at LIMIT ?

-- select_runnable --
-- Claim order, classes 2 to 6: unleased runnable processes by claim_rank, priority, run_at,
-- in one ordered walk of the partial index corral_process_runnable (`/* indexed_by */`
-- names it when the claim walks the queue); `/* filters */` and keys as in select_expired.
SELECT id, NULL, concurrency_key,
       CASE WHEN concurrency_key IS NOT NULL THEN /* key_free */ END
FROM corral_process /* indexed_by */
WHERE status IN (/* claimable */) AND lease_expires_at IS NULL
  AND run_at <= ?1 /* filters */
  AND (concurrency_key IS NULL OR (NOT /* key_full */ AND /* key_free */ > 0))
ORDER BY claim_rank, priority DESC, run_at LIMIT ?

-- runnable_backlog --
-- What a claim could take now (`?1`), counted (`/* cap */` rows at most of each class, so
-- the work is bounded whatever the queue's size) with the oldest time since which one could
-- be: expired leases (since the lease expired) on corral_process_leased, then unleased
-- runnable rows (since run_at) on corral_process_runnable, with select_runnable's WHERE;
-- `/* filters */` (jobs, queues, paused queues) appear once per class, their parameters
-- bound twice (numbered after ?1: hence the cap as a literal). A full concurrency key's
-- rows are not counted: no claim takes them now.
SELECT count(*), min(since) FROM (
    SELECT * FROM (
        SELECT lease_expires_at AS since FROM corral_process INDEXED BY corral_process_leased
        WHERE lease_expires_at IS NOT NULL AND lease_expires_at < ?1
          AND status IN (/* claimable */) /* filters */
          AND (concurrency_key IS NULL OR NOT /* key_full */)
        LIMIT /* cap */)
    UNION ALL
    SELECT * FROM (
        SELECT run_at FROM corral_process INDEXED BY corral_process_runnable
        WHERE status IN (/* claimable */) AND lease_expires_at IS NULL
          AND run_at <= ?1 /* filters */
          AND (concurrency_key IS NULL OR NOT /* key_full */)
        LIMIT /* cap */))

-- process_lease --
-- Lease the processes chosen (`/* ids */`: one `?` per process): a new token, an attempt.
UPDATE corral_process SET lease_owner = ?, lease_token = lease_token + 1,
    lease_expires_at = ?, attempt = attempt + 1, updated_at = ?, claimed_at = ?,
    heartbeat_at = ?, version = version + 1
WHERE id IN (/* ids */)
RETURNING /* process_columns */

-- process_commit --
-- A worker's commit of one iteration: fenced by the lease token, and it gives the lease
-- back. The change's columns (columns.CHANGE), updated_at, then id and token.
UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?,
    progress_done = ?, progress_total = ?, run_at = ?, attempt = ?,
    stopped_status = ?, finished_at = ?, iteration_since = ?,
    lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL,
    heartbeat_at = NULL, updated_at = ?, version = version + 1
WHERE id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL

-- process_commit_ending --
-- process_commit of an iteration that ends its process: whether any process depends on
-- it (its dependents are then settled in the same transaction).
UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?,
    progress_done = ?, progress_total = ?, run_at = ?, attempt = ?,
    stopped_status = ?, finished_at = ?, iteration_since = ?,
    lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL,
    heartbeat_at = NULL, updated_at = ?, version = version + 1
WHERE id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL
RETURNING has_dependents

-- process_update --
-- An admin change (cancel, retry, a timeout) fenced by the row's version: the change's
-- columns, cancel_requested, updated_at, then id and expected version. Returns whether any
-- process depends on it.
UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?,
    progress_done = ?, progress_total = ?, run_at = ?, attempt = ?,
    stopped_status = ?, finished_at = ?, iteration_since = ?,
    cancel_requested = ?, updated_at = ?, version = version + 1
WHERE id = ? AND version = ?
RETURNING has_dependents

-- process_update_revoking --
-- process_update that also revokes the lease: a new token fences out its holder.
UPDATE corral_process SET status = ?, store = ?, result = ?, error = ?,
    progress_done = ?, progress_total = ?, run_at = ?, attempt = ?,
    stopped_status = ?, finished_at = ?, iteration_since = ?,
    cancel_requested = ?, updated_at = ?, version = version + 1,
    lease_owner = NULL, lease_expires_at = NULL, claimed_at = NULL,
    heartbeat_at = NULL, lease_token = lease_token + 1
WHERE id = ? AND version = ?
RETURNING has_dependents

-- prune_history --
-- The history of the processes finished before `?` (`/* prunable */`: those of them on
-- which no unfinished process depends).
DELETE FROM corral_history WHERE process_id IN (
    SELECT id FROM corral_process WHERE /* prunable */)

-- prune_dependencies --
-- The edges of the processes finished before `?`.
DELETE FROM corral_dependency WHERE process_id IN (
    SELECT id FROM corral_process WHERE /* prunable */)

-- prune_tags --
-- The tags' rows of the processes finished before `?`.
DELETE FROM corral_tag WHERE process_id IN (
    SELECT id FROM corral_process WHERE /* prunable */)

-- prune_processes --
-- The processes finished before `?`.
DELETE FROM corral_process WHERE /* prunable */

-- prunable --
-- What prune_processes would delete, by job (a dry run).
SELECT job, count(*) FROM corral_process WHERE /* prunable */
GROUP BY job ORDER BY job

-- expired --
-- Retention (docs/timeouts.md): the completed processes of job `?` finished before `?`,
-- oldest first, at most `?`, but none on which an unfinished process depends
-- (`/* prunable */`), by the index of completed processes by job.
SELECT id, finished_at FROM corral_process INDEXED BY corral_process_completed
WHERE job = ? AND status = 'completed' AND /* prunable */
ORDER BY finished_at LIMIT ?

-- prune_ids_history --
-- The history of the processes named in the JSON array `?`.
DELETE FROM corral_history WHERE process_id IN (SELECT value FROM json_each(?))

-- prune_ids_dependencies --
-- The edges of the processes named in the JSON array `?`.
DELETE FROM corral_dependency WHERE process_id IN (SELECT value FROM json_each(?))

-- prune_ids_tags --
-- The tags' rows of the processes named in the JSON array `?`.
DELETE FROM corral_tag WHERE process_id IN (SELECT value FROM json_each(?))

-- prune_ids_processes --
-- The processes named in the JSON array `?`.
DELETE FROM corral_process WHERE id IN (SELECT value FROM json_each(?))

-- select_timed_out --
-- Each timeout of docs/timeouts.md by the index that finds it; the recovery sweep runs this
-- now and then. schedule_to_close names its index: the planner preferred
-- corral_process_status, i.e. a walk of every queued process on each sweep.
SELECT * FROM (
  SELECT /* process_columns */, 'process_timeout' FROM corral_process
  WHERE deadline_at IS NOT NULL AND finished_at IS NULL AND deadline_at < :now
    AND status NOT IN ('failing', 'completed', 'failed', 'canceled')
  UNION ALL
  SELECT /* process_columns */, 'schedule_to_close' FROM corral_process
  INDEXED BY corral_process_schedule_to_close
  WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL
    AND status IN (/* claimable */) AND iteration_since + schedule_to_close < :now
  UNION ALL
  SELECT /* process_columns */, 'start_to_close' FROM corral_process
  WHERE lease_expires_at IS NOT NULL AND start_to_close IS NOT NULL
    AND claimed_at + start_to_close < :now
  UNION ALL
  SELECT /* process_columns */, 'heartbeat_timeout' FROM corral_process
  WHERE lease_expires_at IS NOT NULL AND heartbeat_timeout IS NOT NULL
    AND heartbeat_at + heartbeat_timeout < :now
) LIMIT :limit

-- lease_renew --
-- Extend one lease its owner still holds (and note the handler's last heartbeat and the
-- progress it reported, if given); whether a cancel was requested. The lease of a process
-- with a concurrency key must not have expired (before the last `?`, now): its slot was
-- free from then on, and another process of the key may hold it now.
UPDATE corral_process SET lease_expires_at = ?, heartbeat_at = coalesce(?, heartbeat_at),
    progress_done = coalesce(?, progress_done), progress_total = coalesce(?, progress_total)
WHERE id = ? AND lease_token = ? AND lease_owner = ? AND lease_expires_at IS NOT NULL
  AND (concurrency_key IS NULL OR lease_expires_at >= ?)
RETURNING cancel_requested

-- lease_release --
-- Give one lease back unused (a worker stopping): the claim's attempt is taken back.
UPDATE corral_process SET lease_owner = NULL, lease_expires_at = NULL,
    attempt = max(attempt - 1, 0), updated_at = ?, version = version + 1
WHERE id = ? AND lease_token = ? AND lease_expires_at IS NOT NULL
RETURNING status, attempt

-- leader_acquire --
-- Take the named leadership if it is free or expired, or keep it: whether `owner` holds it.
INSERT INTO corral_leader (name, owner, expires_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE corral_leader.owner = excluded.owner OR corral_leader.expires_at < ?
RETURNING owner

-- process_concurrency --
-- A process's concurrency key and limit (none: NULL), for `corral why`.
SELECT concurrency_key, concurrency_limit FROM corral_process WHERE id = ?

-- key_holders --
-- The live leases (expiring at or after `?2`) of the processes of a key (`?1`): what a
-- claim counts, on the same index.
SELECT id, lease_owner, lease_expires_at FROM corral_process
INDEXED BY corral_process_concurrency
WHERE concurrency_key = ?1 AND lease_expires_at >= ?2
ORDER BY lease_expires_at, id

-- history_list --
-- A process's history, oldest first; a page of it (LIMIT -1: all of it).
SELECT /* history_columns */ FROM corral_history WHERE process_id = ? ORDER BY id
LIMIT ? OFFSET ?

-- queue_pause --
-- Pause one queue ('*': all).
INSERT OR IGNORE INTO corral_paused_queue VALUES (?)

-- queue_resume --
-- Resume one queue.
DELETE FROM corral_paused_queue WHERE queue = ?

-- queue_resume_all --
-- Resume every queue.
DELETE FROM corral_paused_queue

-- tag_rows_up_to --
-- How many processes hold the tag (key, value), counted up to `?`: the rarest of the tags
-- a list asks for leads its join (reads.py).
SELECT count(*) FROM (SELECT 1 FROM corral_tag WHERE key = ? AND value = ? LIMIT ?)

-- process_count --
-- How many processes `/* tags */` and `/* where */` (as in process_list) match.
SELECT count(*) FROM /* tags */ corral_process /* where */

-- process_id_before --
-- The stored id just before `?` in id order (byte order: the primary key's BINARY
-- collation), or NULL; one step of the primary key index.
SELECT max(id) FROM corral_process WHERE id < ?

-- process_id_after --
-- The stored id just after `?` in id order, or NULL.
SELECT min(id) FROM corral_process WHERE id > ?

-- queue_counts --
-- Processes by queue and status.
SELECT queue, status, count(*) FROM corral_process GROUP BY queue, status

-- worker_register --
-- Add a worker's row, or replace the row of the same owner.
INSERT OR REPLACE INTO corral_worker (owner, host, pid, app, jobs, queues, concurrency,
    started_at, last_seen_at, running)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- worker_seen --
-- Refresh a worker's last_seen_at and running (no row: it was removed as dead).
UPDATE corral_worker SET last_seen_at = ?, running = ? WHERE owner = ?

-- worker_remove --
-- Delete a worker's row.
DELETE FROM corral_worker WHERE owner = ?

-- worker_list --
-- Every registered worker, oldest first.
SELECT owner, host, pid, app, jobs, queues, concurrency, started_at, last_seen_at, running
FROM corral_worker ORDER BY started_at, owner

-- worker_prune --
-- Delete the rows of workers not seen since `?`.
DELETE FROM corral_worker WHERE last_seen_at < ?

-- process_insert_graph --
-- One process of a graph (it has dependencies, or is part of a batch), with its initial
-- status and pending count; a batch repeats the last `(...)` group per row.
INSERT INTO corral_process (id, job, params, status, priority, queue, run_at, custom_id,
    client_id, tags, created_at, updated_at, deadline_at, schedule_to_close, start_to_close,
    heartbeat_timeout, iteration_since, pending_dependencies, on_dependency_failure, batch_id,
    concurrency_key, concurrency_limit)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- graph_existing --
-- The processes a graph's new nodes depend on that exist already (`/* ids */`): their status
-- and the root cause they carry.
SELECT id, status, root_cause FROM corral_process WHERE id IN (/* ids */)

-- graph_mark_dependents --
-- Processes that now have dependents (`/* ids */`): the commit that ends them settles them.
UPDATE corral_process SET has_dependents = 1 WHERE id IN (/* ids */) AND has_dependents = 0

-- dependents_waiting --
-- The waiting dependents of the processes that just ended (`/* ids */`), one row per edge:
-- dependent, dependency, status, policy, pending count, run_at, root cause.
-- The edges first, by their index, then each dependent by its key (CROSS JOIN fixes that
-- order in SQLite): the planner would otherwise walk every waiting process.
SELECT p.id, e.depends_on, p.status, p.on_dependency_failure, p.pending_dependencies,
    p.run_at, p.root_cause, p.stopped_status
FROM corral_dependency e INDEXED BY corral_dependency_depends_on
CROSS JOIN corral_process p ON p.id = e.process_id
WHERE e.depends_on IN (/* ids */) AND p.status = 'waiting'

-- dependent_settle --
-- A waiting dependent after some of its dependencies ended (corral.graph decided): status,
-- pending count, run_at, iteration_since (NULL: as it is), finished_at, root cause,
-- updated_at, then its id. A parent that resumes forgets where it was to resume (its
-- stopped_status); a canceled one keeps it, for a retry.
UPDATE corral_process SET status = ?1, pending_dependencies = ?2, run_at = ?3,
    iteration_since = coalesce(?4, iteration_since), finished_at = ?5, root_cause = ?6,
    stopped_status = CASE WHEN ?1 IN ('waiting', 'canceled') THEN stopped_status END,
    updated_at = ?7, version = version + 1
WHERE id = ?8 AND status = 'waiting'

-- dependents_reopen --
-- A dependency is retried: its waiting dependents wait for it again (corral.graph.reopened).
UPDATE corral_process SET pending_dependencies = pending_dependencies + 1,
    updated_at = ?, version = version + 1
WHERE +status = 'waiting' AND id IN (SELECT process_id FROM corral_dependency WHERE depends_on = ?)

-- dependencies_of --
-- What the claimed processes (`/* ids */`) see of their dependencies: dependent, then the
-- dependency's id, status, result and error, in id order.
SELECT e.process_id, p.id, p.status, p.result, p.error
FROM corral_dependency e JOIN corral_process p ON p.id = e.depends_on
WHERE e.process_id IN (/* ids */) ORDER BY e.process_id, p.id

-- dependency_ids --
-- The ids a process depends on, in id order.
SELECT depends_on FROM corral_dependency WHERE process_id = ? ORDER BY depends_on

-- dependent_ids --
-- The ids of the processes that depend on one, in id order.
SELECT process_id FROM corral_dependency WHERE depends_on = ? ORDER BY process_id

-- batch_insert --
-- A batch of processes (app.batch()): id, client id, custom id, created_at, size.
INSERT INTO corral_batch (id, client_id, custom_id, created_at, size) VALUES (?, ?, ?, ?, ?)

-- batch_get --
-- A batch by id.
SELECT id, client_id, custom_id, created_at, size FROM corral_batch WHERE id = ?

-- batch_by_custom_id --
-- The batch holding a (client, custom id), if any.
SELECT id, client_id, custom_id, created_at, size FROM corral_batch
WHERE client_id = ? AND custom_id = ?

-- batch_processes --
-- The processes of a batch, in id order (submit order).
SELECT /* process_columns */ FROM corral_process WHERE batch_id = ? ORDER BY id

-- batch_counts --
-- A batch's processes by status: its counter rows (0011_batch_counts.sql), not its
-- processes.
SELECT status, n FROM corral_batch_count WHERE batch_id = ? AND n <> 0

-- batch_edges --
-- The edges inside a batch: (dependent, dependency).
SELECT e.process_id, e.depends_on FROM corral_dependency e
JOIN corral_process p ON p.id = e.process_id WHERE p.batch_id = ? ORDER BY e.process_id, e.depends_on

-- schedule_list --
-- Every schedule's row, with the status of its last process now (NULL: none, or pruned).
SELECT s.name, s.handled_until, s.version, s.last_occurrence, s.last_process_id, p.status
FROM corral_schedule s LEFT JOIN corral_process p ON p.id = s.last_process_id
ORDER BY s.name

-- schedule_create --
-- A schedule's first row (version 1), unless another sweeper wrote it first.
INSERT INTO corral_schedule (name, handled_until, version, updated_at) VALUES (?, ?, 1, ?)
ON CONFLICT (name) DO NOTHING

-- schedule_advance --
-- Move a schedule on, if its row is still at the version the sweeper read.
UPDATE corral_schedule SET handled_until = ?, version = version + 1, updated_at = ?
WHERE name = ? AND version = ?

-- schedule_fired --
-- The last occurrence fired and its process, once it is inserted.
UPDATE corral_schedule SET last_occurrence = ?, last_process_id = ? WHERE name = ?

-- canceled_by_root --
-- The processes a cascade from `?` canceled (their root cause).
SELECT id FROM corral_process WHERE root_cause = ? AND status = 'canceled' ORDER BY id

-- edges_of --
-- The edges of some processes (`/* ids */`): (dependent, dependency).
SELECT process_id, depends_on FROM corral_dependency WHERE process_id IN (/* ids */)

-- dependency_statuses --
-- The statuses of a process's dependencies.
SELECT p.status FROM corral_dependency e JOIN corral_process p ON p.id = e.depends_on
WHERE e.process_id = ?

-- dependent_resume --
-- A dependent that a cascade canceled, resumed with the process it depends on: status,
-- pending count, run_at and iteration_since, updated_at, then its id.
UPDATE corral_process SET status = ?, pending_dependencies = ?, run_at = ?,
    iteration_since = ?, finished_at = NULL, root_cause = NULL, cancel_requested = 0,
    attempt = 0, error = NULL, stopped_status = NULL, updated_at = ?, version = version + 1
WHERE id = ? AND status = 'canceled'

-- spawn_parent --
-- A parent that spawned children waits for the `?` of them not ended; it runs its next
-- handler whatever their outcome (it reads them in ctx.dependencies), so its policy is `run`.
UPDATE corral_process SET pending_dependencies = ?, on_dependency_failure = 'run'
WHERE id = ?

-- spawn_resume --
-- A parent whose children all ended already (custom ids of processes that existed): it
-- resumes at once where its spawning iteration left it.
UPDATE corral_process SET status = stopped_status, stopped_status = NULL, run_at = ?,
    iteration_since = ?, updated_at = ?, version = version + 1
WHERE id = ? AND status = 'waiting' AND stopped_status IS NOT NULL
RETURNING status

-- rate_bucket_new --
-- A bucket met for the first time: full.
INSERT INTO corral_rate (bucket, tokens, updated_at) VALUES (?, ?, ?)
ON CONFLICT (bucket) DO NOTHING

-- rate_bucket --
-- A bucket's level of tokens, and when it was written.
SELECT tokens, updated_at FROM corral_rate WHERE bucket = ?

-- rate_bucket_set --
-- A bucket's new level (corral.rates.take decided it): tokens, updated_at, bucket.
UPDATE corral_rate SET tokens = ?, updated_at = ? WHERE bucket = ?

-- process_stats_counts --
-- Processes by queue, job and status; only client `?1`'s unless it is NULL.
SELECT queue, job, status, count(*) FROM corral_process
WHERE ?1 IS NULL OR client_id = ?1 GROUP BY queue, job, status

-- process_stats_completions --
-- Completions by minute (its start, epoch seconds) since `?2`; only client `?1`'s unless
-- it is NULL. Served by the index of finished processes.
SELECT CAST(finished_at / 60 AS INTEGER) * 60 AS minute, count(*) FROM corral_process
WHERE finished_at >= ?2 AND status = 'completed' AND (?1 IS NULL OR client_id = ?1)
GROUP BY minute ORDER BY minute

-- token_insert --
-- A token of the HTTP API, by its hash: id, client, hash, admin, worker, queues, created_at.
INSERT INTO corral_token (id, client, hash, admin, worker, queues, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- token_by_hash --
-- The token whose hash is `?`, unless revoked.
SELECT id, client, admin, worker, queues, created_at, revoked_at FROM corral_token
WHERE hash = ? AND revoked_at IS NULL

-- token_list --
-- Every token, oldest first.
SELECT id, client, admin, worker, queues, created_at, revoked_at FROM corral_token
ORDER BY created_at, id

-- token_revoke --
-- Revoke a token (revoked_at, id) that is not revoked yet.
UPDATE corral_token SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL

-- worker_claim_get --
-- The answer a claim with this id gave this client (client, claim_id), if it is kept.
SELECT answer FROM corral_worker_claim WHERE client = ? AND claim_id = ?

-- worker_claim_put --
-- Keep a claim's answer (client, claim_id, answer, created_at), unless one of that id is.
INSERT INTO corral_worker_claim (client, claim_id, answer, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (client, claim_id) DO NOTHING

-- worker_claim_prune --
-- Forget the answers of claims older than the cutoff.
DELETE FROM corral_worker_claim WHERE created_at < ?
