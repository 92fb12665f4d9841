-- greedylr schema, version 2: rewinding a job to a checkpoint.

-- How many times each job was rewound.
ALTER TABLE jobs ADD COLUMN rewinds INTEGER NOT NULL DEFAULT 0;

-- The job's complete state after some steps (every few thousand reports), so that a rewind
-- replays at most that many steps of history instead of all of them. reports is the number
-- of reports up to and including step.
CREATE TABLE snapshots (
    job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    reports INTEGER NOT NULL,
    state   TEXT    NOT NULL,
    PRIMARY KEY (job_seq, step)
) WITHOUT ROWID;
