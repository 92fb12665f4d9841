/*
 * The models learned for families (see store.h): a new version, and the newest one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "store/store_int.h"

void store_model_clear(struct store_model *model)
{
    free(model->model);
    free(model->trained_on);
    free(model->fit);
    memset(model, 0, sizeof(*model));
}

int store_model_insert(struct store *store, struct store_model *model, char *err)
{
    const char *texts[3] = {model->model, model->trained_on, model->fit};
    for (size_t i = 0; i < 3; i++)
        if (strlen(texts[i]) > STORE_MODEL_TEXT_MAX)
            return glr_fail(err, GLR_EINVAL, "a model's JSON is over %d bytes",
                            STORE_MODEL_TEXT_MAX);
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_MODEL_INSERT];
    sqlite3_bind_text(stmt, 1, model->family, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, model->created_ms);
    for (int i = 0; i < 3; i++)
        sqlite3_bind_text(stmt, 3 + i, texts[i], -1, SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        model->version = sqlite3_column_int64(stmt, 0);
        step = sqlite3_step(stmt);
    }
    if (step != SQLITE_DONE)
        rc = store_fail(store, store->writer.db, err, "storing a model");
    store_stmt_done(stmt);
    return store_write_end(store, rc, err);
}

int store_model_latest(struct store *store, const char *family, struct store_model *out, char *err)
{
    memset(out, 0, sizeof(*out));
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_MODEL_LATEST];
    sqlite3_bind_text(stmt, 1, family, -1, SQLITE_STATIC);
    int rc = GLR_OK;
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        snprintf(out->family, sizeof(out->family), "%s", family);
        out->version = sqlite3_column_int64(stmt, 0);
        out->created_ms = sqlite3_column_int64(stmt, 1);
        out->model = store_column_strdup(stmt, 2);
        out->trained_on = store_column_strdup(stmt, 3);
        out->fit = store_column_strdup(stmt, 4);
        if (!out->model || !out->trained_on || !out->fit)
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
        step = SQLITE_DONE;
    } else if (step == SQLITE_DONE) {
        rc = glr_fail(err, GLR_ENOTFOUND, "family %s has no learned model", family);
    }
    rc = store_scan_end(store, r, stmt, rc ? rc : step, "reading a model", err);
    if (rc)
        store_model_clear(out);
    return rc;
}
