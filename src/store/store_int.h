/*
 * The store's internals, shared by the files of src/store/ and by no other folder: the
 * store and its connections, the statement tables, the locks and the order they are taken
 * in, and the helpers the files call one another through. store.h is the contract.
 */
#ifndef GLR_STORE_INT_H
#define GLR_STORE_INT_H

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "base/mutex.h"
#include "base/summary.h"
#include "store/store.h"

/*
 * Locks, and the order they are taken in (base/mutex.h asserts it in debug builds).
 *
 * The store has four mutexes. write_lock may be held while checkpoint_lock is taken (the
 * WAL hook runs inside a commit of the writer connection); that is the only nesting.
 * queue_lock and pool_lock are leaves: no other store lock is taken while either is
 * held. Their levels continue the service's (svc_int.h: tune 1, job 2, waits 3, map 4):
 *
 *     write_lock (5) -> checkpoint_lock (6);   queue_lock (7);   pool_lock (8).
 *
 * The service calls the store's write path (store_commit_submit, store_job_insert, ...)
 * with its job lock held: the service's locks come before every store lock. The store
 * therefore never calls into the service with a store lock held. Its callbacks are: the
 * commit's done and options.on_group, which the writer thread calls with no lock held
 * (store_writer_main asserts it); and the functions given to the scans, which run with a
 * reader connection taken from the pool but no mutex held (a scan's function must not
 * wait for another reader connection: with every one taken it would wait forever).
 */
enum {
    STORE_LOCK_WRITE = 5,
    STORE_LOCK_CHECKPOINT = 6,
    STORE_LOCK_QUEUE = 7,
    STORE_LOCK_POOL = 8,
};

/* Statements of the writer connection (their text: store_writer_sql, store_sql.c). */
enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_JOB_INSERT,
    W_TAG_INSERT,
    W_TAGS_CLEAR,
    W_JOB_STATUS,
    W_JOB_OUTCOME,
    W_JOB_TAGS,
    W_JOB_COUNT,
    W_JOB_DELETE,
    W_REPORT_INSERT,
    W_JOB_ADVANCE,
    W_SNAPSHOT_INSERT,
    W_HISTORY_BATCH_FLOOR,
    W_HISTORY_TRUNCATE,
    W_SNAPSHOTS_TRUNCATE,
    W_REWIND_LOG,
    W_JOB_REWIND,
    W_RANK_LOSS_INSERT,
    W_RANK_LOSSES_TRUNCATE,
    W_TOKEN_INSERT,
    W_TOKEN_DELETE,
    W_MODEL_INSERT,
    W_BLOCK_LAST,
    W_BLOCK_ROWS,
    W_BLOCK_INSERT,
    W_BLOCKS_TRUNCATE,
    W_COUNT
};

/* Statements of each reader connection (their text: store_reader_sql, store_sql.c). */
enum {
    R_JOB_LOAD,
    R_REPORT_FIND,
    R_REPORT_SCAN,
    R_JOB_SCAN,
    R_FAMILY_JOB_SCAN,
    R_FAMILY_SCAN,
    R_LAST_LOSS,
    R_BEST_LOSS,
    R_HISTORY_STEPS,
    R_REWIND_SCAN,
    R_SNAPSHOT_FIND,
    R_RANK_LOSS_FIND,
    R_RANK_LOSS_SCAN,
    R_TOKEN_SCAN,
    R_MODEL_LATEST,
    R_JOB_COUNT,
    R_BLOCK_SCAN,
    R_COUNT
};

/*
 * Statements run once, by sqlite3_exec() or prepared for a single use: pragmas, the
 * migration's own transaction, the backfill's job list and the backup's checks. Those
 * ending in "= " take a number appended by the caller.
 */
enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_FOREIGN_KEYS,
    S_JOURNAL_WAL,
    S_SYNC_FULL,
    S_SYNC_NORMAL,
    S_QUERY_ONLY,
    S_CACHE_SIZE,
    S_USER_VERSION,
    S_SET_USER_VERSION,
    S_JOB_SEQS,
    S_IS_GREEDYLR,
    S_JOURNAL_DELETE,
    S_QUICK_CHECK,
    S_QUICK_CHECK_FIRST,
    S_PAGE_SIZE,
    S_COUNT
};

/* store_sql.c */
extern const char *const store_writer_sql[W_COUNT];
extern const char *const store_reader_sql[R_COUNT];
extern const char *const store_other_sql[S_COUNT];

/* One SQLite connection and its prepared statements (stmts points into struct store). */
struct connection {
    sqlite3 *db;
    sqlite3_stmt **stmts;
};

