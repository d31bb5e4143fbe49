-- Version 9: retention (docs/timeouts.md, "Retention"). The recovery sweep deletes the
-- completed processes of a job with `keep_for` once they are that old: it finds them by
-- job, oldest first, from this index, whatever else the table holds (processes of jobs
-- kept until `corral prune`, failed and canceled ones).
CREATE INDEX corral_process_completed
    ON corral_process (job, finished_at) WHERE status = 'completed';
