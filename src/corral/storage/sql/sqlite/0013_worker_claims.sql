-- Version 13: the answers to the worker protocol's claims, by the claim id the worker chose
-- (docs/http-api.md, "Worker protocol"): a claim sent again with the same id gets the same
-- leases, so that a lost answer costs nothing. `answer` is the JSON the claim answered.
-- Kept an hour (pruned as new ones are written): a worker retries a lost answer in seconds.
CREATE TABLE corral_worker_claim (
    client TEXT NOT NULL,
    claim_id TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (client, claim_id)
);
CREATE INDEX corral_worker_claim_created ON corral_worker_claim (created_at);
