-- Version 11: tags through an index (docs/storage-postgres.md, "Tags"). `corral list --tag
-- k=v` filters with `tags @> '{"k": "v"}'`, which this index serves. Partial: a process
-- without tags has no entry, so that it costs nothing to insert, claim or commit (an
-- update of a process writes a new entry into each index whose WHERE it meets). IF NOT
-- EXISTS: on a large table, build it beforehand with CREATE INDEX CONCURRENTLY under this
-- name and the upgrade keeps it (docs/storage-postgres.md).
CREATE INDEX IF NOT EXISTS corral_process_tags
    ON corral_process USING gin (tags jsonb_path_ops) WITH (fastupdate = off)
    WHERE tags <> '{}';
