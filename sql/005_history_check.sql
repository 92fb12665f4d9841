-- greedylr schema, version 5: the history's event check, written as comparisons.
--
-- SQLite evaluates a CHECK of the form `event IN (six values)` by building a temporary
-- index of the six values on every insert, a tenth of the cost of storing a report. The
-- same rule written with = and OR costs nearly nothing. A CHECK cannot be altered in
-- place: the table is rebuilt with the same columns and rows.
CREATE TABLE history_next (
    job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    rank    INTEGER NOT NULL,
    loss    REAL,
    metric  REAL,
    lr      REAL    NOT NULL,
    lrs     BLOB,
    event   TEXT    NOT NULL
        CHECK (event = 'hold' OR event = 'increase' OR event = 'decrease' OR event = 'reset'
               OR event = 'cooldown' OR event = 'warmup'),
    time_ms INTEGER NOT NULL,
    ranks   INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (job_seq, step, rank)
) WITHOUT ROWID;
INSERT INTO history_next (job_seq, step, rank, loss, metric, lr, lrs, event, time_ms, ranks)
    SELECT job_seq, step, rank, loss, metric, lr, lrs, event, time_ms, ranks FROM history;
DROP TABLE history;
ALTER TABLE history_next RENAME TO history;