/*
 * The store. Fields set by store_open() before any thread starts and read-only after it
 * (options, the *_started flags, nreaders) need no lock.
 */
struct store {
    /* Guards writer and writer_stmts: one transaction at a time, from any thread. */
    struct glr_mutex write_lock;
    struct connection writer;            /* write_lock */
    sqlite3_stmt *writer_stmts[W_COUNT]; /* write_lock */
    /*
     * The last write failed for want of room or of a working disk, and none has succeeded
     * since: the readiness probe then tries a real commit (see store_check_writable).
     * Atomic, and written only with write_lock held.
     */
    atomic_bool write_failed;
    /*
     * Rows in the jobs table, for options.max_jobs: counted by the first insert that needs
     * it, then kept by every insert and delete that commits; -1 until then. write_lock.
     */
    int64_t jobs_stored;
    /*
     * The last write failed for want of room (SQLITE_FULL, or ENOSPC, EDQUOT or EFBIG
     * beneath an I/O error): before the next commit the WAL is copied into the database
     * and emptied (store_wal_empty), so that the room an operator makes goes to the
     * database first, not to a WAL that would take it all again. Atomic, and written
     * only with write_lock held.
     */
    atomic_bool space_failed;
    int page_size; /* set by store_open: the database's page size, in bytes */
    /* write_lock: bytes free on the file system as the last write began; -1: not known. */
    int64_t room;

    /*
     * A fault after which the store writes nothing more (store_fault.c): its WAL file
     * deleted or replaced under it, or its database found damaged. Set once. faulted is
     * read without a lock; the rest is written once, under fault_lock (a leaf lock).
     */
    atomic_bool faulted;
    struct glr_mutex fault_lock;
    int fault_status;               /* fault_lock: GLR_EIO or GLR_ECORRUPT */
    char fault_detail[GLR_ERR_MAX]; /* fault_lock: what happened, for logs and answers */
    /*
     * The WAL file of a store that serves, as store_open() found it: the same path must
     * name the same file for as long as the store is open. Set by store_open; wal_ino 0
     * means no check.
     */
    const char *wal_path; /* sqlite3_filename_wal() of the writer's: lives as long */
    dev_t wal_dev;
    ino_t wal_ino;

    /* The checkpointer thread's own connection (store_wal.c); no other thread uses it. */
    struct connection checkpointer;
    struct glr_mutex checkpoint_lock;
    pthread_cond_t checkpoint_wake; /* CLOCK_MONOTONIC; waited on with checkpoint_lock */
    bool checkpoint_due;            /* checkpoint_lock */
    bool checkpoint_stop;           /* checkpoint_lock */
    bool checkpoint_empty;          /* checkpoint_lock: the next one empties the WAL */
    uint64_t wal_commits;           /* checkpoint_lock: commits so far */
    bool wal_dirty;                 /* checkpoint_lock: commits since the WAL was emptied */
    bool checkpointer_started;      /* set by store_open */
    bool fault_saved; /* the checkpointer's own: the WAL was copied in after a fault */
    pthread_t checkpointer_thread;

    /* Decisions waiting for the writer thread, oldest first. */
    struct glr_mutex queue_lock;
    pthread_cond_t queue_wake;                     /* waited on with queue_lock */
    struct store_commit *queue_head, **queue_tail; /* queue_lock */
    bool stopping;                                 /* queue_lock */
    bool writer_started;                           /* set by store_open */
    pthread_t writer_thread;
    struct store_options options; /* set by store_open */
    int owner_fd; /* the lock file of a store that serves (store_owner.c); -1: none */

    /*
     * The reader pool: reader_busy says which connections are taken. A taken connection
     * and its statements belong to the thread that took it until it gives it back, and
     * are used without any lock.
     */
    struct glr_mutex pool_lock;
    pthread_cond_t pool_free;        /* waited on with pool_lock */
    bool reader_busy[STORE_READERS]; /* pool_lock */
    int nreaders;                    /* set by store_open: connections opened */
    struct connection readers[STORE_READERS];
    sqlite3_stmt *reader_stmts[STORE_READERS][R_COUNT];
};

/* store.c: connections, the reader pool, statement helpers. */

