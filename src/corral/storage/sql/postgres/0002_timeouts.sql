-- Version 2: the timeouts of docs/timeouts.md and the leader row of the recovery sweep.

ALTER TABLE corral_process
    ADD COLUMN deadline_at double precision,
    ADD COLUMN schedule_to_close double precision,
    ADD COLUMN start_to_close double precision,
    ADD COLUMN heartbeat_timeout double precision,
    ADD COLUMN iteration_since double precision NOT NULL DEFAULT 0,
    ADD COLUMN claimed_at double precision,
    ADD COLUMN heartbeat_at double precision;

-- Only unfinished processes have a schedule_to_close clock: finished rows are not rewritten.
UPDATE corral_process SET iteration_since = run_at WHERE finished_at IS NULL;

-- The sweep finds expired deadlines and schedule_to_close windows by these, whatever the
-- number of finished processes. (start_to_close and heartbeats: the few leased rows.)
CREATE INDEX corral_process_deadline
    ON corral_process (deadline_at) WHERE deadline_at IS NOT NULL AND finished_at IS NULL;

CREATE INDEX corral_process_schedule_to_close
    ON corral_process ((iteration_since + schedule_to_close))
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL;

-- One row per leadership (the recovery sweep): who holds it, until when.
CREATE TABLE corral_leader (
    name text PRIMARY KEY,
    owner text NOT NULL,
    expires_at double precision NOT NULL
);
