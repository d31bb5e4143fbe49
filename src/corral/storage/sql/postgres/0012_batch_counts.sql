-- Version 12: a graph's counts by status in counter rows (docs/graphs.md, "Graph
-- counters"). Triggers record every move, so that each path that inserts, changes the
-- status of or deletes a process of a batch (a submit, a claim, a commit, corral_settle,
-- a cancel, the sweep's timeouts, prune and retention) keeps them true in its own
-- transaction; `app.graph()` then reads a few rows instead of the batch's processes. A
-- process outside any batch does not fire them: their WHEN is checked before any call.
--
-- A trigger does not update a counter row: that row would be hot (every worker committing
-- a process of the graph would queue on it, two commits moving two statuses in opposite
-- orders would deadlock), and a transaction moving many processes of one batch (a cascade
-- of cancels, a large submit) would stack a new version of the same row per process, each
-- update walking the versions before it. A trigger appends a row per move instead (the
-- batch, the status left, the status taken: never contended, constant cost), and the
-- recovery sweep folds committed moves into one row per (batch, status) (the query
-- batch_counts_fold), ten thousand at a time. A reader sums the batch's counter rows and
-- the moves not folded yet.
CREATE TABLE corral_batch_count (
    batch_id text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (batch_id, status)
);

-- A queue of moves, emptied by every sweep: vacuumed after a thousand dead rows rather
-- than a fraction of its (always small) size, so that a reader's index scan does not
-- walk the moves folded since the last vacuum for long.
CREATE TABLE corral_batch_delta (
    batch_id text COLLATE "C" NOT NULL,
    src text COLLATE "C",  -- the status it left (none: inserted)
    dst text COLLATE "C"  -- the status it took (none: deleted)
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);

CREATE INDEX corral_batch_delta_batch ON corral_batch_delta (batch_id);

INSERT INTO corral_batch_count (batch_id, status, n)
SELECT batch_id, status, count(*) FROM corral_process
WHERE batch_id IS NOT NULL GROUP BY batch_id, status;

CREATE FUNCTION corral_batch_count_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO corral_batch_delta (batch_id, dst) VALUES (NEW.batch_id, NEW.status);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO corral_batch_delta (batch_id, src) VALUES (OLD.batch_id, OLD.status);
    ELSE
        INSERT INTO corral_batch_delta (batch_id, src, dst)
        VALUES (NEW.batch_id, OLD.status, NEW.status);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER corral_batch_count_insert AFTER INSERT ON corral_process
FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL)
EXECUTE FUNCTION corral_batch_count_move();

CREATE TRIGGER corral_batch_count_update AFTER UPDATE OF status ON corral_process
FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status)
EXECUTE FUNCTION corral_batch_count_move();

CREATE TRIGGER corral_batch_count_delete AFTER DELETE ON corral_process
FOR EACH ROW WHEN (OLD.batch_id IS NOT NULL)
EXECUTE FUNCTION corral_batch_count_move();
