/*
 * The store's write path: running the writer's statements, the transactions of the rare
 * writes, the queue of decisions and the writer thread that commits them in groups, and
 * the readiness probe, which asks whether that path can commit now.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "store/store_int.h"

void store_space_lacking(struct store *store)
{
    glr_mutex_assert_held(&store->write_lock);
    atomic_store(&store->space_failed, true);
    store_wal_wake_empty(store);
}

/*
 * A full disk, a failing write or a database that cannot be written (SQLITE_FULL,
 * SQLITE_IOERR, SQLITE_READONLY) becomes GLR_EBUSY, which clients see as 503 with
 * Retry-After: nothing was stored, and the same request may well succeed once an operator
 * has made room or given the file back. It also marks the store not ready until a commit
 * succeeds again.
 */
int store_step_done(struct store *store, sqlite3_stmt *stmt, const char *what, char *err)
{
    glr_mutex_assert_held(&store->write_lock);
    int rc = sqlite3_step(stmt);
    store_stmt_done(stmt);
    if (rc == SQLITE_DONE) {
        if (stmt == store->writer_stmts[W_COMMIT])
            atomic_store(&store->write_failed, false);
        return GLR_OK;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return glr_fail(err, GLR_ECONFLICT, "%s: %s", what, sqlite3_errmsg(store->writer.db));
    if ((rc & 0xff) == SQLITE_READONLY) {
        atomic_store(&store->write_failed, true);
        return glr_fail(err, GLR_EBUSY,
                        "database: %s: the database is read-only (%s); nothing was stored, try "
                        "again later",
                        what, sqlite3_errmsg(store->writer.db));
    }
    if ((rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR) {
        atomic_store(&store->write_failed, true);
        if (store_lacks_space(store->writer.db, rc))
            store_space_lacking(store);
        return glr_fail(err, GLR_EBUSY, "database: %s: %s; nothing was stored, try again later",
                        what, sqlite3_errmsg(store->writer.db));
    }
    return store_fail(store, store->writer.db, err, what);
}

int store_write_begin(struct store *store, char *err)
{
    glr_mutex_lock(&store->write_lock);
    int rc = store_fault_get(store, err);
    if (!rc)
        rc = store_wal_empty(store, store->writer.db, err);
    if (!rc)
        rc = store_room_check(store, err);
    if (!rc)
        rc = store_step_done(store, store->writer_stmts[W_BEGIN], "begin", err);
    if (rc)
        glr_mutex_unlock(&store->write_lock);
    return rc;
}

/*
 * Commits the writer's transaction, once the WAL it goes to is still the file that will
 * be read after a restart (a stat: cheap beside the commit).
 */
static int commit(struct store *store, char *err)
{
    int rc = store_wal_check(store, err);
    if (!rc)
        rc = store_step_done(store, store->writer_stmts[W_COMMIT], "commit", err);
    return rc;
}

int store_write_finish(struct store *store, int rc, char *err)
{
    glr_mutex_assert_held(&store->write_lock);
    if (rc == GLR_OK)
        rc = commit(store, err);
    if (rc != GLR_OK && !sqlite3_get_autocommit(store->writer.db))
        store_step_done(store, store->writer_stmts[W_ROLLBACK], "rollback", NULL);
    return rc;
}

int store_write_end(struct store *store, int rc, char *err)
{
    rc = store_write_finish(store, rc, err);
    glr_mutex_unlock(&store->write_lock);
    return rc;
}

/* Binds and inserts the history row of a decision. */
static int insert_report(struct store *store, const struct store_commit *c, char *err)
{
    const struct store_report *report = &c->report;
    sqlite3_stmt *stmt = store->writer_stmts[W_REPORT_INSERT];
    unsigned char blob[GLR_MAX_GROUPS * 8];
    sqlite3_bind_int64(stmt, 1, c->seq);
    sqlite3_bind_int64(stmt, 2, report->step);
    sqlite3_bind_int64(stmt, 3, report->rank);
    store_bind_real(stmt, 4, report->loss);
    store_bind_real(stmt, 5, report->metric);
    sqlite3_bind_double(stmt, 6, report->lrs[0]);
    if (report->groups > 1) {
        store_encode_doubles(report->lrs, report->groups, blob);
        /* The blob outlives the binding: step_done() resets the statement before we return. */
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
    int rc = store_step_done(store, stmt, "inserting the report", err);
    if (rc && sqlite3_extended_errcode(store->writer.db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = glr_fail(err, GLR_EIO, "database: the job is not there any more");
    return rc;
}

/* Writes one decision inside the open transaction (see struct store_commit). */
static int write_decision(struct store *store, const struct store_commit *c, char *err)
{
    glr_mutex_assert_held(&store->write_lock);
    int rc = insert_report(store, c, err);
    for (size_t i = 0; !rc && i < c->nrank_losses; i++)
        rc = store_insert_rank_loss(store, c->seq, c->report.step, &c->rank_losses[i], false, err);
    if (!rc && c->state) {
        sqlite3_stmt *stmt = store->writer_stmts[W_JOB_ADVANCE];
        sqlite3_bind_int64(stmt, 1, c->seq);
        sqlite3_bind_text(stmt, 2, c->state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, c->last_step);
        sqlite3_bind_int64(stmt, 4, c->reports);
        sqlite3_bind_int64(stmt, 5, c->report.time_ms);
        rc = store_step_done(store, stmt, "saving the job state", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_EIO, "database: the job is not there any more");
    }
    if (!rc && c->reports % STORE_BLOCK_ROWS == 0) {
        /* A block's worth of rows has come since the last trigger: summarize them. */
        struct store_block_stmts blocks = {store->writer_stmts[W_BLOCK_LAST],
                                           store->writer_stmts[W_BLOCK_ROWS],
                                           store->writer_stmts[W_BLOCK_INSERT]};
        rc = store_build_blocks(store->writer.db, &blocks, c->seq, err);
        if (rc)
            rc = store_fail(store, store->writer.db, err, "summarizing history");
    }
    if (!rc && c->snapshot) {
        sqlite3_stmt *stmt = store->writer_stmts[W_SNAPSHOT_INSERT];
        sqlite3_bind_int64(stmt, 1, c->seq);
        sqlite3_bind_int64(stmt, 2, c->report.step);
        sqlite3_bind_int64(stmt, 3, c->reports);
        sqlite3_bind_text(stmt, 4, c->state, -1, SQLITE_STATIC);
        rc = store_step_done(store, stmt, "saving a snapshot", err);
    }
    return rc;
}

void store_commit_submit(struct store *store, struct store_commit *commit)
{
    /* Without the writer thread nothing would answer it until store_close(). */
    assert(store->writer_started);
    commit->next = NULL;
    commit->status = GLR_OK;
    commit->err[0] = '\0';
    glr_mutex_lock(&store->queue_lock);
    *store->queue_tail = commit;
    store->queue_tail = &commit->next;
    pthread_cond_signal(&store->queue_wake);
    glr_mutex_unlock(&store->queue_lock);
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

/* Rolls back the writer's transaction, if one is open. */
static void rollback(struct store *store)
{
    if (!sqlite3_get_autocommit(store->writer.db))
        store_step_done(store, store->writer_stmts[W_ROLLBACK], "rollback", NULL);
}

/*
 * Commits a group in one transaction. When any decision in it fails (a conflict, say),
 * the transaction is rolled back and each decision committed alone, so that one bad
 * decision fails only itself and the ones that came after it in its job.
 */
static void commit_group(struct store *store, struct store_commit *group)
{
    char err[GLR_ERR_MAX] = "";
    glr_mutex_lock(&store->write_lock);
    /* A fault, or a full disk whose WAL cannot be emptied: nothing of the group is written. */
    int refused = store_fault_get(store, err);
    if (!refused)
        refused = store_wal_empty(store, store->writer.db, err);
    if (!refused)
        refused = store_room_check(store, err);
    if (refused) {
        for (struct store_commit *c = group; c; c = c->next)
            if (!commit_orphaned(c))
                commit_failed(c, glr_fail(c->err, refused, "%s", err));
        glr_mutex_unlock(&store->write_lock);
        return;
    }
    bool together = store_step_done(store, store->writer_stmts[W_BEGIN], "begin", err) == GLR_OK;
    for (struct store_commit *c = group; together && c; c = c->next)
        if (!commit_orphaned(c) && write_decision(store, c, c->err) != GLR_OK)
            together = false;
    if (together)
        together = commit(store, err) == GLR_OK;
    if (!together) {
        rollback(store);
        for (struct store_commit *c = group; c; c = c->next) {
            c->status = GLR_OK;
            if (commit_orphaned(c))
                continue;
            int rc = store_fault_get(store, c->err);
            if (!rc)
                rc = store_step_done(store, store->writer_stmts[W_BEGIN], "begin", c->err);
            if (!rc)
                rc = write_decision(store, c, c->err);
            if (!rc)
                rc = commit(store, c->err);
            if (rc) {
                rollback(store);
                commit_failed(c, rc);
            }
        }
    }
    glr_mutex_unlock(&store->write_lock);
}

/* Seconds since start on the monotonic clock, finer than milliseconds, for metrics. */
static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * The writer thread: takes everything queued (up to STORE_GROUP_MAX), commits it as one
 * group, then answers each decision. While it commits, the next group queues up, so the
 * busier the service, the larger the groups. Once store->stopping is set it empties the
 * queue and returns.
 */
void *store_writer_main(void *arg)
{
    struct store *store = arg;
    glr_mutex_lock(&store->queue_lock);
    for (;;) {
        while (!store->queue_head && !store->stopping)
            glr_mutex_wait(&store->queue_lock, &store->queue_wake);
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
        glr_mutex_unlock(&store->queue_lock);

        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        commit_group(store, group);
        /* The callbacks may call the store (and the service's locks come first): none held. */
        glr_mutex_assert_none_held();
        if (store->options.on_group)
            store->options.on_group(store->options.on_group_ctx, seconds_since(&start), size);
        for (struct store_commit *c = group, *next; c; c = next) {
            next = c->next; /* done may free c */
            c->done(c, c->status, c->status ? c->err : NULL);
        }
        glr_mutex_lock(&store->queue_lock);
    }
    glr_mutex_unlock(&store->queue_lock);
    return NULL;
}

int store_check_writable(struct store *store, char *err)
{
    glr_mutex_lock(&store->write_lock);
    sqlite3 *db = store->writer.db;
    /* A probe must answer quickly: a lock held elsewhere for longer means "not ready". */
    sqlite3_busy_timeout(db, STORE_READY_BUSY_MS);
    int rc = store_wal_check(store, err);
    if (!rc)
        rc = store_wal_empty(store, db, err);
    if (!rc)
        rc = store_room_check(store, err);
    if (!rc)
        rc = store_exec(db, store_other_sql[S_BEGIN], "taking the write lock", err);
    int64_t version = 0;
    if (!rc)
        rc = store_pragma_int(db, store_other_sql[S_USER_VERSION], &version, err);
    if (!rc && version != store_latest_version())
        rc = glr_fail(err, GLR_ECORRUPT, "database: schema version %lld, expected %d",
                      (long long)version, store_latest_version());
    /*
     * Writing the version back dirties the database's first page, which a database opened
     * read-only refuses (SQLITE_READONLY); the rollback then undoes it in memory, so the
     * probe leaves no trace in the file or the WAL.
     */
    if (!rc) {
        char sql[64];
        snprintf(sql, sizeof(sql), "%s%d", store_other_sql[S_SET_USER_VERSION],
                 store_latest_version());
        rc = store_exec(db, sql, "writing", err);
    }
    /*
     * After a failed write (a full disk, say), and before the first write of the process
     * (it may have started on a full disk), only a commit tells whether writes work: it
     * appends that unchanged page to the WAL, once per probe until one succeeds.
     */
    if (!rc && atomic_load(&store->write_failed)) {
        int step = sqlite3_exec(db, store_other_sql[S_COMMIT], NULL, NULL, NULL);
        if (step == SQLITE_OK)
            atomic_store(&store->write_failed, false);
        else
            rc = store_db_fail(err, db, "committing");
        if (store_lacks_space(db, step))
            store_space_lacking(store);
    }
    /* Damage the probe's own statements find ends writing as any statement's does. */
    int code = rc ? sqlite3_errcode(db) & 0xff : SQLITE_OK;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        rc = store_fail(store, db, err, "checking readiness");
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, store_other_sql[S_ROLLBACK], NULL, NULL, NULL);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    glr_mutex_unlock(&store->write_lock);
    return rc;
}
