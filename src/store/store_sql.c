/*
 * Every SQL statement of greedylr, each with its purpose (the schema itself is in sql/).
 * The writer's and the readers' tables are prepared once per connection when the store
 * opens; the others run once where they are needed.
 */
#include "store/store_int.h"

#define REPORT_COLUMNS "step, rank, loss, metric, lr, lrs, event, time_ms, ranks, lr_cap"
#define BLOCK_COLUMNS                                                                              \
    "first_step, last_step, rows, changes, change_step, low_step, low_loss, high_step, high_loss"
#define JOB_COLUMNS                                                                                \
    "seq, id, policy, initial_lr, config, tags, status, state, last_step, reports, created_ms,"    \
    " updated_ms, rewinds, world_size, aggregate, aggregate_timeout_ms, family, outcome,"          \
    " outcome_given, last_loss, best_loss, tuned"

const char *const store_writer_sql[W_COUNT] = {
    /* A write transaction takes the lock at once, so it never has to upgrade. */
    [W_BEGIN] = "BEGIN IMMEDIATE",
    /* The end of a write transaction: kept, */
    [W_COMMIT] = "COMMIT",
    /* or undone. */
    [W_ROLLBACK] = "ROLLBACK",
    /* Create a job. */
    [W_JOB_INSERT] = "INSERT INTO jobs (id, policy, initial_lr, config, tags, status, state,"
                     " last_step, reports, created_ms, updated_ms, world_size, aggregate,"
                     " aggregate_timeout_ms, family, tuned)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                     " ?16)",
    /* The indexed copy of one tag. */
    [W_TAG_INSERT] = "INSERT INTO job_tags (job_seq, key, value) VALUES (?1, ?2, ?3)",
    /* Forget a job's indexed tags before writing its new ones. */
    [W_TAGS_CLEAR] = "DELETE FROM job_tags WHERE job_seq = ?1",
    /* PATCH: finish a job (or run it again). */
    [W_JOB_STATUS] = "UPDATE jobs SET status = ?2, updated_ms = ?3 WHERE seq = ?1",
    /* PATCH: a finished job's outcome, and the losses it was read from. */
    [W_JOB_OUTCOME] = "UPDATE jobs SET outcome = ?2, outcome_given = ?3, last_loss = ?4,"
                      " best_loss = ?5, updated_ms = ?6 WHERE seq = ?1",
    /* PATCH: replace the tags. */
    [W_JOB_TAGS] = "UPDATE jobs SET tags = ?2, updated_ms = ?3 WHERE seq = ?1",
    /* The jobs in the database, counted once for --max-jobs and then kept in memory. */
    [W_JOB_COUNT] = "SELECT count(*) FROM jobs",
    /* DELETE: the job; its tags and history go by ON DELETE CASCADE. */
    [W_JOB_DELETE] = "DELETE FROM jobs WHERE seq = ?1",
    /* One accepted report. */
    [W_REPORT_INSERT] = "INSERT INTO history (job_seq, step, rank, loss, metric, lr, lrs, event,"
                        " time_ms, ranks, lr_cap)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    /* The job's state after that report. */
    [W_JOB_ADVANCE] = "UPDATE jobs SET state = ?2, last_step = ?3, reports = ?4, updated_ms = ?5"
                      " WHERE seq = ?1",
    /* Every few thousand reports, the state after one of them, for fast rewinds. */
    [W_SNAPSHOT_INSERT] = "INSERT INTO snapshots (job_seq, step, reports, state)"
                          " VALUES (?1, ?2, ?3, ?4)",
    /*
     * A rewind forgets the history after the step it goes back to in batches, the newest
     * first: the lowest step of the next batch (?3 is the batch's size less one; no row: the
     * rest is one batch),
     */
    [W_HISTORY_BATCH_FLOOR] = "SELECT step FROM history WHERE job_seq = ?1 AND step > ?2"
                              " ORDER BY step DESC LIMIT 1 OFFSET ?3",
    /* every row after a step, */
    [W_HISTORY_TRUNCATE] = "DELETE FROM history WHERE job_seq = ?1 AND step > ?2",
    /* and the snapshots after it. */
    [W_SNAPSHOTS_TRUNCATE] = "DELETE FROM snapshots WHERE job_seq = ?1 AND step > ?2",
    /* One rank's loss of a step of a job of several ranks. */
    [W_RANK_LOSS_INSERT] = "INSERT INTO rank_losses (job_seq, step, rank, loss, late)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)",
    /* A rewind forgets the ranks' losses after the step it goes back to. */
    [W_RANK_LOSSES_TRUNCATE] = "DELETE FROM rank_losses WHERE job_seq = ?1 AND step > ?2",
    /*
     * A rewind's record, made before the job's row counts it: its number, and the last
     * step of the history it cuts (the row's last_step may be behind, see svc.c).
     */
    [W_REWIND_LOG] = "INSERT INTO rewinds (job_seq, n, to_step, from_step, time_ms)"
                     " SELECT seq, rewinds, ?2, (SELECT max(step) FROM history WHERE job_seq = ?1),"
                     " ?3 FROM jobs WHERE seq = ?1",
    /* A rewind's new state for the job, which counts it and runs again. */
    [W_JOB_REWIND] = "UPDATE jobs SET state = ?2, last_step = ?3, reports = ?4, updated_ms = ?5,"
                     " rewinds = rewinds + 1, status = 'running', outcome = NULL,"
                     " outcome_given = 0, last_loss = NULL, best_loss = NULL WHERE seq = ?1",
    /* An API token: its name, role and hash (never the token itself). */
    [W_TOKEN_INSERT] = "INSERT INTO tokens (name, role, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
    /* Revoke a token. */
    [W_TOKEN_DELETE] = "DELETE FROM tokens WHERE name = ?1",
    /* A family's next model: the version after its newest, chosen in the same statement. */
    [W_MODEL_INSERT] = "INSERT INTO models (family, version, created_ms, model, trained_on, fit)"
                       " SELECT ?1, coalesce(max(version), 0) + 1, ?2, ?3, ?4, ?5 FROM models"
                       " WHERE family = ?1 RETURNING version",
    /* Summaries of history blocks (see store_build_blocks()): where the last one ends, */
    [W_BLOCK_LAST] = "SELECT last_step FROM history_blocks WHERE job_seq = ?1"
                     " ORDER BY first_step DESC LIMIT 1",
    /* the rows from there on, */
    [W_BLOCK_ROWS] = "SELECT " REPORT_COLUMNS " FROM history WHERE job_seq = ?1 AND step >= ?2"
                     " ORDER BY step, rank",
    /* a new one, */
    [W_BLOCK_INSERT] = "INSERT INTO history_blocks (job_seq, " BLOCK_COLUMNS ")"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    /* and, in a rewind, forgetting those that reach past the step it goes back to. */
    [W_BLOCKS_TRUNCATE] = "DELETE FROM history_blocks WHERE job_seq = ?1 AND last_step > ?2",
};

