/*
 * Jobs: their rows (configuration, status, tags, saved state), the indexed copy of their
 * tags that the job list filters on, the list itself, and the counts /metrics shows.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "store/store_int.h"

void store_job_clear(struct store_job *job)
{
    free(job->policy);
    free(job->initial_lr);
    free(job->config);
    free(job->tags);
    free(job->state);
    free(job->tuned);
    memset(job, 0, sizeof(*job));
}

/* Reads a row of JOB_COLUMNS into *job. Returns GLR_OK or GLR_ENOMEM. */
static int read_job_row(sqlite3_stmt *stmt, struct store_job *job, char *err)
{
    memset(job, 0, sizeof(*job));
    job->seq = sqlite3_column_int64(stmt, 0);
    snprintf(job->id, sizeof(job->id), "%s", (const char *)sqlite3_column_text(stmt, 1));
    job->policy = store_column_strdup(stmt, 2);
    job->initial_lr = store_column_strdup(stmt, 3);
    job->config = store_column_strdup(stmt, 4);
    job->tags = store_column_strdup(stmt, 5);
    const unsigned char *status = sqlite3_column_text(stmt, 6);
    job->finished = status && strcmp((const char *)status, "finished") == 0;
    job->state = store_column_strdup(stmt, 7);
    job->last_step =
        sqlite3_column_type(stmt, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(stmt, 8);
    job->reports = sqlite3_column_int64(stmt, 9);
    job->created_ms = sqlite3_column_int64(stmt, 10);
    job->updated_ms = sqlite3_column_int64(stmt, 11);
    job->rewinds = sqlite3_column_int64(stmt, 12);
    job->world_size = sqlite3_column_int64(stmt, 13);
    const unsigned char *aggregate = sqlite3_column_text(stmt, 14);
    snprintf(job->aggregate, sizeof(job->aggregate), "%s",
             aggregate ? (const char *)aggregate : "mean");
    job->aggregate_timeout_ms = sqlite3_column_int64(stmt, 15);
    const unsigned char *family = sqlite3_column_text(stmt, 16);
    snprintf(job->family, sizeof(job->family), "%s", family ? (const char *)family : "");
    job->has_outcome = sqlite3_column_type(stmt, 17) != SQLITE_NULL;
    job->outcome = (struct store_outcome){
        .value = job->has_outcome ? sqlite3_column_double(stmt, 17) : NAN,
        .given = sqlite3_column_int(stmt, 18) != 0,
        .last_loss = store_column_real(stmt, 19),
        .best_loss = store_column_real(stmt, 20),
    };
    bool tuned = sqlite3_column_type(stmt, 21) != SQLITE_NULL;
    job->tuned = tuned ? store_column_strdup(stmt, 21) : NULL;
    if (!job->policy || !job->initial_lr || !job->config || !job->tags || !job->state ||
        (tuned && !job->tuned)) {
        store_job_clear(job);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    return GLR_OK;
}

/* Replaces the job_tags rows of job seq with tags (write_lock held). */
static int insert_tags(struct store *store, int64_t seq, const struct store_tag *tags, size_t ntags,
                       char *err)
{
    glr_mutex_assert_held(&store->write_lock);
    sqlite3_stmt *clear = store->writer_stmts[W_TAGS_CLEAR];
    sqlite3_bind_int64(clear, 1, seq);
    int rc = store_step_done(store, clear, "clearing tags", err);
    sqlite3_stmt *insert = store->writer_stmts[W_TAG_INSERT];
    for (size_t i = 0; !rc && i < ntags; i++) {
        sqlite3_bind_int64(insert, 1, seq);
        sqlite3_bind_text(insert, 2, tags[i].key, -1, SQLITE_STATIC);
        sqlite3_bind_text(insert, 3, tags[i].value, -1, SQLITE_STATIC);
        rc = store_step_done(store, insert, "inserting a tag", err);
    }
    return rc;
}

/*
 * Counts the jobs for options.max_jobs, once (write_lock held): afterwards the inserts and
 * deletes that commit keep the count.
 */
static int count_jobs_once(struct store *store, char *err)
{
    glr_mutex_assert_held(&store->write_lock);
    if (store->options.max_jobs == 0 || store->jobs_stored >= 0)
        return GLR_OK;
    sqlite3_stmt *count = store->writer_stmts[W_JOB_COUNT];
    int rc = sqlite3_step(count);
    if (rc == SQLITE_ROW)
        store->jobs_stored = sqlite3_column_int64(count, 0);
    store_stmt_done(count);
    return rc == SQLITE_ROW ? GLR_OK : store_db_fail(err, store->writer.db, "counting the jobs");
}

/* GLR_OK while the database holds fewer jobs than options.max_jobs, else GLR_EQUOTA. */
static int check_jobs_quota(const struct store *store, char *err)
{
    uint64_t max = store->options.max_jobs;
    if (max == 0 || (uint64_t)store->jobs_stored < max)
        return GLR_OK;
    return glr_fail(err, GLR_EQUOTA,
                    "the database holds %lld jobs, the most it may (--max-jobs): delete "
                    "finished jobs to make room",
                    (long long)store->jobs_stored);
}

/* Keeps the count of jobs after a write that committed with outcome rc (write_lock held). */
static void count_jobs(struct store *store, int rc, int64_t change)
{
    if (rc == GLR_OK && store->jobs_stored >= 0)
        store->jobs_stored += change;
}

int store_job_insert(struct store *store, struct store_job *job, const struct store_tag *tags,
                     size_t ntags, char *err)
{
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    if ((rc = count_jobs_once(store, err)))
        return store_write_end(store, rc, err);
    sqlite3_stmt *stmt = store->writer_stmts[W_JOB_INSERT];
    sqlite3_bind_text(stmt, 1, job->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, job->policy, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, job->initial_lr, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, job->config, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, job->tags, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, job->finished ? "finished" : "running", -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, job->state, -1, SQLITE_STATIC);
    if (job->last_step >= 0)
        sqlite3_bind_int64(stmt, 8, job->last_step);
    else
        sqlite3_bind_null(stmt, 8);
    sqlite3_bind_int64(stmt, 9, job->reports);
    sqlite3_bind_int64(stmt, 10, job->created_ms);
    sqlite3_bind_int64(stmt, 11, job->updated_ms);
    sqlite3_bind_int64(stmt, 12, job->world_size);
    sqlite3_bind_text(stmt, 13, job->aggregate, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 14, job->aggregate_timeout_ms);
    if (job->family[0])
        sqlite3_bind_text(stmt, 15, job->family, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 15);
    if (job->tuned)
        sqlite3_bind_text(stmt, 16, job->tuned, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, 16);
    rc = store_step_done(store, stmt, "inserting the job", err);
    if (rc == GLR_ECONFLICT)
        glr_fail(err, GLR_ECONFLICT, "job %s exists already", job->id);
    /*
     * The quota is checked once the id is known to be new (the insert is undone), so that
     * the same request sent again still finds its job when the database is full.
     */
    if (!rc)
        rc = check_jobs_quota(store, err);
    if (!rc) {
        job->seq = sqlite3_last_insert_rowid(store->writer.db);
        rc = insert_tags(store, job->seq, tags, ntags, err);
    }
    rc = store_write_finish(store, rc, err);
    count_jobs(store, rc, +1);
    glr_mutex_unlock(&store->write_lock);
    return rc;
}

int store_job_load(struct store *store, const char *id, struct store_job *out, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_JOB_LOAD];
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        rc = read_job_row(stmt, out, err);
    else if (rc == SQLITE_DONE)
        rc = glr_fail(err, GLR_ENOTFOUND, "job %.128s does not exist", id);
    else
        rc = store_fail(store, store->readers[r].db, err, "loading a job");
    store_stmt_done(stmt);
    store_reader_give(store, r);
    return rc;
}

int store_job_patch(struct store *store, int64_t seq, const bool *finished,
                    const struct store_outcome *outcome, const char *tags_json,
                    const struct store_tag *tags, size_t ntags, int64_t updated_ms, char *err)
{
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    if (finished) {
        sqlite3_stmt *stmt = store->writer_stmts[W_JOB_STATUS];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_text(stmt, 2, *finished ? "finished" : "running", -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, updated_ms);
        rc = store_step_done(store, stmt, "updating the status", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    }
    if (!rc && outcome) {
        sqlite3_stmt *stmt = store->writer_stmts[W_JOB_OUTCOME];
        sqlite3_bind_int64(stmt, 1, seq);
        store_bind_real(stmt, 2, outcome->value);
        sqlite3_bind_int(stmt, 3, outcome->given);
        store_bind_real(stmt, 4, outcome->last_loss);
        store_bind_real(stmt, 5, outcome->best_loss);
        sqlite3_bind_int64(stmt, 6, updated_ms);
        rc = store_step_done(store, stmt, "recording the outcome", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    }
    if (!rc && tags_json) {
        sqlite3_stmt *stmt = store->writer_stmts[W_JOB_TAGS];
        sqlite3_bind_int64(stmt, 1, seq);
        sqlite3_bind_text(stmt, 2, tags_json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 3, updated_ms);
        rc = store_step_done(store, stmt, "updating the tags", err);
        if (!rc && sqlite3_changes(store->writer.db) == 0)
            rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
        if (!rc)
            rc = insert_tags(store, seq, tags, ntags, err);
    }
    return store_write_end(store, rc, err);
}

int store_job_delete(struct store *store, int64_t seq, char *err)
{
    int rc = store_write_begin(store, err);
    if (rc)
        return rc;
    sqlite3_stmt *stmt = store->writer_stmts[W_JOB_DELETE];
    sqlite3_bind_int64(stmt, 1, seq);
    rc = store_step_done(store, stmt, "deleting the job", err);
    if (!rc && sqlite3_changes(store->writer.db) == 0)
        rc = glr_fail(err, GLR_ENOTFOUND, "the job does not exist");
    rc = store_write_finish(store, rc, err);
    count_jobs(store, rc, -1);
    glr_mutex_unlock(&store->write_lock);
    return rc;
}

int store_job_scan(struct store *store, int64_t after_seq, int64_t limit,
                   enum store_status_filter status, const char *tag_key, const char *tag_value,
                   const char *family, store_job_fn fn, void *ctx, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][family ? R_FAMILY_JOB_SCAN : R_JOB_SCAN];
    if (family)
        sqlite3_bind_text(stmt, 6, family, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 1, after_seq);
    if (status != STORE_ANY)
        sqlite3_bind_text(stmt, 2, status == STORE_FINISHED ? "finished" : "running", -1,
                          SQLITE_STATIC);
    if (tag_key) {
        sqlite3_bind_text(stmt, 3, tag_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 4, tag_value ? tag_value : "", -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(stmt, 5, limit);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_job job;
        if ((rc = read_job_row(stmt, &job, err)) != GLR_OK)
            break;
        bool go_on = fn(ctx, &job);
        store_job_clear(&job);
        if (!go_on) {
            rc = SQLITE_DONE;
            break;
        }
    }
    return store_scan_end(store, r, stmt, rc, "listing jobs", err);
}

int store_job_counts(struct store *store, int64_t *running, int64_t *finished, char *err)
{
    *running = 0;
    *finished = 0;
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_JOB_COUNT];
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const unsigned char *status = sqlite3_column_text(stmt, 0);
        int64_t count = sqlite3_column_int64(stmt, 1);
        if (status && strcmp((const char *)status, "finished") == 0)
            *finished += count;
        else
            *running += count;
    }
    return store_scan_end(store, r, stmt, rc, "counting jobs", err);
}

/* The one real of a statement's first row: NaN when it is NULL or there is no row. */
static int read_one_real(struct store *store, int r, int which, int64_t seq, const char *what,
                         double *out, char *err)
{
    sqlite3_stmt *stmt = store->reader_stmts[r][which];
    sqlite3_bind_int64(stmt, 1, seq);
    int rc = sqlite3_step(stmt);
    *out = rc == SQLITE_ROW ? store_column_real(stmt, 0) : NAN;
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? GLR_OK
                                               : store_fail(store, store->readers[r].db, err, what);
    store_stmt_done(stmt);
    return rc;
}

int store_job_losses(struct store *store, int64_t seq, double *last_loss, double *best_loss,
                     char *err)
{
    int r = store_reader_take(store);
    int rc = read_one_real(store, r, R_LAST_LOSS, seq, "reading a job's losses", last_loss, err);
    if (!rc)
        rc = read_one_real(store, r, R_BEST_LOSS, seq, "reading a job's losses", best_loss, err);
    store_reader_give(store, r);
    return rc;
}

int store_history_steps(struct store *store, int64_t seq, int64_t *steps, char *err)
{
    int r = store_reader_take(store);
    double count = 0;
    int rc = read_one_real(store, r, R_HISTORY_STEPS, seq, "counting a job's history", &count, err);
    store_reader_give(store, r);
    *steps = rc || !(count >= 0) ? 0 : (int64_t)count;
    return rc;
}

int store_family_scan(struct store *store, const char *after_name, int64_t limit,
                      store_family_fn fn, void *ctx, char *err)
{
    int r = store_reader_take(store);
    sqlite3_stmt *stmt = store->reader_stmts[r][R_FAMILY_SCAN];
    sqlite3_bind_text(stmt, 1, after_name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, limit);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_family family = {
            .name = (const char *)sqlite3_column_text(stmt, 0),
            .jobs = sqlite3_column_int64(stmt, 1),
            .finished = sqlite3_column_int64(stmt, 2),
            .best_outcome = store_column_real(stmt, 3),
            .updated_ms = sqlite3_column_int64(stmt, 4),
        };
        if (!family.name || !fn(ctx, &family)) {
            rc = family.name ? SQLITE_DONE : SQLITE_NOMEM;
            break;
        }
    }
    return store_scan_end(store, r, stmt, rc, "listing families", err);
}
