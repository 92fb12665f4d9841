/*
 * History: the rows of reports, the ranks' losses of jobs of several ranks, snapshots of
 * state for rewinds, and the rewind itself, which forgets everything after a step.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "store/store_int.h"

void store_encode_doubles(const double *values, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &values[i], sizeof(bits));
        for (int b = 0; b < 8; b++)
            out[i * 8 + (size_t)b] = (unsigned char)(bits >> (8 * b));
    }
}

/* The inverse of store_encode_doubles(). */
static void decode_doubles(const unsigned char *in, size_t n, double *values)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = 0;
        for (int b = 0; b < 8; b++)
            bits |= (uint64_t)in[i * 8 + (size_t)b] << (8 * b);
        memcpy(&values[i], &bits, sizeof(bits));
    }
}

int store_read_report_row(sqlite3_stmt *stmt, struct store_report *r, char *err)
{
    r->step = sqlite3_column_int64(stmt, 0);
    r->rank = sqlite3_column_int64(stmt, 1);
    r->loss = store_column_real(stmt, 2);
    r->metric = store_column_real(stmt, 3);
    r->lrs[0] = sqlite3_column_double(stmt, 4);
    r->groups = 1;
    if (sqlite3_column_type(stmt, 5) == SQLITE_BLOB) {
        int bytes = sqlite3_column_bytes(stmt, 5);
        /* The blob is read into lrs[GLR_MAX_GROUPS]: its size is checked first. */
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

int store_insert_rank_loss(struct store *store, int64_t seq, int64_t step,
                           const struct store_rank_loss *rl, bool late, char *err)
{
    sqlite3_stmt *stmt = store->writer_stmts[W_RANK_LOSS_INSERT];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, step);
    sqlite3_bind_int64(stmt, 3, rl->rank);
    store_bind_real(stmt, 4, rl->loss);
    sqlite3_bind_int(stmt, 5, late ? 1 : 0);
    return store_step_done(store, stmt, "inserting a rank's loss", err);
}

int store_snapshot_find(struct store *store, int64_t seq, int64_t max_step,
                        struct store_snapshot *out, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_SNAPSHOT_FIND];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, max_step);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        out->step = sqlite3_column_int64(stmt, 0);
        out->reports = sqlite3_column_int64(stmt, 1);
        out->state = store_column_strdup(stmt, 2);
        rc = out->state ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        rc =
            glr_fail(err, GLR_ENOTFOUND, "no snapshot at or before step %lld", (long long)max_step);
    } else {
        rc = store_fail(store, store->readers[r].db, err, "finding a snapshot");
    }
    store_stmt_done(stmt);
    store_reader_give(store, r);
    return rc;
}

/*
 * The step above which one batch of a rewind deletes (write_lock held): the newest
 * STORE_REWIND_BATCH rows of job seq's history after to_step lie above it, with the other
 * ranks' rows of the lowest of their steps; to_step when fewer are left.
 */
static int rewind_batch_floor(struct store *store, int64_t seq, int64_t to_step, int64_t *floor,
                              char *err)
{
    sqlite3_stmt *stmt = store->writer_stmts[W_HISTORY_BATCH_FLOOR];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, to_step);
    sqlite3_bind_int64(stmt, 3, STORE_REWIND_BATCH - 1);
    int rc = sqlite3_step(stmt);
    int64_t lowest = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : to_step + 1;
    *floor = lowest - 1;
    store_stmt_done(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_fail(err, store->writer.db, "finding a batch of the rewind");
    return GLR_OK;
}

/*
 * Deletes one batch of what a rewind to to_step forgets, the newest rows first (write_lock
 * held, in a transaction): *floor receives the step above which nothing is left.
 */
static int rewind_batch(struct store *store, int64_t seq, int64_t to_step, int64_t *floor,
                        char *err)
{
    int rc = rewind_batch_floor(store, seq, to_step, floor, err);
    const int truncations[] = {W_HISTORY_TRUNCATE, W_SNAPSHOTS_TRUNCATE, W_RANK_LOSSES_TRUNCATE,
                               W_BLOCKS_TRUNCATE};
    for (size_t i = 0; i < sizeof(truncations) / sizeof(truncations[0]) && !rc; i++) {
        sqlite3_stmt *stmt = store->writer_stmts[truncations[i]];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_int64(stmt, 2, *floor);
        rc = store_step_done(store, stmt, "forgetting the steps after the rewind", err);
    }
    return rc;
}

/* Saves the rewound state in job seq's row (write_lock held, in a transaction). */
static int rewind_job_row(struct store *store, int64_t seq, int64_t to_step, const char *state,
                          int64_t last_step, int64_t reports, int64_t updated_ms, char *err)
{
    sqlite3_stmt *log = store->writer_stmts[W_REWIND_LOG];
    sqlite3_bind_int64(log, 1, seq);
    sqlite3_bind_int64(log, 2, to_step);
    sqlite3_bind_int64(log, 3, updated_ms);
    int rc = store_step_done(store, log, "recording the rewind", err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_JOB_REWIND];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
    if (last_step >= 0)
        sqlite3_bind_int64(stmt, 3, last_step);
    else
        sqlite3_bind_null(stmt, 3);
    sqlite3_bind_int64(stmt, 4, reports);
    sqlite3_bind_int64(stmt, 5, updated_ms);
    rc = store_step_done(store, stmt, "saving the rewound state", err);
    if (!rc && sqlite3_changes(store->writer.db) == 0)
        rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    return rc;
}

