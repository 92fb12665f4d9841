/*
 * History: the rows of reports, the ranks' losses of jobs of several ranks, snapshots of
 * state for rewinds, and the rewind itself, which forgets everything after a step.
 */
#include <math.h>
#include <string.h>

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

int store_rewind_commit(struct store *store, int64_t seq, int64_t to_step, const char *state,
                        int64_t last_step, int64_t reports, int64_t updated_ms, char *err)
{
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    const int truncations[] = {W_HISTORY_TRUNCATE, W_SNAPSHOTS_TRUNCATE, W_RANK_LOSSES_TRUNCATE,
                               W_BLOCKS_TRUNCATE};
    for (size_t i = 0; i < sizeof(truncations) / sizeof(truncations[0]) && !rc; i++) {
        sqlite3_stmt *stmt = store->writer_stmts[truncations[i]];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_int64(stmt, 2, to_step);
        rc = store_step_done(store, stmt, "forgetting the steps after the rewind", err);
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
        rc = store_step_done(store, stmt, "saving the rewound state", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    }
    return store_write_end(store, rc, err);
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
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_int64(stmt, 2, from_step);
    sqlite3_bind_int64(stmt, 3, from_rank);
    sqlite3_bind_int64(stmt, 4, to_step);
    sqlite3_bind_int64(stmt, 5, limit);
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
    if (rc == SQLITE_DONE)
        rc = GLR_OK;
    else if (rc > 0)
        rc = store_fail(store, store->readers[r].db, err, "reading history");
    store_stmt_done(stmt);
    store_reader_give(store, r);
    return rc;
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
