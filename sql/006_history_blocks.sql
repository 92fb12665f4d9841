-- greedylr schema, version 6: a summary of each block of history rows.
--
-- Downsampled history (max_points) over a long job read every row twice. Each block of
-- rows in step order (STORE_BLOCK_ROWS of them; the newest rows of a job, fewer than two
-- blocks' worth, are not in a block yet) is summarized once, when it is complete, so that
-- a chart of a million rows reads some thousands of summaries. The blocks of a job cover
-- its history from the first row on, one after another, without gaps.
--
-- The rows already in the database are summarized when this migration is applied (by the
-- daemon, in the same transaction).
CREATE TABLE history_blocks (
    job_seq     INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    first_step  INTEGER NOT NULL,
    last_step   INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    changes     INTEGER NOT NULL, -- rows whose lrs differ from the row before them
    change_step INTEGER,          -- the first of them, NULL when none
    low_step    INTEGER NOT NULL, -- the lowest loss (the first row when every loss is NaN)
    low_loss    REAL,             -- NULL: NaN
    high_step   INTEGER,          -- the highest loss, NULL when every loss is NaN
    high_loss   REAL,
    PRIMARY KEY (job_seq, first_step)
) WITHOUT ROWID;
