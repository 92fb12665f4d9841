-- greedylr schema, version 1: jobs with their scheduler state, and the report history.
-- Applied in one transaction; PRAGMA user_version records how far a database has come.

-- One row per training job. seq orders jobs by creation (AUTOINCREMENT never reuses a
-- value), which makes list pagination stable while jobs are being created and deleted.
CREATE TABLE jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    policy      TEXT    NOT NULL,
    initial_lr  TEXT    NOT NULL,   -- JSON: a number or an array, exact digits
    config      TEXT    NOT NULL,   -- JSON: every key, defaults filled in
    tags        TEXT    NOT NULL DEFAULT '{}',   -- JSON object of strings
    status      TEXT    NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
    state       TEXT    NOT NULL,   -- JSON: the policy's complete state after last_step
    last_step   INTEGER,            -- NULL before the first report
    reports     INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,   -- Unix time in milliseconds
    updated_ms  INTEGER NOT NULL
);

-- Tags again, one row each, so that listing by tag uses an index.
CREATE TABLE job_tags (
    job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    key     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    PRIMARY KEY (job_seq, key)
) WITHOUT ROWID;
CREATE INDEX job_tags_by_value ON job_tags (key, value, job_seq);

-- One row per accepted report. A NaN loss or metric is stored as NULL (SQLite has no
-- NaN); infinities are stored as they are. lr is group 0's learning rate after the step;
-- lrs holds every group's (little-endian IEEE doubles) when the job has more than one.
CREATE TABLE history (
    job_seq INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    rank    INTEGER NOT NULL,
    loss    REAL,
    metric  REAL,
    lr      REAL    NOT NULL,
    lrs     BLOB,
    event   TEXT    NOT NULL
        CHECK (event IN ('hold', 'increase', 'decrease', 'reset', 'cooldown', 'warmup')),
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (job_seq, step, rank)
) WITHOUT ROWID;
