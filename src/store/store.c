/*
 * The SQLite store (see store.h). Every SQL statement of greedylr is in this file, each
 * with its purpose; the schema itself is in sql/.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/migrations.h"
#include "base/status.h"
#include "base/summary.h"

#define REPORT_COLUMNS "step, rank, loss, metric, lr, lrs, event, time_ms, ranks, lr_cap"
#define BLOCK_COLUMNS                                                                              \
    "first_step, last_step, rows, changes, change_step, low_step, low_loss, high_step, high_loss"

/* Statements of the writer connection. */
enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_JOB_INSERT,
    W_TAG_INSERT,
    W_TAGS_CLEAR,
    W_JOB_STATUS,
    W_JOB_TAGS,
    W_JOB_DELETE,
    W_REPORT_INSERT,
    W_JOB_ADVANCE,
    W_SNAPSHOT_INSERT,
    W_HISTORY_TRUNCATE,
    W_SNAPSHOTS_TRUNCATE,
    W_JOB_REWIND,
    W_RANK_LOSS_INSERT,
    W_RANK_LOSSES_TRUNCATE,
    W_TOKEN_INSERT,
    W_TOKEN_DELETE,
    W_BLOCK_LAST,
    W_BLOCK_ROWS,
    W_BLOCK_INSERT,
    W_BLOCKS_TRUNCATE,
    W_COUNT
};

static const char *const writer_sql[W_COUNT] = {
    /* A write transaction takes the lock at once, so it never has to upgrade. */
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    /* Create a job. */
    [W_JOB_INSERT] = "INSERT INTO jobs (id, policy, initial_lr, config, tags, status, state,"
                     " last_step, reports, created_ms, updated_ms, world_size, aggregate,"
                     " aggregate_timeout_ms)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    /* The indexed copy of one tag. */
    [W_TAG_INSERT] = "INSERT INTO job_tags (job_seq, key, value) VALUES (?1, ?2, ?3)",
    [W_TAGS_CLEAR] = "DELETE FROM job_tags WHERE job_seq = ?1",
    /* PATCH: finish a job (or run it again). */
    [W_JOB_STATUS] = "UPDATE jobs SET status = ?2, updated_ms = ?3 WHERE seq = ?1",
    /* PATCH: replace the tags. */
    [W_JOB_TAGS] = "UPDATE jobs SET tags = ?2, updated_ms = ?3 WHERE seq = ?1",
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
    /* A rewind forgets everything after the step it goes back to. */
    [W_HISTORY_TRUNCATE] = "DELETE FROM history WHERE job_seq = ?1 AND step > ?2",
    [W_SNAPSHOTS_TRUNCATE] = "DELETE FROM snapshots WHERE job_seq = ?1 AND step > ?2",
    /* One rank's loss of a step of a job of several ranks. */
    [W_RANK_LOSS_INSERT] = "INSERT INTO rank_losses (job_seq, step, rank, loss, late)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)",
    [W_RANK_LOSSES_TRUNCATE] = "DELETE FROM rank_losses WHERE job_seq = ?1 AND step > ?2",
    [W_JOB_REWIND] = "UPDATE jobs SET state = ?2, last_step = ?3, reports = ?4, updated_ms = ?5,"
                     " rewinds = rewinds + 1, status = 'running' WHERE seq = ?1",
    /* An API token: its name, role and hash (never the token itself). */
    [W_TOKEN_INSERT] = "INSERT INTO tokens (name, role, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
    /* Revoke a token. */
    [W_TOKEN_DELETE] = "DELETE FROM tokens WHERE name = ?1",
    /* Summaries of history blocks (see build_blocks()): where the last one ends, */
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

/* Statements of each reader connection. */
enum {
    R_JOB_LOAD,
    R_REPORT_FIND,
    R_REPORT_SCAN,
    R_JOB_SCAN,
    R_SNAPSHOT_FIND,
    R_RANK_LOSS_FIND,
    R_TOKEN_SCAN,
    R_JOB_COUNT,
    R_BLOCK_SCAN,
    R_COUNT
};

#define JOB_COLUMNS                                                                                \
    "seq, id, policy, initial_lr, config, tags, status, state, last_step, reports, created_ms,"    \
    " updated_ms, rewinds, world_size, aggregate, aggregate_timeout_ms"

static const char *const reader_sql[R_COUNT] = {
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
    /* The latest snapshot at or before a step, where a rewind starts replaying. */
    [R_SNAPSHOT_FIND] = "SELECT step, reports, state FROM snapshots"
                        " WHERE job_seq = ?1 AND step <= ?2 ORDER BY step DESC LIMIT 1",
    /* A rank's report of a step of a job of several ranks: a retry, or late. */
    [R_RANK_LOSS_FIND] = "SELECT loss FROM rank_losses WHERE job_seq = ?1 AND step = ?2"
                         " AND rank = ?3",
    /* Every API token, for the daemon's table in memory and for listing. */
    [R_TOKEN_SCAN] = "SELECT name, role, hash, created_ms FROM tokens ORDER BY created_ms, name",
    /* The jobs gauge of /metrics: how many jobs of each status. */
    [R_JOB_COUNT] = "SELECT status, count(*) FROM jobs GROUP BY status",
    /* The history blocks that lie wholly in a step range, in order. */
    [R_BLOCK_SCAN] = "SELECT " BLOCK_COLUMNS " FROM history_blocks WHERE job_seq = ?1"
                     " AND first_step >= ?2 AND last_step <= ?3 ORDER BY first_step",
};

struct connection {
    sqlite3 *db;
    sqlite3_stmt **stmts;
};

/*
 * The WAL, in pages, past which the checkpointer thread copies it into the database. The
 * writer does not checkpoint itself (SQLite's default, every 1000 pages): a checkpoint
 * takes longer than many group commits, and every report waiting behind it waited too.
 */
#define STORE_CHECKPOINT_PAGES 4096
/*
 * The WAL, in pages, past which the writer checkpoints after all: under a steady stream of
 * commits a checkpoint beside the writer may never catch up with the WAL's end, and only
 * then does SQLite start the WAL over.
 */
#define STORE_CHECKPOINT_WRITER_PAGES (8 * STORE_CHECKPOINT_PAGES)
/*
 * After this long without a commit, the checkpointer empties the WAL altogether: readers
 * then find every page in the database file, not through the WAL's index, and a chart
 * read after a training run is as fast as before it.
 */
#define STORE_CHECKPOINT_QUIET_MS 1000
/*
 * The writer's page cache, in KiB. Reports of many jobs touch as many history and job
 * pages; SQLite's default (2 MiB) sent the writer to the file for them on every group.
 */
#define STORE_WRITER_CACHE_KIB 32768

struct store {
    pthread_mutex_t write_lock;
    struct connection writer;
    sqlite3_stmt *writer_stmts[W_COUNT];

    /* The checkpointer thread and its own connection (see STORE_CHECKPOINT_PAGES). */
    struct connection checkpointer;
    pthread_mutex_t checkpoint_lock;
    pthread_cond_t checkpoint_wake;
    bool checkpoint_due, checkpoint_stop;
    uint64_t wal_commits; /* commits so far */
    bool wal_dirty;       /* commits since the WAL was last emptied */
    bool checkpointer_started;
    /*
     * The last write failed for want of room or of a working disk, and none has succeeded
     * since: the readiness probe then tries a real commit (see store_check_writable).
     */
    atomic_bool write_failed;
    pthread_t checkpointer_thread;

    /* Decisions waiting for the writer thread, oldest first. */
    pthread_mutex_t queue_lock;
    pthread_cond_t queue_wake;
    struct store_commit *queue_head, **queue_tail;
    bool stopping;
    bool writer_started;
    pthread_t writer_thread;
    struct store_options options;

    pthread_mutex_t pool_lock;
    pthread_cond_t pool_free;
    bool reader_busy[STORE_READERS];
    struct connection readers[STORE_READERS];
    sqlite3_stmt *reader_stmts[STORE_READERS][R_COUNT];
};

static int db_fail(char *err, sqlite3 *db, const char *what)
{
    return glr_fail(err, GLR_EIO, "database: %s: %s", what, db ? sqlite3_errmsg(db) : "?");
}

/* Runs one SQL text that returns no rows we need. */
static int exec(sqlite3 *db, const char *sql, const char *what, char *err)
{
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK) {
        glr_fail(err, GLR_EIO, "database: %s: %s", what, message ? message : "?");
        sqlite3_free(message);
        return GLR_EIO;
    }
    return GLR_OK;
}