/* Fills err with SQLite's message for db and returns GLR_EIO. */
int store_db_fail(char *err, sqlite3 *db, const char *what);
/* Runs one SQL text that returns no rows we need. Returns GLR_OK or GLR_EIO. */
int store_exec(sqlite3 *db, const char *sql, const char *what, char *err);
/* Runs a statement that returns one value, and copies it as text into out. */
int store_pragma_text(sqlite3 *db, const char *sql, char *out, size_t out_size, char *err);
/* Runs a statement that returns one integer (e.g. PRAGMA user_version) into *out. */
int store_pragma_int(sqlite3 *db, const char *sql, int64_t *out, char *err);
/* What a connection is for, which decides how store_connection_open() opens it. */
enum store_role { STORE_ROLE_WRITER, STORE_ROLE_READER, STORE_ROLE_READ_ONLY };
/*
 * Opens a connection to path with stmts as its statement array (NULL for none). The writer
 * creates the database if needed and puts it in WAL mode; a reader is made query-only;
 * STORE_ROLE_READ_ONLY is a query-only connection that takes the writer's place in a
 * read-only store, and a missing file is GLR_ENOTFOUND. On failure conn->db may still need closing
 * (store_close does).
 */
int store_connection_open(const char *path, struct connection *conn, sqlite3_stmt **stmts,
                          enum store_role role, enum store_sync sync, char *err);
/* Takes a free reader connection (its index), waiting while all are taken. */
int store_reader_take(struct store *store);
/* Gives back the reader connection i that store_reader_take() gave. */
void store_reader_give(struct store *store, int i);
/* Resets a statement and clears its bindings, for its next use. */
void store_stmt_done(sqlite3_stmt *stmt);
/*
 * Ends a scan of stmt on reader connection r: rc is the last sqlite3_step() result
 * (SQLITE_DONE: the scan ended or its function stopped it; another SQLite code: a failure
 * named by what) or a status the scan already failed with. Resets stmt, gives the
 * connection back and returns GLR_OK or the failure.
 */
int store_scan_end(struct store *store, int r, sqlite3_stmt *stmt, int rc, const char *what,
                   char *err);
/* Binds the range of a scan in (step, rank) order: ?1 job, ?2 ?3 from, ?4 to, ?5 limit. */
void store_bind_range(sqlite3_stmt *stmt, int64_t seq, int64_t from_step, int64_t from_rank,
                      int64_t to_step, int64_t limit);
/*
 * Binds a double, NaN as NULL (SQLite has no NaN: it would store NULL anyway). Inline,
 * as the next one: they run for every value of every history row a scan reads.
 */
static inline void store_bind_real(sqlite3_stmt *stmt, int index, double v)
{
    if (v != v)
        sqlite3_bind_null(stmt, index);
    else
        sqlite3_bind_double(stmt, index, v);
}

/* Reads a double, NULL as NaN. */
static inline double store_column_real(sqlite3_stmt *stmt, int index)
{
    if (sqlite3_column_type(stmt, index) == SQLITE_NULL)
        return (double)NAN;
    return sqlite3_column_double(stmt, index);
}
/* A malloc'd copy of a text column ("" for NULL); NULL when out of memory. */
char *store_column_strdup(sqlite3_stmt *stmt, int index);

/* store_commit.c: the write path. */

/*
 * Runs a statement of the writer that returns no row (write_lock held); constraint
 * failures become GLR_ECONFLICT, a full disk or an I/O error GLR_EBUSY.
 */
int store_step_done(struct store *store, sqlite3_stmt *stmt, const char *what, char *err);
/* Takes write_lock and begins a transaction; on failure the lock is released. */
int store_write_begin(struct store *store, char *err);
/*
 * Commits when rc is GLR_OK, else rolls back, and keeps write_lock, for a caller that
 * updates what it keeps of the database in memory by the outcome; returns the outcome.
 */
int store_write_finish(struct store *store, int rc, char *err);
/* store_write_finish(), then releases write_lock. */
int store_write_end(struct store *store, int rc, char *err);
/* The writer thread's body (see store_commit.c); store_close() also runs it to drain. */
void *store_writer_main(void *arg);

/* store_wal.c: the checkpointer. */

/*
 * Opens the checkpointer's connection, starts its thread and hooks the writer's commits
 * to it. Returns GLR_OK, GLR_EIO or GLR_ENOMEM.
 */
int store_wal_start(struct store *store, const char *path, char *err);
/* Stops the checkpointer thread (if started) and closes its connection. */
void store_wal_stop(struct store *store);
/*
 * After a write failed for want of room (space_failed), copies the WAL into the database
 * through db and empties it (a truncating checkpoint), with write_lock held and outside a
 * transaction, so that no commit takes the room first. Returns GLR_OK (nothing to do,
 * done, or readers in the way: the commit may still find room), or GLR_EBUSY when there
 * is no room for it either.
 */
