/*
 * The health of the database file: faults after which the store writes nothing more (its
 * WAL file deleted or replaced, its pages found damaged), and the checks made when it is
 * opened (an empty file, PRAGMA quick_check). A store with a fault still reads.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/status.h"
#include "store/store_int.h"

/* SQLite's virtual machine instructions between two looks at the check's deadline. */
#define STORE_CHECK_STEPS 10000

void store_fault_set(struct store *store, int status, const char *fmt, ...)
{
    glr_mutex_lock(&store->fault_lock);
    bool first = store->fault_status == GLR_OK;
    if (first) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(store->fault_detail, sizeof(store->fault_detail), fmt, ap);
        va_end(ap);
        store->fault_status = status;
        atomic_store(&store->faulted, true);
    }
    glr_mutex_unlock(&store->fault_lock);
    if (!first)
        return;
    log_error("%s; reads go on", store->fault_detail);
    /*
     * What was committed before the fault was found is still in the WAL the connections
     * hold open: the checkpointer copies it into the database file, where it outlives
     * the process.
     */
    if (store->checkpointer_started) {
        glr_mutex_lock(&store->checkpoint_lock);
        store->checkpoint_due = true;
        pthread_cond_signal(&store->checkpoint_wake);
        glr_mutex_unlock(&store->checkpoint_lock);
    }
}

int store_fault_get(struct store *store, char *err)
{
    if (!atomic_load(&store->faulted))
        return GLR_OK;
    glr_mutex_lock(&store->fault_lock);
    glr_fail(err, GLR_EBUSY, "%s", store->fault_detail);
    glr_mutex_unlock(&store->fault_lock);
    return GLR_EBUSY;
}

int store_wal_identify(struct store *store, char *err)
{
    const char *db = sqlite3_db_filename(store->writer.db, "main");
    store->wal_path = db ? sqlite3_filename_wal(db) : NULL;
    struct stat st;
    if (!store->wal_path || stat(store->wal_path, &st) != 0)
        return glr_fail(err, GLR_EIO, "database: cannot find its WAL file %s: %s",
                        store->wal_path ? store->wal_path : "?", strerror(errno));
    store->wal_dev = st.st_dev;
    store->wal_ino = st.st_ino;
    return GLR_OK;
}

int store_wal_check(struct store *store, char *err)
{
    if (atomic_load(&store->faulted))
        return store_fault_get(store, err);
    if (!store->wal_ino)
        return GLR_OK;
    struct stat st;
    bool gone = false;
    if (stat(store->wal_path, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            return GLR_OK; /* a stat that says nothing either way */
        gone = true;
    } else if (st.st_dev == store->wal_dev && st.st_ino == store->wal_ino) {
        return GLR_OK;
    }
    /*
     * SQLite goes on writing to the file it holds open, which nothing will read after
     * the process ends: acknowledging a report written there would be a lie.
     */
    store_fault_set(store, GLR_EIO,
                    "database: its WAL file %s was %s while the daemon ran: nothing more is "
                    "stored, as it could not be kept (restart the daemon)",
                    store->wal_path, gone ? "deleted" : "replaced");
    return store_fault_get(store, err);
}

int store_fail(struct store *store, sqlite3 *db, char *err, const char *what)
{
    int code = sqlite3_errcode(db) & 0xff;
    if (code != SQLITE_CORRUPT && code != SQLITE_NOTADB)
        return store_db_fail(err, db, what);
    store_fault_set(store, GLR_ECORRUPT,
                    "database: the file is damaged (%s, found %s): nothing more is stored "
                    "(restore it from a backup)",
                    sqlite3_errmsg(db), what);
    return glr_fail(err, GLR_ECORRUPT, "database: %s: %s", what, sqlite3_errmsg(db));
}

bool store_lacks_space(sqlite3 *db, int rc)
{
    if ((rc & 0xff) == SQLITE_FULL)
        return true;
    if ((rc & 0xff) != SQLITE_IOERR)
        return false;
    /* SQLite says SQLITE_FULL for ENOSPC only; a quota or a file size limit is the same. */
    int e = sqlite3_system_errno(db);
    return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

int64_t store_free_bytes(struct store *store)
{
    /* The lock file lies beside the database: on its file system, and always open. */
    struct statvfs st;
    if (store->owner_fd < 0 || fstatvfs(store->owner_fd, &st) != 0)
        return -1;
    return (int64_t)st.f_bavail * (int64_t)st.f_frsize;
}

int store_room_check(struct store *store, char *err)
{
    glr_mutex_assert_held(&store->write_lock);
    uint64_t reserve = store->options.disk_reserve;
    /* One statvfs() per write: little beside a commit. The checkpointer's hook reads it. */
    int64_t room = store->room = store_free_bytes(store);
    if (room < 0 || (uint64_t)room >= reserve)
        return GLR_OK;
    /* What the WAL holds may give some back, once it is in the database. */
    store_space_lacking(store);
    return glr_fail(err, GLR_EBUSY,
                    "database: %.1f MiB free on its file system, less than the %.1f MiB kept "
                    "free (--disk-reserve): nothing was stored, try again later",
                    (double)room / (1024 * 1024), (double)reserve / (1024 * 1024));
}

int store_check_not_empty(const char *path, char *err)
{
    struct stat st;
    /* A path that does not exist becomes a new database; other failures open reports. */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 0)
        return GLR_OK;
    /*
     * SQLite would take it for a new database (and drop a WAL beside it): an empty file
     * where a database should be is more likely one truncated or copied badly.
     */
    return glr_fail(err, GLR_ECORRUPT,
                    "database %s is an empty file (0 bytes), not a greedylr database: remove "
                    "it to start a new database there",
                    path);
}

/* SQLite's progress handler during the check: nonzero stops it, once its time is up. */
static int check_deadline(void *arg)
{
    const int64_t *deadline = arg;
    return glr_clock_mono_ms() >= *deadline;
}

int store_check_file(struct store *store, const char *path, char *err)
{
    sqlite3 *db = store->writer.db;
    sqlite3_stmt *stmt = NULL;
    int64_t deadline = glr_clock_mono_deadline(STORE_CHECK_MS);
    sqlite3_progress_handler(db, STORE_CHECK_STEPS, check_deadline, &deadline);
    int rc = sqlite3_prepare_v2(db, store_other_sql[S_QUICK_CHECK_FIRST], -1, &stmt, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    int status = GLR_OK;
    if (rc == SQLITE_ROW) {
        const char *answer = (const char *)sqlite3_column_text(stmt, 0);
        if (!answer || strcmp(answer, "ok") != 0)
            status = glr_fail(err, GLR_ECORRUPT,
                              "database %s is damaged: %s (PRAGMA quick_check); restore it from "
                              "a backup, or start with --skip-check to serve it as it is",
                              path, answer ? answer : "?");
    } else if (rc == SQLITE_INTERRUPT) {
        log_warn("database %s: the check at start stopped after %d s, before its end: the "
                 "rest of the file was not checked",
                 path, STORE_CHECK_MS / 1000);
    } else if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) {
        status = glr_fail(err, GLR_ECORRUPT, "database %s is damaged: %s (PRAGMA quick_check)",
                          path, sqlite3_errmsg(db));
    } else {
        status = store_db_fail(err, db, "checking the file");
    }
    sqlite3_finalize(stmt);
    sqlite3_progress_handler(db, 0, NULL, NULL);
    return status;
}