/* Runs a pragma that returns one value, and returns its integer (or text via out). */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t out_size, char *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return db_fail(err, db, sql);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        return db_fail(err, db, sql);
    }
    const unsigned char *text = sqlite3_column_text(stmt, 0);
    snprintf(out, out_size, "%s", text ? (const char *)text : "");
    sqlite3_finalize(stmt);
    return GLR_OK;
}

int store_latest_version(void)
{
    return (int)store_migration_count;
}

static int open_connection(const char *path, struct connection *conn, sqlite3_stmt **stmts,
                           bool writer, enum store_sync sync, char *err)
{
    conn->stmts = stmts;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &conn->db, flags, NULL) != SQLITE_OK) {
        int rc = glr_fail(err, GLR_EIO, "database %s: %s", path,
                          conn->db ? sqlite3_errmsg(conn->db) : "cannot open");
        return rc;
    }
    sqlite3_extended_result_codes(conn->db, 1);
    sqlite3_busy_timeout(conn->db, STORE_BUSY_TIMEOUT_MS);
    int rc = exec(conn->db, "PRAGMA foreign_keys = ON", "enabling foreign keys", err);
    if (rc)
        return rc;
    if (writer) {
        char mode[16];
        if ((rc = pragma_text(conn->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode), err)))
            return rc;
        if (strcmp(mode, "wal") != 0)
            return glr_fail(err, GLR_EIO,
                            "database %s: WAL mode did not take (journal_mode is %s); "
                            "is it on a file system without shared memory?",
                            path, mode);
        const char *pragma =
            sync == STORE_SYNC_FULL ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
        if ((rc = exec(conn->db, pragma, "setting synchronous", err)))
            return rc;
    } else if ((rc = exec(conn->db, "PRAGMA query_only = ON", "making a reader", err))) {
        return rc;
    }
    return GLR_OK;
}

static int prepare_all(struct connection *conn, const char *const *sql, int count, char *err)
{
    for (int i = 0; i < count; i++)
        if (sqlite3_prepare_v3(conn->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &conn->stmts[i],
                               NULL) != SQLITE_OK)
            return db_fail(err, conn->db, sql[i]);
    return GLR_OK;
}

static void close_connection(struct connection *conn, int count)
{
    if (!conn->db)
        return;
    for (int i = 0; i < count; i++)
        sqlite3_finalize(conn->stmts[i]);
    sqlite3_close(conn->db);
    conn->db = NULL;
}

int store_schema_version(struct store *store)
{
    char text[32];
    pthread_mutex_lock(&store->write_lock);
    int rc = pragma_text(store->writer.db, "PRAGMA user_version", text, sizeof(text), NULL);
    pthread_mutex_unlock(&store->write_lock);
    return rc ? -1 : atoi(text);
}

/* The schema version that brought history blocks, whose rows are summarized in C. */
#define STORE_BLOCKS_VERSION 6
static int backfill_blocks(sqlite3 *db, char *err);

/* Brings the schema up to date in one transaction, or refuses a newer database. */
static int migrate(sqlite3 *db, const char *path, char *err)
{
    int rc = exec(db, "BEGIN IMMEDIATE", "starting the migration", err);
    if (rc)
        return rc;
    char text[32];
    if ((rc = pragma_text(db, "PRAGMA user_version", text, sizeof(text), err)))
        goto rollback;
    int version = atoi(text);
    int latest = store_latest_version();
    if (version > latest) {
        rc = glr_fail(err, GLR_ECORRUPT,
                      "database %s has schema version %d, newer than this greedylr knows "
                      "(%d): use a newer greedylrd",
                      path, version, latest);
        goto rollback;
    }
    for (int v = version; v < latest; v++) {
        const struct migration *m = &store_migrations[v];
        char what[96];
        snprintf(what, sizeof(what), "applying %s", m->name);
        if ((rc = exec(db, m->sql, what, err)))
            goto rollback;
    }
    /*
     * The summaries are made once the schema is the latest, whose statements they use (a
     * later migration may add columns to the history; it keeps its rows).
     */
    if (version < STORE_BLOCKS_VERSION && (rc = backfill_blocks(db, err)))
        goto rollback;
    if (version < latest) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", latest);
        if ((rc = exec(db, sql, "recording the schema version", err)))
            goto rollback;
    }
    return exec(db, "COMMIT", "committing the migration", err);

rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void *writer_main(void *arg);

/* SQLite calls this after each commit of the writer connection, with the WAL's size. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *store = arg;
    if (pages >= STORE_CHECKPOINT_WRITER_PAGES) {
        /* Between two commits nothing is appended, so this one reaches the end. */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    pthread_mutex_lock(&store->checkpoint_lock);
    store->wal_commits++;
    /* The checkpointer is woken when there is work, not at every commit. */
    bool wake = !store->wal_dirty || (pages >= STORE_CHECKPOINT_PAGES && !store->checkpoint_due);
    store->wal_dirty = true;
    if (pages >= STORE_CHECKPOINT_PAGES)
        store->checkpoint_due = true;
    if (wake)
        pthread_cond_signal(&store->checkpoint_wake);
    pthread_mutex_unlock(&store->checkpoint_lock);
    return SQLITE_OK;
}

/*
 * Copies the WAL into the database whenever the writer says it has grown, without taking
 * the write lock (a passive checkpoint): commits go on meanwhile. Once commits have
 * stopped for STORE_CHECKPOINT_QUIET_MS it empties the WAL (a truncating checkpoint, which
 * a commit arriving meanwhile waits for; most frames are copied already). A checkpoint
 * that fails (a reader holding an old snapshot, say) is tried again later.
 */
