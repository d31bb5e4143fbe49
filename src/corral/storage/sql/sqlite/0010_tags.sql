-- Version 10: tags through an index (docs/storage-sqlite.md, "Tags"). Each tag of a process
-- is a row here, written in the transaction that inserts the process and deleted with it
-- when it is pruned; `corral list --tag k=v` joins this table by its (key, value) index
-- instead of reading the JSON of every process. The `tags` column stays what a process
-- reads back. Keyed by (process, key): a process holds one value per key, and pruning
-- finds a process's rows by its id.
CREATE TABLE corral_tag (
    process_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (process_id, key)
) WITHOUT ROWID;

CREATE INDEX corral_tag_key_value ON corral_tag (key, value, process_id);

-- The tags of the processes inserted before this version (tags hold strings only).
INSERT INTO corral_tag (process_id, key, value)
SELECT p.id, t.key, t.value FROM corral_process p, json_each(p.tags) t
WHERE p.tags <> '{}' AND t.type = 'text';