const char *const store_reader_sql[R_COUNT] = {
    /* GET a job, or load it into memory. */
    [R_JOB_LOAD] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
    /* A retried report: what was answered the first time. */
    [R_REPORT_FIND] = "SELECT " REPORT_COLUMNS " FROM history"
                      " WHERE job_seq = ?1 AND step = ?2 AND rank = ?3",
    /* History of a step range, in order. */
    [R_REPORT_SCAN] = "SELECT " REPORT_COLUMNS " FROM history"
                      " WHERE job_seq = ?1 AND (step, rank) >= (?2, ?3) AND step <= ?4"
                      " ORDER BY step, rank LIMIT ?5",
    /* One page of the job list, after a cursor, with optional status and tag filters. */
    [R_JOB_SCAN] = "SELECT " JOB_COLUMNS " FROM jobs WHERE seq > ?1"
                   " AND (?2 IS NULL OR status = ?2)"
                   " AND (?3 IS NULL OR seq IN (SELECT job_seq FROM job_tags"
                   "                            WHERE key = ?3 AND value = ?4))"
                   " ORDER BY seq LIMIT ?5",
    /* The same, of one family (its index keeps a family's page quick among many jobs). */
    [R_FAMILY_JOB_SCAN] = "SELECT " JOB_COLUMNS " FROM jobs WHERE family = ?6 AND seq > ?1"
                          " AND (?2 IS NULL OR status = ?2)"
                          " AND (?3 IS NULL OR seq IN (SELECT job_seq FROM job_tags"
                          "                            WHERE key = ?3 AND value = ?4))"
                          " ORDER BY seq LIMIT ?5",
    /* A page of the families, by name after a cursor, each counted. */
    [R_FAMILY_SCAN] = "SELECT family, count(*), sum(status = 'finished'), min(outcome),"
                      " max(updated_ms) FROM jobs WHERE family IS NOT NULL AND family > ?1"
                      " GROUP BY family ORDER BY family LIMIT ?2",
    /* A job's outcome when it finishes: its last loss, */
    [R_LAST_LOSS] = "SELECT loss FROM history WHERE job_seq = ?1 AND rank = 0"
                    " ORDER BY step DESC LIMIT 1",
    /* The rewinds of a job that went back into a step range, oldest first. */
    [R_REWIND_SCAN] = "SELECT to_step, from_step, time_ms FROM rewinds WHERE job_seq = ?1"
                      " AND to_step >= ?2 AND to_step <= ?3 ORDER BY n LIMIT ?4",
    /* and its lowest finite one (9e999 reads as infinity; a NaN is stored as NULL). */
    [R_BEST_LOSS] = "SELECT min(loss) FROM history WHERE job_seq = ?1 AND rank = 0"
                    " AND loss > -9e999 AND loss < 9e999",
    /* How many steps a job's history holds (a step of several ranks counts once). */
    [R_HISTORY_STEPS] = "SELECT count(DISTINCT step) FROM history WHERE job_seq = ?1",
    /* The latest snapshot at or before a step, where a rewind starts replaying. */
    [R_SNAPSHOT_FIND] = "SELECT step, reports, state FROM snapshots"
                        " WHERE job_seq = ?1 AND step <= ?2 ORDER BY step DESC LIMIT 1",
    /* A rank's report of a step of a job of several ranks: a retry, or late. */
    [R_RANK_LOSS_FIND] = "SELECT loss FROM rank_losses WHERE job_seq = ?1 AND step = ?2"
                         " AND rank = ?3",
    /* Each rank's loss of a step range, in order (the dashboard's losses by rank). */
    [R_RANK_LOSS_SCAN] = "SELECT step, rank, loss, late FROM rank_losses"
                         " WHERE job_seq = ?1 AND (step, rank) >= (?2, ?3) AND step <= ?4"
                         " ORDER BY step, rank LIMIT ?5",
    /* Every API token, for the daemon's table in memory and for listing. */
    [R_TOKEN_SCAN] = "SELECT name, role, hash, created_ms FROM tokens ORDER BY created_ms, name",
    /* A family's newest model. */
    [R_MODEL_LATEST] = "SELECT version, created_ms, model, trained_on, fit FROM models"
                       " WHERE family = ?1 ORDER BY version DESC LIMIT 1",
    /* The jobs gauge of /metrics: how many jobs of each status. */
    [R_JOB_COUNT] = "SELECT status, count(*) FROM jobs GROUP BY status",
    /* The history blocks that lie wholly in a step range, in order. */
    [R_BLOCK_SCAN] = "SELECT " BLOCK_COLUMNS " FROM history_blocks WHERE job_seq = ?1"
                     " AND first_step >= ?2 AND last_step <= ?3 ORDER BY first_step",
};