/* The pause between two batches of a rewind, for the writes waiting to take their turn. */
#define STORE_REWIND_PAUSE_NS 1000000

int store_rewind_commit(struct store *store, int64_t seq, int64_t to_step, const char *state,
                        int64_t last_step, int64_t reports, int64_t updated_ms, char *err)
{
    /*
     * The job's row goes first, with the newest batch of rows: from then on the rows still
     * after to_step are the start of the old history after it, which a job loaded from its
     * row replays to a state it had before. So an interrupted rewind leaves the job at an
     * earlier step of its old history, consistent, and the rewind can be sent again. Each
     * later batch is a transaction of its own, and other writes take their turn between.
     */
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    int64_t floor = to_step;
    rc = rewind_job_row(store, seq, to_step, state, last_step, reports, updated_ms, err);
    if (!rc)
        rc = rewind_batch(store, seq, to_step, &floor, err);
    rc = store_write_end(store, rc, err);
    while (!rc && floor > to_step) {
        /*
         * Mutexes are not fair: taken again at once, write_lock would mostly go back to this
         * thread. A pause lets the writes that wait for it in first.
         */
        nanosleep(&(struct timespec){0, STORE_REWIND_PAUSE_NS}, NULL);
        if ((rc = store_write_begin(store, err)))
            break;
        rc = rewind_batch(store, seq, to_step, &floor, err);
        rc = store_write_end(store, rc, err);
    }
    return rc;
}

int store_report_find(struct store *store, int64_t seq, int64_t step, int64_t rank,
                      struct store_report *out, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_REPORT_FIND];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, step);
    sqlite3_bind_int64(stmt, 3, rank);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        rc = store_read_report_row(stmt, out, err);
    else if (rc == SQLITE_DONE)
        rc = glr_fail(err, GLR_ENOTFOUND, "step %lld rank %lld was never reported", (long long)step,
                      (long long)rank);
    else
        rc = store_fail(store, store->readers[r].db, err, "finding a report");
    store_stmt_done(stmt);
    store_reader_give(store, r);
    return rc;
}

int store_report_scan(struct store *store, int64_t seq, int64_t from_step, int64_t from_rank,
                      int64_t to_step, int64_t limit, store_report_fn fn, void *ctx, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_REPORT_SCAN];
    store_bind_range(stmt, seq, from_step, from_rank, to_step, limit);
    int rc;
    struct store_report report;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if ((rc = store_read_report_row(stmt, &report, err)) != GLR_OK)
            break;
        if (!fn(ctx, &report)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    return store_scan_end(store, r, stmt, rc, "reading history", err);
}

int store_rank_loss_find(struct store *store, int64_t seq, int64_t step, int64_t rank, double *loss,
                         char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_RANK_LOSS_FIND];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, step);
    sqlite3_bind_int64(stmt, 3, rank);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *loss = store_column_real(stmt, 0);
        rc = GLR_OK;
    } else if (rc == SQLITE_DONE) {
        rc = glr_fail(err, GLR_ENOTFOUND, "rank %lld never reported step %lld", (long long)rank,
                      (long long)step);
    } else {
        rc = store_fail(store, store->readers[r].db, err, "finding a rank's loss");
    }
    store_stmt_done(stmt);
    store_reader_give(store, r);
    return rc;
}

int store_rank_loss_scan(struct store *store, int64_t seq, int64_t from_step, int64_t from_rank,
                         int64_t to_step, int64_t limit, store_rank_fn fn, void *ctx, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_RANK_LOSS_SCAN];
    store_bind_range(stmt, seq, from_step, from_rank, to_step, limit);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_rank_row row = {
            .step = sqlite3_column_int64(stmt, 0),
            .rank = sqlite3_column_int64(stmt, 1),
            .loss = store_column_real(stmt, 2),
            .late = sqlite3_column_int64(stmt, 3) != 0,
        };
        if (!fn(ctx, &row)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    return store_scan_end(store, r, stmt, rc, "reading ranks", err);
}

int store_rank_loss_add_late(struct store *store, int64_t seq, int64_t step, int64_t rank,
                             double loss, char *err)
{
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    struct store_rank_loss rl = {rank, loss};
    rc = store_insert_rank_loss(store, seq, step, &rl, true, err);
    return store_write_end(store, rc, err);
}

int store_rewind_scan(struct store *store, int64_t seq, int64_t from_step, int64_t to_step,
                      int64_t limit, store_rewind_fn fn, void *ctx, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_REWIND_SCAN];
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, from_step);
    sqlite3_bind_int64(stmt, 3, to_step);
    sqlite3_bind_int64(stmt, 4, limit);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_rewind rewind = {
            .to_step = sqlite3_column_int64(stmt, 0),
            .from_step =
                sqlite3_column_type(stmt, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(stmt, 1),
            .time_ms = sqlite3_column_int64(stmt, 2),
        };
        if (!fn(ctx, &rewind)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    return store_scan_end(store, r, stmt, rc, "reading rewinds", err);
}