static void *checkpointer_main(void *arg)
{
    struct store *store = arg;
    pthread_mutex_lock(&store->checkpoint_lock);
    for (;;) {
        bool quiet = false;
        while (!store->checkpoint_due && !store->checkpoint_stop && !quiet) {
            if (!store->wal_dirty) {
                pthread_cond_wait(&store->checkpoint_wake, &store->checkpoint_lock);
                continue;
            }
            /* Quiet: a whole STORE_CHECKPOINT_QUIET_MS without a commit. */
            uint64_t seen = store->wal_commits;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)STORE_CHECKPOINT_QUIET_MS % 1000 * 1000000L;
            until.tv_sec += STORE_CHECKPOINT_QUIET_MS / 1000 + until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            int waited = 0;
            while (!store->checkpoint_due && !store->checkpoint_stop && waited != ETIMEDOUT)
                waited = pthread_cond_timedwait(&store->checkpoint_wake, &store->checkpoint_lock,
                                                &until);
            quiet = waited == ETIMEDOUT && store->wal_commits == seen;
        }
        if (store->checkpoint_stop)
            break;
        store->checkpoint_due = false;
        if (quiet)
            store->wal_dirty = false;
        pthread_mutex_unlock(&store->checkpoint_lock);
        int mode = quiet ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE;
        int rc = sqlite3_wal_checkpoint_v2(store->checkpointer.db, NULL, mode, NULL, NULL);
        if (rc != SQLITE_OK && quiet) {
            pthread_mutex_lock(&store->checkpoint_lock);
            store->wal_dirty = true; /* not emptied: try again after the next quiet spell */
            pthread_mutex_unlock(&store->checkpoint_lock);
        }
        pthread_mutex_lock(&store->checkpoint_lock);
    }
    pthread_mutex_unlock(&store->checkpoint_lock);
    return NULL;
}

int store_open(const char *path, const struct store_options *options, struct store **out, char *err)
{
    *out = NULL;
    struct store *store = calloc(1, sizeof(*store));
    if (!store)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    atomic_init(&store->write_failed, false);
    if (options)
        store->options = *options;
    pthread_mutex_init(&store->write_lock, NULL);
    pthread_mutex_init(&store->pool_lock, NULL);
    pthread_cond_init(&store->pool_free, NULL);
    pthread_mutex_init(&store->queue_lock, NULL);
    pthread_cond_init(&store->queue_wake, NULL);
    pthread_mutex_init(&store->checkpoint_lock, NULL);
    pthread_cond_init(&store->checkpoint_wake, NULL);
    store->queue_tail = &store->queue_head;

    enum store_sync sync = store->options.sync;
    int rc = open_connection(path, &store->writer, store->writer_stmts, true, sync, err);
    if (!rc)
        rc = migrate(store->writer.db, path, err);
    if (!rc)
        rc = prepare_all(&store->writer, writer_sql, W_COUNT, err);
    if (!rc) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA cache_size = -%d", STORE_WRITER_CACHE_KIB);
        rc = exec(store->writer.db, pragma, "sizing the writer's cache", err);
    }
    if (!rc)
        rc = open_connection(path, &store->checkpointer, NULL, true, sync, err);
    if (!rc) {
        if (pthread_create(&store->checkpointer_thread, NULL, checkpointer_main, store) == 0)
            store->checkpointer_started = true;
        else
            rc = glr_fail(err, GLR_ENOMEM, "cannot start the checkpointer thread");
    }
    if (!rc)
        sqlite3_wal_hook(store->writer.db, on_wal_commit, store);
    for (int i = 0; !rc && i < STORE_READERS; i++) {
        rc = open_connection(path, &store->readers[i], store->reader_stmts[i], false, sync, err);
        if (!rc)
            rc = prepare_all(&store->readers[i], reader_sql, R_COUNT, err);
    }
    if (!rc) {
        if (pthread_create(&store->writer_thread, NULL, writer_main, store) == 0)
            store->writer_started = true;
        else
            rc = glr_fail(err, GLR_ENOMEM, "cannot start the writer thread");
    }
    if (rc) {
        store_close(store);
        return rc;
    }
    *out = store;
    return GLR_OK;
}

/* Raises a thread's stop flag under its lock, wakes it, and waits for it to end. */
static void stop_thread(pthread_t thread, pthread_mutex_t *lock, pthread_cond_t *wake, bool *stop)
{
    pthread_mutex_lock(lock);
    *stop = true;
    pthread_cond_signal(wake);
    pthread_mutex_unlock(lock);
    pthread_join(thread, NULL);
}

void store_close(struct store *store)
{
    if (!store)
        return;
    /* The writer empties the queue before it stops: every decision gets its answer. */
    if (store->writer_started)
        stop_thread(store->writer_thread, &store->queue_lock, &store->queue_wake, &store->stopping);
    if (store->checkpointer_started)
        stop_thread(store->checkpointer_thread, &store->checkpoint_lock, &store->checkpoint_wake,
                    &store->checkpoint_stop);
    close_connection(&store->checkpointer, 0);
    for (int i = 0; i < STORE_READERS; i++)
        close_connection(&store->readers[i], R_COUNT);
    /* The last connection to close checkpoints the WAL into the database file. */
    close_connection(&store->writer, W_COUNT);
    pthread_mutex_destroy(&store->write_lock);
    pthread_mutex_destroy(&store->pool_lock);
    pthread_cond_destroy(&store->pool_free);
    pthread_mutex_destroy(&store->queue_lock);
    pthread_cond_destroy(&store->queue_wake);
    pthread_mutex_destroy(&store->checkpoint_lock);
    pthread_cond_destroy(&store->checkpoint_wake);
    free(store);
}

void store_job_clear(struct store_job *job)
{
    free(job->policy);
    free(job->initial_lr);
    free(job->config);
    free(job->tags);
    free(job->state);
    memset(job, 0, sizeof(*job));
}

/* Takes a free reader connection, waiting for one if all are busy. */
static int reader_take(struct store *store)
{
    pthread_mutex_lock(&store->pool_lock);
    for (;;) {
        for (int i = 0; i < STORE_READERS; i++) {
            if (!store->reader_busy[i]) {
                store->reader_busy[i] = true;
                pthread_mutex_unlock(&store->pool_lock);
                return i;
            }
        }
        pthread_cond_wait(&store->pool_free, &store->pool_lock);
    }
}

static void reader_give(struct store *store, int i)
{
    pthread_mutex_lock(&store->pool_lock);
    store->reader_busy[i] = false;
    pthread_cond_signal(&store->pool_free);
    pthread_mutex_unlock(&store->pool_lock);
}

