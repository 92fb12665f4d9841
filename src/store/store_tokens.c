/*
 * API tokens: what the store keeps of each (name, role, the hash of the token, when it was
 * made), for the daemon's table in memory and for `greedylrd token`.
 */
#include <stdio.h>
#include <string.h>

#include "base/status.h"
#include "store/store_int.h"

int store_token_insert(struct store *store, const struct store_token *token, char *err)
{
    int rc = store_write_begin(store, err);
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
        rc = store_fail(store, store->writer.db, err, "inserting a token");
    store_stmt_done(stmt);
    return store_write_end(store, rc, err);
}

int store_token_delete(struct store *store, const char *name, char *err)
{
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_TOKEN_DELETE];
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    rc = store_step_done(store, stmt, "deleting a token", err);
    if (!rc && sqlite3_changes(store->writer.db) == 0)
        rc = glr_fail(err, GLR_ENOTFOUND, "no token is named %.64s", name);
    return store_write_end(store, rc, err);
}

int store_token_scan(struct store *store, store_token_fn fn, void *ctx, char *err)
{
    int r = store_reader_take(store);
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
        /* Longer names and roles than the row holds are cut to its fields' sizes. */
        snprintf(token.name, sizeof(token.name), "%s", (const char *)name);
        snprintf(token.role, sizeof(token.role), "%s", (const char *)role);
        memcpy(token.hash, hash, STORE_TOKEN_HASH_SIZE);
        token.created_ms = sqlite3_column_int64(stmt, 3);
        if (!fn(ctx, &token))
            break;
    }
    if (!rc && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = store_fail(store, store->readers[r].db, err, "reading the tokens");
    store_stmt_done(stmt);
    store_reader_give(store, r);
    return rc;
}
