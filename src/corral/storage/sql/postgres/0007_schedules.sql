-- Version 7: cron schedules (docs/graphs.md, "Schedules"). One row per schedule, written by
-- the recovery sweep in the transaction that submits the schedule's occurrences: the
-- latest occurrence handled (fired or dropped), the last one fired and its process, and a
-- version that fences two sweepers (the second's write finds it moved and writes nothing).
CREATE TABLE corral_schedule (
    name text PRIMARY KEY,
    handled_until timestamptz NOT NULL,
    last_occurrence timestamptz,
    last_process_id text COLLATE "C",
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
