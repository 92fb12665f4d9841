/*
 * The SQLite store (see store.h): opening and closing it, its connections and the pool of
 * readers, the locks, and the small helpers every statement goes through. The statements
 * are in store_sql.c; store_int.h maps the other files.
 */
#include "store/store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "store/migrations.h"
#include "store/store_int.h"

/*
 * The writer's page cache, in KiB. Reports of many jobs touch as many history and job
 * pages; SQLite's default (2 MiB) sent the writer to the file for them on every group.
 */
#define STORE_WRITER_CACHE_KIB 32768
/* Reader connections of a store opened for a tool: it reads from one thread. */
#define STORE_TOOL_READERS 1

/* ---- statement helpers ---------------------------------------------------------------- */

int store_db_fail(char *err, sqlite3 *db, const char *what)
{
    return glr_fail(err, GLR_EIO, "database: %s: %s", what, db ? sqlite3_errmsg(db) : "?");
}

int store_exec(sqlite3 *db, const char *sql, const char *what, char *err)
{
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK) {
        glr_fail(err, GLR_EIO, "database: %s: %s", what, message ? message : "?");
        sqlite3_free(message);
        return GLR_EIO;
    }
    return GLR_OK;
}

int store_pragma_text(sqlite3 *db, const char *sql, char *out, size_t out_size, char *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return store_db_fail(err, db, sql);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        return store_db_fail(err, db, sql);
    }
    const unsigned char *text = sqlite3_column_text(stmt, 0);
    snprintf(out, out_size, "%s", text ? (const char *)text : "");
    sqlite3_finalize(stmt);
    return GLR_OK;
}

int store_pragma_int(sqlite3 *db, const char *sql, int64_t *out, char *err)
{
    char text[32];
    int rc = store_pragma_text(db, sql, text, sizeof(text), err);
    *out = rc ? 0 : strtoll(text, NULL, 10);
    return rc;
}

void store_stmt_done(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

int store_scan_end(struct store *store, int r, sqlite3_stmt *stmt, int rc, const char *what,
                   char *err)
{
    /* SQLite's codes are positive, the store's statuses GLR_OK or negative. */
    if (rc == SQLITE_DONE)
        rc = GLR_OK;
    else if (rc > 0)
        rc = store_fail(store, store->readers[r].db, err, what);
    store_stmt_done(stmt);
    store_reader_give(store, r);
    return rc;
}

void store_bind_range(sqlite3_stmt *stmt, int64_t seq, int64_t from_step, int64_t from_rank,
                      int64_t to_step, int64_t limit)
{
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, from_step);
    sqlite3_bind_int64(stmt, 3, from_rank);
    sqlite3_bind_int64(stmt, 4, to_step);
    sqlite3_bind_int64(stmt, 5, limit);
}

char *store_column_strdup(sqlite3_stmt *stmt, int index)
{
    const unsigned char *text = sqlite3_column_text(stmt, index);
    return strdup(text ? (const char *)text : "");
}

/* ---- the reader pool ------------------------------------------------------------------ */

int store_reader_take(struct store *store)
{
    glr_mutex_lock(&store->pool_lock);
    for (;;) {
        for (int i = 0; i < store->nreaders; i++) {
            if (!store->reader_busy[i]) {
                store->reader_busy[i] = true;
                glr_mutex_unlock(&store->pool_lock);
                return i;
            }
        }
        glr_mutex_wait(&store->pool_lock, &store->pool_free);
    }
}

void store_reader_give(struct store *store, int i)
{
    glr_mutex_lock(&store->pool_lock);
    store->reader_busy[i] = false;
    pthread_cond_signal(&store->pool_free);
    glr_mutex_unlock(&store->pool_lock);
}

/* ---- connections ---------------------------------------------------------------------- */