static void done(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

/* SQLite has no NaN: it would store NULL anyway, so say so explicitly. */
static void bind_real(sqlite3_stmt *stmt, int index, double v)
{
    if (v != v)
        sqlite3_bind_null(stmt, index);
    else
        sqlite3_bind_double(stmt, index, v);
}

static double column_real(sqlite3_stmt *stmt, int index)
{
    if (sqlite3_column_type(stmt, index) == SQLITE_NULL)
        return (double)NAN;
    return sqlite3_column_double(stmt, index);
}

static char *column_strdup(sqlite3_stmt *stmt, int index)
{
    const unsigned char *text = sqlite3_column_text(stmt, index);
    return strdup(text ? (const char *)text : "");
}

static int read_job_row(sqlite3_stmt *stmt, struct store_job *job, char *err)
{
    memset(job, 0, sizeof(*job));
    job->seq = sqlite3_column_int64(stmt, 0);
    snprintf(job->id, sizeof(job->id), "%s", (const char *)sqlite3_column_text(stmt, 1));
    job->policy = column_strdup(stmt, 2);
    job->initial_lr = column_strdup(stmt, 3);
    job->config = column_strdup(stmt, 4);
    job->tags = column_strdup(stmt, 5);
    const unsigned char *status = sqlite3_column_text(stmt, 6);
    job->finished = status && strcmp((const char *)status, "finished") == 0;
    job->state = column_strdup(stmt, 7);
    job->last_step =
        sqlite3_column_type(stmt, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(stmt, 8);
    job->reports = sqlite3_column_int64(stmt, 9);
    job->created_ms = sqlite3_column_int64(stmt, 10);
    job->updated_ms = sqlite3_column_int64(stmt, 11);
    job->rewinds = sqlite3_column_int64(stmt, 12);
    job->world_size = sqlite3_column_int64(stmt, 13);
    const unsigned char *aggregate = sqlite3_column_text(stmt, 14);
    snprintf(job->aggregate, sizeof(job->aggregate), "%s",
             aggregate ? (const char *)aggregate : "mean");
    job->aggregate_timeout_ms = sqlite3_column_int64(stmt, 15);
    if (!job->policy || !job->initial_lr || !job->config || !job->tags || !job->state) {
        store_job_clear(job);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    return GLR_OK;
}

/* Little-endian doubles, so that a database file moves between machines. */
static void encode_doubles(const double *values, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &values[i], sizeof(bits));
        for (int b = 0; b < 8; b++)
            out[i * 8 + (size_t)b] = (unsigned char)(bits >> (8 * b));
    }
}

static void decode_doubles(const unsigned char *in, size_t n, double *values)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = 0;
        for (int b = 0; b < 8; b++)
            bits |= (uint64_t)in[i * 8 + (size_t)b] << (8 * b);
        memcpy(&values[i], &bits, sizeof(bits));
    }
}

static int read_report_row(sqlite3_stmt *stmt, struct store_report *r, char *err)
{
    r->step = sqlite3_column_int64(stmt, 0);
    r->rank = sqlite3_column_int64(stmt, 1);
    r->loss = column_real(stmt, 2);
    r->metric = column_real(stmt, 3);
    r->lrs[0] = sqlite3_column_double(stmt, 4);
    r->groups = 1;
    if (sqlite3_column_type(stmt, 5) == SQLITE_BLOB) {
        int bytes = sqlite3_column_bytes(stmt, 5);
        if (bytes <= 0 || bytes % 8 != 0 || bytes / 8 > GLR_MAX_GROUPS)
            return glr_fail(err, GLR_ECORRUPT, "database: history lrs of step %lld is damaged",
                            (long long)r->step);
        r->groups = (size_t)bytes / 8;
        decode_doubles(sqlite3_column_blob(stmt, 5), r->groups, r->lrs);
    }
    const unsigned char *event = sqlite3_column_text(stmt, 6);
    if (!event || glr_event_parse((const char *)event, &r->event) != GLR_OK)
        return glr_fail(err, GLR_ECORRUPT, "database: history event of step %lld is damaged",
                        (long long)r->step);
    r->time_ms = sqlite3_column_int64(stmt, 7);
    r->ranks = sqlite3_column_int64(stmt, 8);
    r->lr_cap =
        sqlite3_column_type(stmt, 9) == SQLITE_NULL ? INFINITY : sqlite3_column_double(stmt, 9);
    return GLR_OK;
}

/* The statements build_blocks() runs: W_BLOCK_LAST, W_BLOCK_ROWS and W_BLOCK_INSERT. */
struct block_stmts {
    sqlite3_stmt *last, *rows, *insert;
};

static int insert_block(sqlite3 *db, sqlite3_stmt *stmt, int64_t seq, const struct summary *b,
                        char *err)
{
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, b->first_step);
    sqlite3_bind_int64(stmt, 3, b->last_step);
    sqlite3_bind_int64(stmt, 4, b->rows);
    sqlite3_bind_int64(stmt, 5, b->changes);
    if (b->changes > 0)
        sqlite3_bind_int64(stmt, 6, b->change_step);
    sqlite3_bind_int64(stmt, 7, b->low_step);
    bind_real(stmt, 8, b->low_loss);
    if (b->have_high) {
        sqlite3_bind_int64(stmt, 9, b->high_step);
        sqlite3_bind_double(stmt, 10, b->high_loss);
    }
    int rc = sqlite3_step(stmt);
    done(stmt);
    return rc == SQLITE_DONE ? GLR_OK : db_fail(err, db, "summarizing a block of history");
}

/*
 * Summarizes the rows of job seq that follow its last block into blocks of
 * STORE_BLOCK_ROWS rows; fewer rows than that are left for a later call. Runs inside the
 * caller's write transaction. The rows are read from the last row of the last block on,
 * which is only compared with: it tells whether the first new row changed the lr.
 */
static int build_blocks(sqlite3 *db, const struct block_stmts *s, int64_t seq, char *err)
{
    int64_t from_step = INT64_MIN;
    sqlite3_bind_int64(s->last, 1, seq);
    int rc = sqlite3_step(s->last);
    bool after_block = rc == SQLITE_ROW;
    if (after_block)
        from_step = sqlite3_column_int64(s->last, 0);
    done(s->last);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(err, db, "finding the last block of history");

    sqlite3_bind_int64(s->rows, 1, seq);
    sqlite3_bind_int64(s->rows, 2, from_step);
    struct summary block = {0};
    struct store_report row;
    double prev[GLR_MAX_GROUPS];
    size_t prev_groups = 0;
    bool have_prev = false;
    rc = GLR_OK;
    int step_rc;
    while (!rc && (step_rc = sqlite3_step(s->rows)) == SQLITE_ROW) {
        if ((rc = read_report_row(s->rows, &row, err)))
            break;
        bool changed = have_prev &&
                       (row.groups != prev_groups || summary_lrs_differ(prev, row.lrs, row.groups));
        bool seen_before = after_block && !have_prev;
        memcpy(prev, row.lrs, row.groups * sizeof(double));
        prev_groups = row.groups;
        have_prev = true;
        if (seen_before)
            continue;
        summary_add_row(&block, row.step, row.loss, changed);
        if (block.rows == STORE_BLOCK_ROWS) {
            rc = insert_block(db, s->insert, seq, &block, err);
            memset(&block, 0, sizeof(block));
        }
    }
    if (!rc && step_rc != SQLITE_DONE)
        rc = db_fail(err, db, "reading history to summarize");
    done(s->rows);
    return rc;
}

