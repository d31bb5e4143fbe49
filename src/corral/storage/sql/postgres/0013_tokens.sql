-- Version 13: the tokens of `corral serve`'s HTTP API (docs/http-api.md). Only a token's
-- SHA-256 is kept: the token itself is shown once, when it is made. A token acts for its
-- client (`client`, the client id of the processes it submits); `admin` sees every
-- client's processes; `worker` may use the worker protocol, from `queues` (a JSON array;
-- NULL: every queue). A revoked token keeps its row (`revoked_at`) so that `corral token
-- list` still shows what it was.
CREATE TABLE corral_token (
    id text COLLATE "C" PRIMARY KEY,
    client text NOT NULL,
    hash text NOT NULL UNIQUE,
    admin boolean NOT NULL DEFAULT false,
    worker boolean NOT NULL DEFAULT false,
    queues jsonb,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