int store_connection_open(const char *path, struct connection *conn, sqlite3_stmt **stmts,
                          enum store_role role, enum store_sync sync, char *err)
{
    conn->stmts = stmts;
    /*
     * Read-only is query_only on a connection opened for writing where the file allows it
     * (SQLite falls back to reading only where it does not): SQLITE_OPEN_READONLY would
     * leave the -wal and -shm files behind, since only a writable connection removes them
     * when it closes last.
     */
    int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READWRITE;
    if (role == STORE_ROLE_WRITER)
        flags |= SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &conn->db, flags, NULL) != SQLITE_OK) {
        if (role == STORE_ROLE_READ_ONLY && conn->db && sqlite3_system_errno(conn->db) == ENOENT)
            return glr_fail(err, GLR_ENOTFOUND, "database %s does not exist", path);
        return glr_fail(err, GLR_EIO, "database %s: %s", path,
                        conn->db ? sqlite3_errmsg(conn->db) : "cannot open");
    }
    sqlite3_extended_result_codes(conn->db, 1);
    sqlite3_busy_timeout(conn->db, STORE_BUSY_TIMEOUT_MS);
    int rc = store_exec(conn->db, store_other_sql[S_FOREIGN_KEYS], "enabling foreign keys", err);
    if (rc)
        return rc;
    if (role != STORE_ROLE_WRITER)
        return store_exec(conn->db, store_other_sql[S_QUERY_ONLY], "making a reader", err);
    char mode[16];
    if ((rc = store_pragma_text(conn->db, store_other_sql[S_JOURNAL_WAL], mode, sizeof(mode), err)))
        return rc;
    if (strcmp(mode, "wal") != 0)
        return glr_fail(err, GLR_EIO,
                        "database %s: WAL mode did not take (journal_mode is %s); "
                        "is it on a file system without shared memory?",
                        path, mode);
    const char *pragma = store_other_sql[sync == STORE_SYNC_FULL ? S_SYNC_FULL : S_SYNC_NORMAL];
    return store_exec(conn->db, pragma, "setting synchronous", err);
}

static int prepare_all(struct connection *conn, const char *const *sql, int count, char *err)
{
    for (int i = 0; i < count; i++)
        if (sqlite3_prepare_v3(conn->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &conn->stmts[i],
                               NULL) != SQLITE_OK)
            return store_db_fail(err, conn->db, sql[i]);
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

/* A read-only store reads only the schema this build knows: it cannot migrate. */
static int check_version(sqlite3 *db, const char *path, char *err)
{
    int64_t version;
    int rc = store_pragma_int(db, store_other_sql[S_USER_VERSION], &version, err);
    if (rc)
        return rc;
    int latest = store_latest_version();
    if (version > latest)
        return glr_fail(err, GLR_ECORRUPT,
                        "database %s has schema version %lld, newer than this greedylr knows "
                        "(%d): use a newer greedylrd",
                        path, (long long)version, latest);
    if (version < latest)
        return glr_fail(err, GLR_ECORRUPT,
                        "database %s has schema version %lld, older than this greedylr's (%d): "
                        "start greedylrd on it once to migrate it",
                        path, (long long)version, latest);
    return GLR_OK;
}

/* Opens the writer connection (read-only when asked), migrated and with its statements. */
static int open_writer(struct store *store, const char *path, char *err)
{
    bool read_only = store->options.read_only;
    int rc = store_connection_open(path, &store->writer, store->writer_stmts,
                                   read_only ? STORE_ROLE_READ_ONLY : STORE_ROLE_WRITER,
                                   store->options.sync, err);
    int code = rc && store->writer.db ? sqlite3_errcode(store->writer.db) & 0xff : SQLITE_OK;
    if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
        rc = glr_fail(err, GLR_ECORRUPT, "database %s is damaged: %s", path,
                      sqlite3_errmsg(store->writer.db));
    /* A store that serves checks the file first: it would otherwise write into damage. */
    if (!rc && !store->options.without_threads && !store->options.skip_check)
        rc = store_check_file(store, path, err);
    if (!rc)
        rc = read_only ? check_version(store->writer.db, path, err)
                       : store_migrate(store->writer.db, path, err);
    if (!rc)
        rc = prepare_all(&store->writer, store_writer_sql, W_COUNT, err);
    int64_t page_size = 0;
    if (!rc)
        rc = store_pragma_int(store->writer.db, store_other_sql[S_PAGE_SIZE], &page_size, err);
    store->page_size = (int)page_size;
    if (!rc && !read_only) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "%s%d", store_other_sql[S_CACHE_SIZE],
                 STORE_WRITER_CACHE_KIB);
        rc = store_exec(store->writer.db, pragma, "sizing the writer's cache", err);
    }
    return rc;
}

