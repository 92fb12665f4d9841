-- greedylr schema, version 3: jobs trained by several ranks, one decision per step.

-- How many ranks report each step, how their losses are combined, and how long the
-- service waits for all of them before deciding with those that did report.
ALTER TABLE jobs ADD COLUMN world_size INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN aggregate TEXT NOT NULL DEFAULT 'mean'
    CHECK (aggregate IN ('mean', 'max', 'min', 'rank0'));
ALTER TABLE jobs ADD COLUMN aggregate_timeout_ms INTEGER NOT NULL DEFAULT 30000;

-- How many ranks' losses a decision combined. In a job of several ranks the history row
-- of a step (rank 0) holds the combined loss the policy was given.
ALTER TABLE history ADD COLUMN ranks INTEGER NOT NULL DEFAULT 1;

-- Each rank's own loss of each step of a job of several ranks; late is 1 for a rank that
-- reported after the step was decided without it.
CREATE TABLE rank_losses (
    job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    rank    INTEGER NOT NULL,
    loss    REAL,
    late    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_seq, step, rank)
) WITHOUT ROWID;