/* Migration 6: summarizes the history already in the database, job by job. */
static int backfill_blocks(sqlite3 *db, char *err)
{
    struct block_stmts s = {0};
    sqlite3_stmt *jobs = NULL;
    int rc = GLR_OK;
    if (sqlite3_prepare_v2(db, writer_sql[W_BLOCK_LAST], -1, &s.last, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, writer_sql[W_BLOCK_ROWS], -1, &s.rows, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, writer_sql[W_BLOCK_INSERT], -1, &s.insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT seq FROM jobs ORDER BY seq", -1, &jobs, NULL) != SQLITE_OK)
        rc = db_fail(err, db, "preparing to summarize history");
    int step_rc = SQLITE_DONE;
    while (!rc && (step_rc = sqlite3_step(jobs)) == SQLITE_ROW)
        rc = build_blocks(db, &s, sqlite3_column_int64(jobs, 0), err);
    if (!rc && step_rc != SQLITE_DONE)
        rc = db_fail(err, db, "listing jobs to summarize");
    sqlite3_finalize(jobs);
    sqlite3_finalize(s.last);
    sqlite3_finalize(s.rows);
    sqlite3_finalize(s.insert);
    return rc;
}

/*
 * Runs a statement of the writer that returns no row; SQLITE_CONSTRAINT_* become
 * GLR_ECONFLICT. A full disk or a failing write (SQLITE_FULL, SQLITE_IOERR) becomes
 * GLR_EBUSY, which clients see as 503 with Retry-After: nothing was stored, and the same
 * request may well succeed once an operator has made room. It also marks the store not
 * ready until a commit succeeds again.
 */
static int step_done(struct store *store, sqlite3_stmt *stmt, const char *what, char *err)
{
    int rc = sqlite3_step(stmt);
    done(stmt);
    if (rc == SQLITE_DONE) {
        if (stmt == store->writer_stmts[W_COMMIT])
            atomic_store(&store->write_failed, false);
        return GLR_OK;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return glr_fail(err, GLR_ECONFLICT, "%s: %s", what, sqlite3_errmsg(store->writer.db));
    if ((rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR) {
        atomic_store(&store->write_failed, true);
        return glr_fail(err, GLR_EBUSY, "database: %s: %s; nothing was stored, try again later",
                        what, sqlite3_errmsg(store->writer.db));
    }
    return db_fail(err, store->writer.db, what);
}

static int write_begin(struct store *store, char *err)
{
    pthread_mutex_lock(&store->write_lock);
    int rc = step_done(store, store->writer_stmts[W_BEGIN], "begin", err);
    if (rc)
        pthread_mutex_unlock(&store->write_lock);
    return rc;
}

/* Commits when rc is GLR_OK, else rolls back; releases the writer; returns the outcome. */
static int write_end(struct store *store, int rc, char *err)
{
    if (rc == GLR_OK)
        rc = step_done(store, store->writer_stmts[W_COMMIT], "commit", err);
    if (rc != GLR_OK && !sqlite3_get_autocommit(store->writer.db))
        step_done(store, store->writer_stmts[W_ROLLBACK], "rollback", NULL);
    pthread_mutex_unlock(&store->write_lock);
    return rc;
}

/* Writes the job_tags rows of a JSON object of strings. */
static int insert_tags(struct store *store, int64_t seq, const char *tags_json, char *err)
{
    sqlite3_stmt *clear = store->writer_stmts[W_TAGS_CLEAR];
    sqlite3_bind_int64(clear, 1, seq);
    int rc = step_done(store, clear, "clearing tags", err);
    if (rc)
        return rc;
    cJSON *tags = cJSON_Parse(tags_json);
    if (!cJSON_IsObject(tags)) {
        cJSON_Delete(tags);
        return glr_fail(err, GLR_EINVAL, "tags must be a JSON object");
    }
    sqlite3_stmt *insert = store->writer_stmts[W_TAG_INSERT];
    const cJSON *tag;
    cJSON_ArrayForEach(tag, tags)
    {
        if (!cJSON_IsString(tag))
            continue;
        sqlite3_bind_int64(insert, 1, seq);
        sqlite3_bind_text(insert, 2, tag->string, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(insert, 3, tag->valuestring, -1, SQLITE_TRANSIENT);
        if ((rc = step_done(store, insert, "inserting a tag", err)))
            break;
    }
    cJSON_Delete(tags);
    return rc;
}

int store_job_insert(struct store *store, struct store_job *job, char *err)
{
    int rc = write_begin(store, err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_JOB_INSERT];
    sqlite3_bind_text(stmt, 1, job->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, job->policy, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, job->initial_lr, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, job->config, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, job->tags, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, job->finished ? "finished" : "running", -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, job->state, -1, SQLITE_STATIC);
    if (job->last_step >= 0)
        sqlite3_bind_int64(stmt, 8, job->last_step);
    else
        sqlite3_bind_null(stmt, 8);
    sqlite3_bind_int64(stmt, 9, job->reports);
    sqlite3_bind_int64(stmt, 10, job->created_ms);
    sqlite3_bind_int64(stmt, 11, job->updated_ms);
    sqlite3_bind_int64(stmt, 12, job->world_size);
    sqlite3_bind_text(stmt, 13, job->aggregate, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 14, job->aggregate_timeout_ms);
    rc = step_done(store, stmt, "inserting the job", err);
    if (rc == GLR_ECONFLICT)
        glr_fail(err, GLR_ECONFLICT, "job %s exists already", job->id);
    if (!rc) {
        job->seq = sqlite3_last_insert_rowid(store->writer.db);
        rc = insert_tags(store, job->seq, job->tags, err);
    }
    return write_end(store, rc, err);
}

int store_job_load(struct store *store, const char *id, struct store_job *out, char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_JOB_LOAD];
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        rc = read_job_row(stmt, out, err);
    else if (rc == SQLITE_DONE)
        rc = glr_fail(err, GLR_ENOTFOUND, "job %.128s does not exist", id);
    else
        rc = db_fail(err, store->readers[r].db, "loading a job");
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_job_patch(struct store *store, int64_t seq, const bool *finished, const char *tags,
                    int64_t updated_ms, char *err)
{
    int rc = write_begin(store, err);
    if (rc)
        return rc;
    if (finished) {
        sqlite3_stmt *stmt = store->writer_stmts[W_JOB_STATUS];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_text(stmt, 2, *finished ? "finished" : "running", -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, updated_ms);
        rc = step_done(store, stmt, "updating the status", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    }
    if (!rc && tags) {
        sqlite3_stmt *stmt = store->writer_stmts[W_JOB_TAGS];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_text(stmt, 2, tags, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, updated_ms);
        rc = step_done(store, stmt, "updating the tags", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
        if (!rc)
            rc = insert_tags(store, seq, tags, err);
    }
    return write_end(store, rc, err);
}

int store_job_delete(struct store *store, int64_t seq, char *err)
{
    int rc = write_begin(store, err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_JOB_DELETE];
    sqlite3_bind_int64(stmt, 1, seq);
    rc = step_done(store, stmt, "deleting the job", err);
    if (!rc && sqlite3_changes(store->writer.db) == 0)
        rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    return write_end(store, rc, err);
}

/* Inserts one rank_losses row; call inside a write transaction. */
static int insert_rank_loss(struct store *store, int64_t seq, int64_t step,
                            const struct store_rank_loss *rl, bool late, char *err)
{
    sqlite3_stmt *stmt = store->writer_stmts[W_RANK_LOSS_INSERT];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, step);
    sqlite3_bind_int64(stmt, 3, rl->rank);
    bind_real(stmt, 4, rl->loss);
    sqlite3_bind_int(stmt, 5, late ? 1 : 0);
    return step_done(store, stmt, "inserting a rank's loss", err);
}

/* Writes one decision inside the open transaction (see struct store_commit). */
static int write_decision(struct store *store, const struct store_commit *c, char *err)
{
    const struct store_report *report = &c->report;
    sqlite3_stmt *stmt = store->writer_stmts[W_REPORT_INSERT];
    unsigned char blob[GLR_MAX_GROUPS * 8];
    sqlite3_bind_int64(stmt, 1, c->seq);
    sqlite3_bind_int64(stmt, 2, report->step);
    sqlite3_bind_int64(stmt, 3, report->rank);
    bind_real(stmt, 4, report->loss);
    bind_real(stmt, 5, report->metric);
    sqlite3_bind_double(stmt, 6, report->lrs[0]);
    if (report->groups > 1) {
        encode_doubles(report->lrs, report->groups, blob);
        sqlite3_bind_blob(stmt, 7, blob, (int)(report->groups * 8), SQLITE_STATIC);
    } else {
        sqlite3_bind_null(stmt, 7);
    }
    sqlite3_bind_text(stmt, 8, glr_event_name(report->event), -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 9, report->time_ms);
    sqlite3_bind_int64(stmt, 10, report->ranks);
    if (isfinite(report->lr_cap))
        sqlite3_bind_double(stmt, 11, report->lr_cap);
    else
        sqlite3_bind_null(stmt, 11);
    int rc = step_done(store, stmt, "inserting the report", err);
    if (rc && sqlite3_extended_errcode(store->writer.db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = glr_fail(err, GLR_EIO, "database: the job is not there any more");
    for (size_t i = 0; !rc && i < c->nrank_losses; i++)
        rc = insert_rank_loss(store, c->seq, report->step, &c->rank_losses[i], false, err);
    if (!rc && c->state) {
        stmt = store->writer_stmts[W_JOB_ADVANCE];
        sqlite3_bind_int64(stmt, 1, c->seq);
        sqlite3_bind_text(stmt, 2, c->state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, c->last_step);
        sqlite3_bind_int64(stmt, 4, c->reports);
        sqlite3_bind_int64(stmt, 5, report->time_ms);
        rc = step_done(store, stmt, "saving the job state", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_EIO, "database: the job is not there any more");
    }
    if (!rc && c->reports % STORE_BLOCK_ROWS == 0) {
        /* A block's worth of rows has come since the last trigger: summarize them. */
        struct block_stmts blocks = {store->writer_stmts[W_BLOCK_LAST],
                                     store->writer_stmts[W_BLOCK_ROWS],
                                     store->writer_stmts[W_BLOCK_INSERT]};
        rc = build_blocks(store->writer.db, &blocks, c->seq, err);
    }
    if (!rc && c->snapshot) {
        stmt = store->writer_stmts[W_SNAPSHOT_INSERT];
        sqlite3_bind_int64(stmt, 1, c->seq);
        sqlite3_bind_int64(stmt, 2, report->step);
        sqlite3_bind_int64(stmt, 3, c->reports);
        sqlite3_bind_text(stmt, 4, c->state, -1, SQLITE_STATIC);
        rc = step_done(store, stmt, "saving a snapshot", err);
    }
    return rc;
}

void store_commit_submit(struct store *store, struct store_commit *commit)
{
    commit->next = NULL;
    commit->status = GLR_OK;
    commit->err[0] = '\0';
    pthread_mutex_lock(&store->queue_lock);
    *store->queue_tail = commit;
    store->queue_tail = &commit->next;
    pthread_cond_signal(&store->queue_wake);
    pthread_mutex_unlock(&store->queue_lock);
}

/* Marks a decision failed, and with it the later decisions of its job. */
static void commit_failed(struct store_commit *c, int status)
{
    c->status = status;
    if (c->failed)
        atomic_store(c->failed, true);
}

/* True when an earlier decision of the same job failed: this one must not be written. */
static bool commit_orphaned(struct store_commit *c)
{
    if (!c->failed || !atomic_load(c->failed))
        return false;
    c->status = glr_fail(c->err, GLR_EIO, "an earlier report of this job could not be stored");
    return true;
}

/*
 * Commits a group in one transaction. When any decision in it fails (a conflict, say),
 * the transaction is rolled back and each decision committed alone, so that one bad
 * decision fails only itself and the ones that came after it in its job.
 */
static void commit_group(struct store *store, struct store_commit *group)
{
    char err[GLR_ERR_MAX] = "";
    pthread_mutex_lock(&store->write_lock);
    bool together = step_done(store, store->writer_stmts[W_BEGIN], "begin", err) == GLR_OK;
    for (struct store_commit *c = group; together && c; c = c->next)
        if (!commit_orphaned(c) && write_decision(store, c, c->err) != GLR_OK)
            together = false;
    if (together)
        together = step_done(store, store->writer_stmts[W_COMMIT], "commit", err) == GLR_OK;
    if (!together) {
        if (!sqlite3_get_autocommit(store->writer.db))
            step_done(store, store->writer_stmts[W_ROLLBACK], "rollback", NULL);
        for (struct store_commit *c = group; c; c = c->next) {
            c->status = GLR_OK;
            if (commit_orphaned(c))
                continue;
            int rc = step_done(store, store->writer_stmts[W_BEGIN], "begin", c->err);
            if (!rc)
                rc = write_decision(store, c, c->err);
            if (!rc)
                rc = step_done(store, store->writer_stmts[W_COMMIT], "commit", c->err);
            if (rc) {
                if (!sqlite3_get_autocommit(store->writer.db))
                    step_done(store, store->writer_stmts[W_ROLLBACK], "rollback", NULL);
                commit_failed(c, rc);
            }
        }
    }
    pthread_mutex_unlock(&store->write_lock);
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * The writer thread: takes everything queued (up to STORE_GROUP_MAX), commits it as one
 * group, then answers each decision. While it commits, the next group queues up, so the
 * busier the service, the larger the groups.
 */
static void *writer_main(void *arg)
{
    struct store *store = arg;
    pthread_mutex_lock(&store->queue_lock);
    for (;;) {
        while (!store->queue_head && !store->stopping)
            pthread_cond_wait(&store->queue_wake, &store->queue_lock);
        if (!store->queue_head)
            break; /* stopping, and nothing left */
        struct store_commit *group = store->queue_head, *last = group;
        size_t size = 1;
        while (last->next && size < STORE_GROUP_MAX) {
            last = last->next;
            size++;
        }
        store->queue_head = last->next;
        if (!store->queue_head)
            store->queue_tail = &store->queue_head;
        last->next = NULL;
        pthread_mutex_unlock(&store->queue_lock);

        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        commit_group(store, group);
        if (store->options.on_group)
            store->options.on_group(store->options.on_group_ctx, seconds_since(&start), size);
        for (struct store_commit *c = group, *next; c; c = next) {
            next = c->next; /* done may free c */
            c->done(c, c->status, c->status ? c->err : NULL);
        }
        pthread_mutex_lock(&store->queue_lock);
    }
    pthread_mutex_unlock(&store->queue_lock);
    return NULL;
}

int store_snapshot_find(struct store *store, int64_t seq, int64_t max_step,
                        struct store_snapshot *out, char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_SNAPSHOT_FIND];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, max_step);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        out->step = sqlite3_column_int64(stmt, 0);
        out->reports = sqlite3_column_int64(stmt, 1);
        out->state = column_strdup(stmt, 2);
        rc = out->state ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        rc =
            glr_fail(err, GLR_ENOTFOUND, "no snapshot at or before step %lld", (long long)max_step);
    } else {
        rc = db_fail(err, store->readers[r].db, "finding a snapshot");
    }
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_rewind_commit(struct store *store, int64_t seq, int64_t to_step, const char *state,
                        int64_t last_step, int64_t reports, int64_t updated_ms, char *err)
{
    int rc = write_begin(store, err);
    if (rc)
        return rc;
    const int truncations[] = {W_HISTORY_TRUNCATE, W_SNAPSHOTS_TRUNCATE, W_RANK_LOSSES_TRUNCATE,
                               W_BLOCKS_TRUNCATE};
    for (size_t i = 0; i < sizeof(truncations) / sizeof(truncations[0]) && !rc; i++) {
        sqlite3_stmt *stmt = store->writer_stmts[truncations[i]];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_int64(stmt, 2, to_step);
        rc = step_done(store, stmt, "forgetting the steps after the rewind", err);
    }
    if (!rc) {
        sqlite3_stmt *stmt = store->writer_stmts[W_JOB_REWIND];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        if (last_step >= 0)
            sqlite3_bind_int64(stmt, 3, last_step);
        else
            sqlite3_bind_null(stmt, 3);
        sqlite3_bind_int64(stmt, 4, reports);
        sqlite3_bind_int64(stmt, 5, updated_ms);
        rc = step_done(store, stmt, "saving the rewound state", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    }
    return write_end(store, rc, err);
}

int store_report_find(struct store *store, int64_t seq, int64_t step, int64_t rank,
                      struct store_report *out, char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_REPORT_FIND];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, step);
    sqlite3_bind_int64(stmt, 3, rank);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        rc = read_report_row(stmt, out, err);
    else if (rc == SQLITE_DONE)
        rc = glr_fail(err, GLR_ENOTFOUND, "step %lld rank %lld was never reported", (long long)step,
                      (long long)rank);
    else
        rc = db_fail(err, store->readers[r].db, "finding a report");
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_report_scan(struct store *store, int64_t seq, int64_t from_step, int64_t from_rank,
                      int64_t to_step, int64_t limit, store_report_fn fn, void *ctx, char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_REPORT_SCAN];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, from_step);
    sqlite3_bind_int64(stmt, 3, from_rank);
    sqlite3_bind_int64(stmt, 4, to_step);
    sqlite3_bind_int64(stmt, 5, limit);
    int rc;
    struct store_report report;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if ((rc = read_report_row(stmt, &report, err)) != GLR_OK)
            break;
        if (!fn(ctx, &report)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc == SQLITE_DONE)
        rc = GLR_OK;
    else if (rc > 0)
        rc = db_fail(err, store->readers[r].db, "reading history");
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_block_scan(struct store *store, int64_t seq, int64_t from_step, int64_t to_step,
                     store_block_fn fn, void *ctx, char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_BLOCK_SCAN];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, from_step);
    sqlite3_bind_int64(stmt, 3, to_step);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct summary b = {
            .first_step = sqlite3_column_int64(stmt, 0),
            .last_step = sqlite3_column_int64(stmt, 1),
            .rows = sqlite3_column_int64(stmt, 2),
            .changes = sqlite3_column_int64(stmt, 3),
            .change_step = sqlite3_column_int64(stmt, 4),
            .have_low = true,
            .low_step = sqlite3_column_int64(stmt, 5),
            .low_loss = column_real(stmt, 6),
            .have_high = sqlite3_column_type(stmt, 7) != SQLITE_NULL,
            .high_step = sqlite3_column_int64(stmt, 7),
            .high_loss = column_real(stmt, 8),
        };
        if (!fn(ctx, &b)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    rc = rc == SQLITE_DONE ? GLR_OK : db_fail(err, store->readers[r].db, "reading history blocks");
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_job_scan(struct store *store, int64_t after_seq, int64_t limit,
                   enum store_status_filter status, const char *tag_key, const char *tag_value,
                   store_job_fn fn, void *ctx, char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_JOB_SCAN];
    sqlite3_bind_int64(stmt, 1, after_seq);
    if (status != STORE_ANY)
        sqlite3_bind_text(stmt, 2, status == STORE_FINISHED ? "finished" : "running", -1,
                          SQLITE_STATIC);
    if (tag_key) {
        sqlite3_bind_text(stmt, 3, tag_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, tag_value ? tag_value : "", -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(stmt, 5, limit);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_job job;
        if ((rc = read_job_row(stmt, &job, err)) != GLR_OK)
            break;
        bool go_on = fn(ctx, &job);
        store_job_clear(&job);
        if (!go_on) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc == SQLITE_DONE)
        rc = GLR_OK;
    else if (rc > 0)
        rc = db_fail(err, store->readers[r].db, "listing jobs");
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_rank_loss_find(struct store *store, int64_t seq, int64_t step, int64_t rank, double *loss,
                         char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_RANK_LOSS_FIND];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, step);
    sqlite3_bind_int64(stmt, 3, rank);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *loss = column_real(stmt, 0);
        rc = GLR_OK;
    } else if (rc == SQLITE_DONE) {
        rc = glr_fail(err, GLR_ENOTFOUND, "rank %lld never reported step %lld", (long long)rank,
                      (long long)step);
    } else {
        rc = db_fail(err, store->readers[r].db, "finding a rank's loss");
    }
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_rank_loss_add_late(struct store *store, int64_t seq, int64_t step, int64_t rank,
                             double loss, char *err)
{
    int rc = write_begin(store, err);
    if (rc)
        return rc;
    struct store_rank_loss rl = {rank, loss};
    rc = insert_rank_loss(store, seq, step, &rl, true, err);
    return write_end(store, rc, err);
}

int store_token_insert(struct store *store, const struct store_token *token, char *err)
{
    int rc = write_begin(store, err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_TOKEN_INSERT];
    sqlite3_bind_text(stmt, 1, token->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, token->role, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 3, token->hash, STORE_TOKEN_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, token->created_ms);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_CONSTRAINT_PRIMARYKEY || step == SQLITE_CONSTRAINT_UNIQUE)
        rc = glr_fail(err, GLR_ECONFLICT, "a token named %s exists already", token->name);
    else if (step != SQLITE_DONE)
        rc = db_fail(err, store->writer.db, "inserting a token");
    done(stmt);
    return write_end(store, rc, err);
}

int store_token_delete(struct store *store, const char *name, char *err)
{
    int rc = write_begin(store, err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_TOKEN_DELETE];
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    rc = step_done(store, stmt, "deleting a token", err);
    if (!rc && sqlite3_changes(store->writer.db) == 0)
        rc = glr_fail(err, GLR_ENOTFOUND, "no token is named %.64s", name);
    return write_end(store, rc, err);
}

int store_token_scan(struct store *store, store_token_fn fn, void *ctx, char *err)
{
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_TOKEN_SCAN];
    int rc = GLR_OK;
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_token token;
        memset(&token, 0, sizeof(token));
        const unsigned char *name = sqlite3_column_text(stmt, 0);
        const unsigned char *role = sqlite3_column_text(stmt, 1);
        const void *hash = sqlite3_column_blob(stmt, 2);
        if (!name || !role || !hash || sqlite3_column_bytes(stmt, 2) != STORE_TOKEN_HASH_SIZE) {
            rc = glr_fail(err, GLR_ECORRUPT, "database: a row of the tokens table is damaged");
            break;
        }
        snprintf(token.name, sizeof(token.name), "%s", (const char *)name);
        snprintf(token.role, sizeof(token.role), "%s", (const char *)role);
        memcpy(token.hash, hash, STORE_TOKEN_HASH_SIZE);
        token.created_ms = sqlite3_column_int64(stmt, 3);
        if (!fn(ctx, &token))
            break;
    }
    if (!rc && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = db_fail(err, store->readers[r].db, "reading the tokens");
    done(stmt);
    reader_give(store, r);
    return rc;
}

int store_check_writable(struct store *store, char *err)
{
    pthread_mutex_lock(&store->write_lock);
    sqlite3 *db = store->writer.db;
    /* A probe must answer quickly: a lock held elsewhere for longer means "not ready". */
    sqlite3_busy_timeout(db, STORE_READY_BUSY_MS);
    int rc = exec(db, "BEGIN IMMEDIATE", "taking the write lock", err);
    char text[32];
    if (!rc)
        rc = pragma_text(db, "PRAGMA user_version", text, sizeof(text), err);
    if (!rc && atoi(text) != store_latest_version())
        rc = glr_fail(err, GLR_ECORRUPT, "database: schema version %d, expected %d", atoi(text),
                      store_latest_version());
    /*
     * Writing the version back dirties the database's first page, which a database opened
     * read-only refuses (SQLITE_READONLY); the rollback then undoes it in memory, so the
     * probe leaves no trace in the file or the WAL.
     */
    if (!rc) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", store_latest_version());
        rc = exec(db, sql, "writing", err);
    }
    /*
     * After a failed write (a full disk, say) only a commit tells whether writes work
     * again: it appends that unchanged page to the WAL, once per probe while failing.
     */
    if (!rc && atomic_load(&store->write_failed)) {
        rc = exec(db, "COMMIT", "committing", err);
        if (!rc)
            atomic_store(&store->write_failed, false);
    }
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    pthread_mutex_unlock(&store->write_lock);
    return rc;
}

int store_job_counts(struct store *store, int64_t *running, int64_t *finished, char *err)
{
    *running = 0;
    *finished = 0;
    int r = reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_JOB_COUNT];
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *status = sqlite3_column_text(stmt, 0);
        int64_t count = sqlite3_column_int64(stmt, 1);
        if (status && strcmp((const char *)status, "finished") == 0)
            *finished += count;
        else
            *running += count;
    }
    rc = rc == SQLITE_DONE ? GLR_OK : db_fail(err, store->readers[r].db, "counting jobs");
    done(stmt);
    reader_give(store, r);
    return rc;
}

