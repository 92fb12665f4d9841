-- greedylr schema, version 7: the auto policy's events, and the stability cap of a report.
--
-- auto answers three more events (diverged, capped, anneal), which the history's event
-- check must allow, and a report may carry lr_cap, an upper bound on the learning rate
-- that the client computed; it is kept with the report (NULL: none) because replaying
-- the history, on load and on rewind, must give the policy the same input again. A CHECK
-- cannot be altered in place: the table is rebuilt with the same rows, as in version 5.
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
               OR event = 'cooldown' OR event = 'warmup' OR event = 'diverged'
               OR event = 'capped' OR event = 'anneal'),
    time_ms INTEGER NOT NULL,
    ranks   INTEGER NOT NULL DEFAULT 1,
    lr_cap  REAL,
    PRIMARY KEY (job_seq, step, rank)
) WITHOUT ROWID;
INSERT INTO history_next (job_seq, step, rank, loss, metric, lr, lrs, event, time_ms, ranks)
    SELECT job_seq, step, rank, loss, metric, lr, lrs, event, time_ms, ranks FROM history;
DROP TABLE history;
ALTER TABLE history_next RENAME TO history;
