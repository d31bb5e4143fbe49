-- Version 8: concurrency keys (docs/flow-control.md). A process of a job declared with
-- `concurrency=N` carries its key and N, computed at submit; a claim takes it only while
-- fewer than N live leases hold processes of the same key. NULL for every other process.

ALTER TABLE corral_process ADD COLUMN concurrency_key text, ADD COLUMN concurrency_limit integer;

-- Leased processes that have a key, by key: a claim counts a key's live leases here (a
-- few rows per key, whatever the size of the queue).
CREATE INDEX corral_process_concurrency
    ON corral_process (concurrency_key, lease_expires_at)
    WHERE concurrency_key IS NOT NULL AND lease_expires_at IS NOT NULL;

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