/* ---- backup ------------------------------------------------------------------------------ */

/* Flushes a file (or directory) to stable storage. */
static int sync_path(const char *path, int flags, char *err)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return glr_fail(err, GLR_EIO, "backup: opening %s: %s", path, strerror(errno));
    int rc = fsync(fd) == 0 ? GLR_OK
                            : glr_fail(err, GLR_EIO, "backup: fsync %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* The directory part of path ("." for none) into dir. */
static void dir_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

/*
 * Copies every page of src into the new database file at path in one read transaction
 * (a consistent snapshot; WAL lets the daemon write meanwhile), makes the copy a
 * self-contained file (rollback journal mode, no -wal beside it) and checks it.
 */
static int copy_database(sqlite3 *src, const char *path, int64_t *pages, char *err)
{
    sqlite3 *dst = NULL;
    int rc = GLR_OK;
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = glr_fail(err, GLR_EIO, "backup: creating %s: %s", path,
                      dst ? sqlite3_errmsg(dst) : "cannot open");
        goto out;
    }
    sqlite3_backup *backup = sqlite3_backup_init(dst, "main", src, "main");
    if (!backup) {
        rc = glr_fail(err, GLR_EIO, "backup: %s", sqlite3_errmsg(dst));
        goto out;
    }
    /* All pages in one step: copying in pieces would restart whenever the daemon writes. */
    int step;
    for (int waited = 0;; waited += 50) {
        step = sqlite3_backup_step(backup, -1);
        if ((step != SQLITE_BUSY && step != SQLITE_LOCKED) || waited >= STORE_BUSY_TIMEOUT_MS)
            break;
        sqlite3_sleep(50);
    }
    *pages = sqlite3_backup_pagecount(backup);
    sqlite3_backup_finish(backup);
    if (step != SQLITE_DONE) {
        rc = glr_fail(err, GLR_EIO, "backup: copying: %s", sqlite3_errstr(step));
        goto out;
    }
    char mode[16];
    char check[64];
    if ((rc = pragma_text(dst, "PRAGMA journal_mode = DELETE", mode, sizeof(mode), err)) ||
        (rc = pragma_text(dst, "PRAGMA quick_check", check, sizeof(check), err)))
        goto out;
    if (strcmp(check, "ok") != 0)
        rc = glr_fail(err, GLR_ECORRUPT, "backup: the copy fails its check: %s", check);
out:
    sqlite3_close(dst);
    return rc;
}