int store_wal_empty(struct store *store, sqlite3 *db, char *err);
/* store_commit.c: a write found no room; the WAL is to be emptied (write_lock held). */
void store_space_lacking(struct store *store);
/* Asks the checkpointer to empty the WAL now (a write failed for want of room). */
void store_wal_wake_empty(struct store *store);

/* store_fault.c: the file's health. */

/*
 * Records a fault that ends writing (the first one only; later ones are dropped), logs it
 * once as an error and wakes the checkpointer to copy what the WAL holds into the
 * database file. status is GLR_EIO or GLR_ECORRUPT; fmt says what happened. Takes
 * fault_lock, then checkpoint_lock: call it with neither held.
 */
void store_fault_set(struct store *store, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * GLR_OK while the store has no fault; else GLR_EBUSY with the fault in err: what every
 * write and the readiness probe answer from then on.
 */
int store_fault_get(struct store *store, char *err);
/*
 * Checks that the WAL file is still the one store_open() found (a stat of its path).
 * When it is gone or another, records the fault and returns what store_fault_get() does.
 */
int store_wal_check(struct store *store, char *err);
/* Records the WAL file's identity (store_open, once every connection is open). */
int store_wal_identify(struct store *store, char *err);
/*
 * Like store_db_fail() for a statement of the store's on db, and when SQLite found the
 * database damaged (SQLITE_CORRUPT, SQLITE_NOTADB), records the fault and returns
 * GLR_ECORRUPT.
 */
int store_fail(struct store *store, sqlite3 *db, char *err, const char *what);
/* True when rc, from a statement or checkpoint on db, says the disk has no room. */
bool store_lacks_space(sqlite3 *db, int rc);
/* Bytes that may still be written on the database's file system; -1: not known. */
int64_t store_free_bytes(struct store *store);
/*
 * Measures the room on the file system into store->room, before a write (write_lock
 * held). GLR_OK while at least options.disk_reserve bytes are free; else GLR_EBUSY saying
 * so, and the WAL is to be emptied as after a write that found no room.
 */
int store_room_check(struct store *store, char *err);
/* Refuses an existing file of 0 bytes (GLR_ECORRUPT): SQLite would take it as new. */
int store_check_not_empty(const char *path, char *err);
/*
 * Runs PRAGMA quick_check on the writer connection for at most STORE_CHECK_MS (then logs
 * that it stopped unfinished). Returns GLR_OK, or GLR_ECORRUPT naming path and the first
 * problem.
 */
int store_check_file(struct store *store, const char *path, char *err);

/* store_migrate.c */

/*
 * Brings the schema of db up to date in one transaction (summarizing history into blocks
 * when it brings them), or refuses a database newer than this build with GLR_ECORRUPT.
 */
int store_migrate(sqlite3 *db, const char *path, char *err);

/* store_blocks.c */

/* The statements store_build_blocks() runs: W_BLOCK_LAST, W_BLOCK_ROWS and W_BLOCK_INSERT. */
struct store_block_stmts {
    sqlite3_stmt *last, *rows, *insert;
};
/*
 * Summarizes the rows of job seq that follow its last block into blocks of
 * STORE_BLOCK_ROWS rows, inside the caller's write transaction on db.
 */
int store_build_blocks(sqlite3 *db, const struct store_block_stmts *s, int64_t seq, char *err);

/* store_history.c */

/* Little-endian doubles (out holds n * 8 bytes), so that a database moves between machines. */
void store_encode_doubles(const double *values, size_t n, unsigned char *out);
/* Reads a row of REPORT_COLUMNS into *r. Returns GLR_OK or GLR_ECORRUPT. */
int store_read_report_row(sqlite3_stmt *stmt, struct store_report *r, char *err);
/* Inserts one rank_losses row (write_lock held, inside a transaction). */
int store_insert_rank_loss(struct store *store, int64_t seq, int64_t step,
                           const struct store_rank_loss *rl, bool late, char *err);

/* store_owner.c */
/* What the lock file of a database is named: the database's path and this. */
#define STORE_OWNER_SUFFIX "-lock"
/*
 * Takes the exclusive lock of a store that serves the database at path, for as long as
 * it is open. Returns GLR_OK; GLR_EBUSY when another process holds it (err names it); or
 * GLR_EIO/GLR_EINVAL.
 */
int store_owner_take(struct store *store, const char *path, char *err);
/* Lets the lock go; nothing when none is held. */
void store_owner_give(struct store *store);

#endif