const char *const store_other_sql[S_COUNT] = {
    /* The migration's transaction and the readiness probe's, outside the writer's table. */
    [S_BEGIN] = "BEGIN IMMEDIATE",
    /* Their end: kept, */
    [S_COMMIT] = "COMMIT",
    /* or undone. */
    [S_ROLLBACK] = "ROLLBACK",
    /* Every connection: the schema's ON DELETE CASCADE and references hold. */
    [S_FOREIGN_KEYS] = "PRAGMA foreign_keys = ON",
    /* The writer: readers beside it; answers the mode that took. */
    [S_JOURNAL_WAL] = "PRAGMA journal_mode = WAL",
    /* The writer with STORE_SYNC_FULL: an fsync per commit. */
    [S_SYNC_FULL] = "PRAGMA synchronous = FULL",
    /* The writer with STORE_SYNC_NORMAL: a commit reaches the operating system. */
    [S_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    /* A reader connection never writes, whatever runs on it. */
    [S_QUERY_ONLY] = "PRAGMA query_only = ON",
    /* The writer's page cache; the caller appends its size in KiB. */
    [S_CACHE_SIZE] = "PRAGMA cache_size = -",
    /* The schema version of the database. */
    [S_USER_VERSION] = "PRAGMA user_version",
    /* Records the schema version; the caller appends it. */
    [S_SET_USER_VERSION] = "PRAGMA user_version = ",
    /* The migration that brings blocks summarizes the history of every job, in order. */
    [S_JOB_SEQS] = "SELECT seq FROM jobs ORDER BY seq",
    /* A backup copies only a greedylr database: one with a jobs table. */
    [S_IS_GREEDYLR] = "SELECT count(*) FROM sqlite_master WHERE name = 'jobs'",
    /* A backup is one self-contained file, with no WAL beside it. */
    [S_JOURNAL_DELETE] = "PRAGMA journal_mode = DELETE",
    /* A backup is checked before it takes its name. */
    [S_QUICK_CHECK] = "PRAGMA quick_check",
    /* The check of a serving store at start: the first problem is enough to refuse it. */
    [S_QUICK_CHECK_FIRST] = "PRAGMA quick_check(1)",
    /* The page size, which sizes the WAL against the room left on the disk. */
    [S_PAGE_SIZE] = "PRAGMA page_size",
};