int store_backup(const char *path, const char *out_path, int64_t *bytes, char *err)
{
    *bytes = 0;
    struct stat db_stat, out_stat;
    if (stat(out_path, &out_stat) == 0 && stat(path, &db_stat) == 0 &&
        db_stat.st_dev == out_stat.st_dev && db_stat.st_ino == out_stat.st_ino)
        return glr_fail(err, GLR_EINVAL, "backup: %s is the database itself", out_path);
    char partial[STORE_PATH_MAX + 16];
    if (strlen(out_path) > STORE_PATH_MAX)
        return glr_fail(err, GLR_EINVAL, "backup: the output path is longer than %d bytes",
                        STORE_PATH_MAX);
    snprintf(partial, sizeof(partial), "%s.partial", out_path);

    sqlite3 *src = NULL;
    int rc = GLR_OK;
    /* Read-write without create: a mistyped path is an error, not a new empty database. */
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = glr_fail(err, GLR_EIO, "backup: database %s: %s", path,
                      src ? sqlite3_errmsg(src) : "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(src, STORE_BUSY_TIMEOUT_MS);
    char count[32];
    if ((rc = exec(src, "PRAGMA query_only = ON", "making the copy read-only", err)) ||
        (rc = pragma_text(src, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs'", count,
                          sizeof(count), err)))
        goto out;
    if (atoi(count) != 1) {
        rc = glr_fail(err, GLR_EINVAL, "backup: %s is not a greedylr database", path);
        goto out;
    }
    unlink(partial);
    int64_t pages = 0;
    if ((rc = copy_database(src, partial, &pages, err)))
        goto out;
    char dir[STORE_PATH_MAX + 1];
    dir_of(out_path, dir, sizeof(dir));
    /* Durable before it takes the name: a crash leaves the old copy or the whole new one. */
    if ((rc = sync_path(partial, O_RDONLY, err)))
        goto out;
    if (rename(partial, out_path) != 0) {
        rc = glr_fail(err, GLR_EIO, "backup: renaming to %s: %s", out_path, strerror(errno));
        goto out;
    }
    if ((rc = sync_path(dir, O_RDONLY | O_DIRECTORY, err)))
        goto out;
    if (stat(out_path, &out_stat) == 0)
        *bytes = (int64_t)out_stat.st_size;
out:
    if (rc)
        unlink(partial);
    sqlite3_close(src);
    return rc;
}
