-- Version 2: the timeouts of docs/timeouts.md and the leader row of the recovery sweep.

ALTER TABLE corral_process ADD COLUMN deadline_at REAL;
ALTER TABLE corral_process ADD COLUMN schedule_to_close REAL;
ALTER TABLE corral_process ADD COLUMN start_to_close REAL;
ALTER TABLE corral_process ADD COLUMN heartbeat_timeout REAL;
ALTER TABLE corral_process ADD COLUMN iteration_since REAL NOT NULL DEFAULT 0;
ALTER TABLE corral_process ADD COLUMN claimed_at REAL;
ALTER TABLE corral_process ADD COLUMN heartbeat_at REAL;

-- The processes already there became runnable at their run_at, as far as can be told.
UPDATE corral_process SET iteration_since = run_at;

CREATE INDEX corral_process_deadline
    ON corral_process (deadline_at) WHERE deadline_at IS NOT NULL AND finished_at IS NULL;

-- Replaced by version 3.
CREATE INDEX corral_process_schedule_to_close
    ON corral_process (iteration_since)
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL;

-- One row per leadership (the recovery sweep's): who holds it, until when.
CREATE TABLE corral_leader (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
