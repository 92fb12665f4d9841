/*
 * Migrations: the schema brought up to this build's version in one transaction when the
 * store opens, from the SQL compiled in from sql/, and the one migration that needs C as
 * well: summarizing the history already stored into blocks.
 */
#include <stdio.h>

#include "base/status.h"
#include "store/migrations.h"
#include "store/store_int.h"

/* The schema version that brought history blocks, whose rows are summarized in C. */
#define STORE_BLOCKS_VERSION 6

/*
 * Migration 6: summarizes the history already in the database, job by job. The block
 * statements are prepared here, on the connection being migrated, for this one use.
 */
static int backfill_blocks(sqlite3 *db, char *err)
{
    struct store_block_stmts s = {0};
    sqlite3_stmt *jobs = NULL;
    int rc = GLR_OK;
    if (sqlite3_prepare_v2(db, store_writer_sql[W_BLOCK_LAST], -1, &s.last, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, store_writer_sql[W_BLOCK_ROWS], -1, &s.rows, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, store_writer_sql[W_BLOCK_INSERT], -1, &s.insert, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, store_other_sql[S_JOB_SEQS], -1, &jobs, NULL) != SQLITE_OK)
        rc = store_db_fail(err, db, "preparing to summarize history");
    int step_rc = SQLITE_DONE;
    while (!rc && (step_rc = sqlite3_step(jobs)) == SQLITE_ROW)
        rc = store_build_blocks(db, &s, sqlite3_column_int64(jobs, 0), err);
    if (!rc && step_rc != SQLITE_DONE)
        rc = store_db_fail(err, db, "listing jobs to summarize");
    sqlite3_finalize(jobs);
    sqlite3_finalize(s.last);
    sqlite3_finalize(s.rows);
    sqlite3_finalize(s.insert);
    return rc;
}

int store_migrate(sqlite3 *db, const char *path, char *err)
{
    int rc = store_exec(db, store_other_sql[S_BEGIN], "starting the migration", err);
    if (rc)
        return rc;
    int64_t version;
    if ((rc = store_pragma_int(db, store_other_sql[S_USER_VERSION], &version, err)))
        goto rollback;
    int latest = store_latest_version();
    if (version > latest) {
        rc = glr_fail(err, GLR_ECORRUPT,
                      "database %s has schema version %lld, newer than this greedylr knows "
                      "(%d): use a newer greedylrd",
                      path, (long long)version, latest);
        goto rollback;
    }
    for (int v = (int)version; v < latest; v++) {
        const struct migration *m = &store_migrations[v];
        char what[96];
        snprintf(what, sizeof(what), "applying %s", m->name);
        if ((rc = store_exec(db, m->sql, what, err)))
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
        snprintf(sql, sizeof(sql), "%s%d", store_other_sql[S_SET_USER_VERSION], latest);
        if ((rc = store_exec(db, sql, "recording the schema version", err)))
            goto rollback;
    }
    return store_exec(db, store_other_sql[S_COMMIT], "committing the migration", err);

rollback:
    sqlite3_exec(db, store_other_sql[S_ROLLBACK], NULL, NULL, NULL);
    return rc;
}
