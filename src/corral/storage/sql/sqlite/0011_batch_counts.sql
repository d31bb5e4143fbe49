-- Version 11: a graph's counts by status in counter rows (docs/graphs.md, "Graph
-- counters"). One row per (batch, status), moved by triggers, so that every path that
-- inserts, changes the status of or deletes a process of a batch (a commit, settling its
-- dependents, a claim, a cancel, the sweep's timeouts, prune and retention) keeps them
-- true in its own transaction: no writer can forget them, and `app.graph()` reads at most
-- one row per status instead of the batch's processes. A process outside any batch does
-- not fire them (their WHEN). SQLite has one writer at a time, so a row per (batch,
-- status) is never contended.
CREATE TABLE corral_batch_count (
    batch_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (batch_id, status)
) WITHOUT ROWID;

INSERT INTO corral_batch_count (batch_id, status, n)
SELECT batch_id, status, count(*) FROM corral_process
WHERE batch_id IS NOT NULL GROUP BY batch_id, status;

CREATE TRIGGER corral_batch_count_insert AFTER INSERT ON corral_process
WHEN NEW.batch_id IS NOT NULL
BEGIN
    INSERT INTO corral_batch_count (batch_id, status, n) VALUES (NEW.batch_id, NEW.status, 1)
    ON CONFLICT (batch_id, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER corral_batch_count_update AFTER UPDATE OF status ON corral_process
WHEN NEW.batch_id IS NOT NULL AND NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO corral_batch_count (batch_id, status, n)
    VALUES (OLD.batch_id, OLD.status, -1), (NEW.batch_id, NEW.status, 1)
    ON CONFLICT (batch_id, status) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER corral_batch_count_delete AFTER DELETE ON corral_process
WHEN OLD.batch_id IS NOT NULL
BEGIN
    UPDATE corral_batch_count SET n = n - 1
    WHERE batch_id = OLD.batch_id AND status = OLD.status;
END;
