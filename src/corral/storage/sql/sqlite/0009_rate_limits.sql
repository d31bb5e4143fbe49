-- Version 9: rate limits (docs/flow-control.md). One token bucket per (job, key): its
-- level of tokens at `updated_at`; a worker takes a token before it starts an iteration.

CREATE TABLE corral_rate (
    bucket TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    updated_at REAL NOT NULL
);