int store_latest_version(void)
{
    return (int)store_migration_count;
}

int store_schema_version(struct store *store)
{
    int64_t version;
    glr_mutex_lock(&store->write_lock);
    int rc = store_pragma_int(store->writer.db, store_other_sql[S_USER_VERSION], &version, NULL);
    glr_mutex_unlock(&store->write_lock);
    return rc ? -1 : (int)version;
}

int store_open(const char *path, const struct store_options *options, struct store **out, char *err)
{
    *out = NULL;
    struct store *store = calloc(1, sizeof(*store));
    if (!store)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    /* Until a write succeeds, the readiness probe commits (store_check_writable). */
    atomic_init(&store->write_failed, true);
    atomic_init(&store->space_failed, false);
    store->room = -1;
    atomic_init(&store->faulted, false);
    glr_mutex_init(&store->fault_lock, 0); /* a leaf: held for a copy, never with another */
    store->jobs_stored = -1;
    if (options)
        store->options = *options;
    if (store->options.read_only)
        store->options.without_threads = true;
    bool threads = !store->options.without_threads;
    glr_mutex_init(&store->write_lock, STORE_LOCK_WRITE);
    glr_mutex_init(&store->pool_lock, STORE_LOCK_POOL);
    pthread_cond_init(&store->pool_free, NULL);
    glr_mutex_init(&store->queue_lock, STORE_LOCK_QUEUE);
    pthread_cond_init(&store->queue_wake, NULL);
    glr_mutex_init(&store->checkpoint_lock, STORE_LOCK_CHECKPOINT);
    /* The checkpointer's quiet spell is a deadline: on the monotonic clock. */
    glr_cond_init_monotonic(&store->checkpoint_wake);
    store->queue_tail = &store->queue_head;
    store->owner_fd = -1;

    /* A store that serves owns its database: before anything touches it (store_owner.c). */
    int rc = threads ? store_owner_take(store, path, err) : GLR_OK;
    if (!rc)
        rc = store_check_not_empty(path, err);
    if (!rc)
        rc = open_writer(store, path, err);
    if (!rc && threads)
        rc = store_wal_start(store, path, err);
    enum store_role role = store->options.read_only ? STORE_ROLE_READ_ONLY : STORE_ROLE_READER;
    int readers = threads ? STORE_READERS : STORE_TOOL_READERS;
    for (int i = 0; !rc && i < readers; i++) {
        rc = store_connection_open(path, &store->readers[i], store->reader_stmts[i], role,
                                   store->options.sync, err);
        if (!rc)
            rc = prepare_all(&store->readers[i], store_reader_sql, R_COUNT, err);
        store->nreaders = i + 1;
    }
    /* Every connection has the WAL open by now: the file the store must keep writing. */
    if (!rc && threads)
        rc = store_wal_identify(store, err);
    if (!rc && threads) {
        if (pthread_create(&store->writer_thread, NULL, store_writer_main, store) == 0)
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

void store_close(struct store *store)
{
    if (!store)
        return;
    /* The writer empties the queue before it stops: every decision gets its answer. */
    glr_mutex_lock(&store->queue_lock);
    store->stopping = true;
    pthread_cond_signal(&store->queue_wake);
    bool queued = store->queue_head != NULL;
    glr_mutex_unlock(&store->queue_lock);
    if (store->writer_started)
        pthread_join(store->writer_thread, NULL);
    else if (queued)
        store_writer_main(store); /* submitted against the contract: still answer them */
    store_wal_stop(store);
    for (int i = 0; i < store->nreaders; i++)
        close_connection(&store->readers[i], R_COUNT);
    /* The last connection to close checkpoints the WAL into the database file. */
    close_connection(&store->writer, W_COUNT);
    glr_mutex_destroy(&store->write_lock);
    glr_mutex_destroy(&store->pool_lock);
    pthread_cond_destroy(&store->pool_free);
    glr_mutex_destroy(&store->queue_lock);
    pthread_cond_destroy(&store->queue_wake);
    glr_mutex_destroy(&store->checkpoint_lock);
    pthread_cond_destroy(&store->checkpoint_wake);
    glr_mutex_destroy(&store->fault_lock);
    store_owner_give(store); /* last: the database is closed and checkpointed by now */
    free(store);
}
