-- Version 4: the worker registry. A worker adds its row when it starts, refreshes
-- last_seen_at and running with its lease renewals, and deletes the row when it stops; a
-- row no longer refreshed is a worker that died. Few rows: no index beyond the key.

CREATE TABLE corral_worker (
    owner TEXT PRIMARY KEY,          -- the worker's id: the name its leases carry
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    app TEXT NOT NULL,
    jobs TEXT NOT NULL,              -- JSON array of job names
    queues TEXT,                     -- JSON array of queue names; NULL: every queue
    concurrency INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    running TEXT NOT NULL DEFAULT '[]'  -- JSON array of the process ids it holds leases on
);
