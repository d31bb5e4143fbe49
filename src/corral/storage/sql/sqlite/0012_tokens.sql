-- Version 12: the tokens of `corral serve`'s HTTP API (docs/http-api.md). Only a token's
-- SHA-256 is kept: the token itself is shown once, when it is made. A token acts for its
-- client (`client`, the client id of the processes it submits); `admin` sees every
-- client's processes; `worker` may use the worker protocol, from `queues` (a JSON array;
-- NULL: every queue). A revoked token keeps its row (`revoked_at`) so that `corral token
-- list` still shows what it was.
CREATE TABLE corral_token (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    worker INTEGER NOT NULL DEFAULT 0,
    queues TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
);
