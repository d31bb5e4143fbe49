-- Version 6: cron schedules (docs/graphs.md, "Schedules"). One row per schedule, written by
-- the recovery sweep in the transaction that submits the schedule's occurrences: the
-- latest occurrence handled (fired or dropped), the last one fired and its process, and a
-- version that fences two sweepers (the second's write finds it moved and writes nothing).

CREATE TABLE corral_schedule (
    name TEXT PRIMARY KEY,           -- the schedule's name: its job's
    handled_until REAL NOT NULL,     -- the latest occurrence handled, or when first seen
    last_occurrence REAL,            -- the latest occurrence fired
    last_process_id TEXT,            -- the process it fired (it may have been pruned since)
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
