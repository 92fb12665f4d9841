/*
 * Block summaries: each job's history cut, in step order, into blocks of STORE_BLOCK_ROWS
 * rows, each summarized (base/summary.h) as soon as it is complete, so that a chart of a
 * long history reads a block instead of its rows.
 */
#include <string.h>

#include "base/status.h"
#include "base/summary.h"
#include "store/store_int.h"

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
    store_bind_real(stmt, 8, b->low_loss);
    if (b->have_high) {
        sqlite3_bind_int64(stmt, 9, b->high_step);
        sqlite3_bind_double(stmt, 10, b->high_loss);
    }
    int rc = sqlite3_step(stmt);
    store_stmt_done(stmt);
    return rc == SQLITE_DONE ? GLR_OK : store_db_fail(err, db, "summarizing a block of history");
}

/*
 * Fewer rows than a block are left for a later call. The rows are read from the last row
 * of the last block on, which is only compared with: it tells whether the first new row
 * changed the lr.
 */
int store_build_blocks(sqlite3 *db, const struct store_block_stmts *s, int64_t seq, char *err)
{
    int64_t from_step = INT64_MIN;
    sqlite3_bind_int64(s->last, 1, seq);
    int rc = sqlite3_step(s->last);
    bool after_block = rc == SQLITE_ROW;
    if (after_block)
        from_step = sqlite3_column_int64(s->last, 0);
    store_stmt_done(s->last);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_db_fail(err, db, "finding the last block of history");

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
        if ((rc = store_read_report_row(s->rows, &row, err)))
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
        rc = store_db_fail(err, db, "reading history to summarize");
    store_stmt_done(s->rows);
    return rc;
}

int store_block_scan(struct store *store, int64_t seq, int64_t from_step, int64_t to_step,
                     store_block_fn fn, void *ctx, char *err)
{
    int r = store_reader_take(store);
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
            .low_loss = store_column_real(stmt, 6),
            .have_high = sqlite3_column_type(stmt, 7) != SQLITE_NULL,
            .high_step = sqlite3_column_int64(stmt, 7),
            .high_loss = store_column_real(stmt, 8),
        };
        if (!fn(ctx, &b)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    return store_scan_end(store, r, stmt, rc, "reading history blocks", err);
}
