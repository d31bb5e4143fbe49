-- Version 6: task graphs. A process's failure policy towards its dependencies, the root
-- cause a cascade of cancels carries, whether any process depends on it (so that a commit
-- that ends a process without dependents looks for none), and the batch it was submitted
-- in (docs/graphs.md). `pending_dependencies` and corral_dependency date from version 1.

ALTER TABLE corral_process
    ADD COLUMN on_dependency_failure text NOT NULL DEFAULT 'cancel',
    ADD COLUMN root_cause text COLLATE "C",
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false,
    ADD COLUMN batch_id text COLLATE "C";

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
