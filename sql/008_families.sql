-- greedylr schema, version 8: families of runs, the outcome of a finished job, the
-- settings the service chose for a tuned job, and where each rewind went.

-- The family a job belongs to (runs of one training problem; same rules as a job id),
-- NULL for none.
ALTER TABLE jobs ADD COLUMN family TEXT;
-- A finished job's outcome (lower is better): the one PATCH gave (outcome_given 1), or its
-- last loss; +Infinity for a run that ended diverged. NULL while the job runs, and for a
-- finished job that had no report and was given none.
ALTER TABLE jobs ADD COLUMN outcome REAL;
ALTER TABLE jobs ADD COLUMN outcome_given INTEGER NOT NULL DEFAULT 0;
-- Read from the history when the job finished: its last loss (NULL: NaN, or no report)
-- and its lowest finite loss (NULL: none).
ALTER TABLE jobs ADD COLUMN last_loss REAL;
ALTER TABLE jobs ADD COLUMN best_loss REAL;
-- JSON: what tuning chose for the job and why; NULL for a job that was not tuned.
ALTER TABLE jobs ADD COLUMN tuned TEXT;

-- Each rewind of a job: the step it went back to (-1: the initial state), the last step it
-- had before, and when; n counts the job's rewinds from 0. The history keeps only what
-- happened after, so this is where a chart of the job finds where it was rewound.
CREATE TABLE rewinds (
    job_seq   INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    n         INTEGER NOT NULL,
    to_step   INTEGER NOT NULL,
    from_step INTEGER,
    time_ms   INTEGER NOT NULL,
    PRIMARY KEY (job_seq, n)
) WITHOUT ROWID;

-- The jobs of a family in creation order, for the family filter and the families list.
CREATE INDEX jobs_by_family ON jobs (family, seq) WHERE family IS NOT NULL;
