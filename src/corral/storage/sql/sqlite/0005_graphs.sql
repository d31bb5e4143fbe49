-- Version 5: task graphs. A process's failure policy towards its dependencies, the root
-- cause a cascade of cancels carries, whether any process depends on it (so that a commit
-- that ends a process without dependents looks for none), and the batch it was submitted
-- in (docs/graphs.md). `pending_dependencies` and corral_dependency date from version 1.

ALTER TABLE corral_process ADD COLUMN on_dependency_failure TEXT NOT NULL DEFAULT 'cancel';
ALTER TABLE corral_process ADD COLUMN root_cause TEXT;
ALTER TABLE corral_process ADD COLUMN has_dependents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE corral_process ADD COLUMN batch_id TEXT;

-- A graph's counts by status read the batch's rows only.
CREATE INDEX corral_process_batch
    ON corral_process (batch_id, status) WHERE batch_id IS NOT NULL;

-- What a failure canceled down the graph (`retry --with-dependents` resumes it).
CREATE INDEX corral_process_root_cause
    ON corral_process (root_cause) WHERE root_cause IS NOT NULL;

-- One row per batch (`app.batch()`): a batch submitted again with its custom id is the
-- same batch.
CREATE TABLE corral_batch (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL DEFAULT '',
    custom_id TEXT,
    created_at REAL NOT NULL,
    size INTEGER NOT NULL
);

CREATE UNIQUE INDEX corral_batch_custom_id
    ON corral_batch (client_id, custom_id) WHERE custom_id IS NOT NULL;
