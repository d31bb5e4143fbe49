-- Version 7: concurrency keys (docs/flow-control.md). A process of a job declared with
-- `concurrency=N` carries its key and N, computed at submit; a claim takes it only while
-- fewer than N live leases hold processes of the same key. NULL for every other process.

ALTER TABLE corral_process ADD COLUMN concurrency_key TEXT;

ALTER TABLE corral_process ADD COLUMN concurrency_limit INTEGER;

-- Leased processes that have a key, by key: a claim counts a key's live leases here (a
-- few rows per key, whatever the size of the queue).
CREATE INDEX corral_process_concurrency
    ON corral_process (concurrency_key, lease_expires_at)
    WHERE concurrency_key IS NOT NULL AND lease_expires_at IS NOT NULL;
