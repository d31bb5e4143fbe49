-- Version 4: times become timestamptz and JSON documents jsonb, so that corral's tables can
-- be read and filtered with SQL as they are (see docs/storage-postgres.md). Existing rows
-- are converted in place: epoch seconds with to_timestamp (to the microsecond, timestamptz's
-- precision), canonical JSON text with ::jsonb. Corral still hands Python seconds since the
-- epoch: queries.sql converts at the boundary.

-- The timeout indexes add seconds to a time, which must be an IMMUTABLE expression: they
-- take the seconds since the epoch of the time's UTC timestamp (date_part of a timestamptz
-- is only STABLE, as some fields depend on the session's time zone). Rebuilt below.
DROP INDEX corral_process_schedule_to_close;
DROP INDEX corral_process_start_to_close;
DROP INDEX corral_process_heartbeat_timeout;

-- A text or number default cannot be cast to the new types: dropped, then set again.
ALTER TABLE corral_process
    ALTER COLUMN store DROP DEFAULT, ALTER COLUMN iteration_since DROP DEFAULT;
ALTER TABLE corral_history ALTER COLUMN detail DROP DEFAULT;
ALTER TABLE corral_schema_version ALTER COLUMN applied_at DROP DEFAULT;

-- One statement per table: one rewrite each.
ALTER TABLE corral_process
    ALTER COLUMN params TYPE jsonb USING params::jsonb,
    ALTER COLUMN store TYPE jsonb USING store::jsonb,
    ALTER COLUMN result TYPE jsonb USING result::jsonb,
    ALTER COLUMN error TYPE jsonb USING error::jsonb,
    ALTER COLUMN run_at TYPE timestamptz USING to_timestamp(run_at),
    ALTER COLUMN lease_expires_at TYPE timestamptz USING to_timestamp(lease_expires_at),
    ALTER COLUMN created_at TYPE timestamptz USING to_timestamp(created_at),
    ALTER COLUMN updated_at TYPE timestamptz USING to_timestamp(updated_at),
    ALTER COLUMN finished_at TYPE timestamptz USING to_timestamp(finished_at),
    ALTER COLUMN deadline_at TYPE timestamptz USING to_timestamp(deadline_at),
    ALTER COLUMN iteration_since TYPE timestamptz USING to_timestamp(iteration_since),
    ALTER COLUMN claimed_at TYPE timestamptz USING to_timestamp(claimed_at),
    ALTER COLUMN heartbeat_at TYPE timestamptz USING to_timestamp(heartbeat_at);

ALTER TABLE corral_history
    ALTER COLUMN at TYPE timestamptz USING to_timestamp(at),
    ALTER COLUMN detail TYPE jsonb USING detail::jsonb;

ALTER TABLE corral_leader
    ALTER COLUMN expires_at TYPE timestamptz USING to_timestamp(expires_at);

ALTER TABLE corral_schema_version
    ALTER COLUMN applied_at TYPE timestamptz USING to_timestamp(applied_at);

ALTER TABLE corral_process
    ALTER COLUMN store SET DEFAULT '{}', ALTER COLUMN iteration_since SET DEFAULT 'epoch';
ALTER TABLE corral_history ALTER COLUMN detail SET DEFAULT '{}';
ALTER TABLE corral_schema_version ALTER COLUMN applied_at SET DEFAULT now();

CREATE INDEX corral_process_schedule_to_close
    ON corral_process ((date_part('epoch', iteration_since AT TIME ZONE 'UTC') + schedule_to_close))
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL;

CREATE INDEX corral_process_start_to_close
    ON corral_process ((date_part('epoch', claimed_at AT TIME ZONE 'UTC') + start_to_close))
    WHERE lease_expires_at IS NOT NULL AND start_to_close IS NOT NULL;

CREATE INDEX corral_process_heartbeat_timeout
    ON corral_process ((date_part('epoch', heartbeat_at AT TIME ZONE 'UTC') + heartbeat_timeout))
    WHERE lease_expires_at IS NOT NULL AND heartbeat_timeout IS NOT NULL;
