-- Version 5: process ids compare in byte order ("C" collation), so that a short id typed by
-- a person is a range of the primary key (id_prefix) and an id's neighbours are the next
-- keys of that index, whatever the database's collation; and the worker registry.

-- The columns that hold a process's id too: a join of two collations could use no index.
ALTER TABLE corral_process ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE corral_history ALTER COLUMN process_id TYPE text COLLATE "C";
ALTER TABLE corral_dependency
    ALTER COLUMN process_id TYPE text COLLATE "C",
    ALTER COLUMN depends_on TYPE text COLLATE "C";

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
