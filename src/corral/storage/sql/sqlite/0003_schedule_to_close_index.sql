-- Version 3: the sweep's schedule_to_close branch searches by the expiry itself, as on
-- PostgreSQL: an index on iteration_since alone made it walk every such process.

DROP INDEX corral_process_schedule_to_close;

CREATE INDEX corral_process_schedule_to_close
    ON corral_process (iteration_since + schedule_to_close)
    WHERE schedule_to_close IS NOT NULL AND finished_at IS NULL;
