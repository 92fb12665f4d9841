/*
 * The store on its own, below the service: group commit and the isolation of a failing
 * decision, block summaries, migrations from an older schema and the refusal of a newer
 * one, token rows, the read-only and thread-less openings tools use, backup, and long
 * rewinds that leave the writer to others between their batches. Each case works in a
 * temporary directory of its own and removes it.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "base/summary.h"
#include "store/migrations.h"
#include "store/store.h"
#include "testdb.h"
#include "testutil.h"

/* Longest path a case builds inside its temporary directory. */
#define PATH_MAX_TEST 512

/* The case's temporary directory and the database path inside it. */
static char dir[TESTUTIL_DIR_MAX];
static char db_path[PATH_MAX_TEST];

static void setup(void)
{
    testutil_tmpdir("glr-store", dir);
    snprintf(db_path, sizeof(db_path), "%s/store.db", dir);
}

static void teardown(void)
{
    testutil_tmpdir_remove(dir);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static struct store *open_store(const struct store_options *options)
{
    struct store *store = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(store_open(db_path, options, &store, err) == GLR_OK, "%s", err);
    return store;
}

/* Inserts a job of one rank with tags (their JSON, and ntags pairs); returns its seq. */
static int64_t add_tagged_job(struct store *store, const char *id, char *tags_json,
                              const struct store_tag *tags, size_t ntags)
{
    struct store_job job = {0};
    snprintf(job.id, sizeof(job.id), "%s", id);
    job.policy = "constant";
    job.initial_lr = "0.1";
    job.config = "{}";
    job.tags = tags_json; /* the row is the store's to read only, during the call */
    job.state = "{}";
    job.last_step = -1;
    job.world_size = 1;
    snprintf(job.aggregate, sizeof(job.aggregate), "mean");
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(store_job_insert(store, &job, tags, ntags, err) == GLR_OK, "%s", err);
    return job.seq;
}

/* Inserts a job of one rank without tags; returns its seq. */
static int64_t add_job(struct store *store, const char *id)
{
    return add_tagged_job(store, id, "{}", NULL, 0);
}

/* ---- decisions, committed and waited for ------------------------------------------------ */

/* What the commits of a case wait on: how many are not answered yet. */
struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int pending;
    /* When set, the first answered commit holds the writer thread until it is cleared. */
    bool hold_first;
    bool holding;
};

struct decision {
    struct store_commit commit; /* first: done() finds the decision from it */
    struct waiter *waiter;
    bool answered;
    int status;
};

static void decision_done(struct store_commit *commit, int status, const char *err)
{
    (void)err;
    struct decision *d = (struct decision *)commit;
    struct waiter *w = d->waiter;
    pthread_mutex_lock(&w->lock);
    d->answered = true;
    d->status = status;
    w->pending--;
    pthread_cond_broadcast(&w->changed);
    if (w->hold_first) {
        w->holding = true;
        pthread_cond_broadcast(&w->changed);
        while (w->hold_first)
            pthread_cond_wait(&w->changed, &w->lock);
        w->holding = false;
    }
    pthread_mutex_unlock(&w->lock);
}

static void waiter_init(struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
}

static void waiter_destroy(struct waiter *w)
{
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->changed);
}

/* Fills a decision for step of job seq: one group's lr, and the job's state after it. */
static void decision_init(struct decision *d, struct waiter *w, int64_t seq, int64_t step,
                          double loss, double lr, int64_t reports, atomic_bool *failed)
{
    memset(d, 0, sizeof(*d));
    d->waiter = w;
    d->commit.seq = seq;
    d->commit.report.step = step;
    d->commit.report.loss = loss;
    d->commit.report.metric = (double)NAN;
    d->commit.report.event = GLR_EVENT_HOLD;
    d->commit.report.time_ms = 1000 + step;
    d->commit.report.ranks = 1;
    d->commit.report.lr_cap = INFINITY;
    d->commit.report.groups = 1;
    d->commit.report.lrs[0] = lr;
    d->commit.state = "{}";
    d->commit.last_step = step;
    d->commit.reports = reports;
    d->commit.failed = failed;
    d->commit.done = decision_done;
}

static void submit(struct store *store, struct decision *d)
{
    pthread_mutex_lock(&d->waiter->lock);
    d->waiter->pending++;
    pthread_mutex_unlock(&d->waiter->lock);
    store_commit_submit(store, &d->commit);
}

static void wait_all(struct waiter *w)
{
    pthread_mutex_lock(&w->lock);
    while (w->pending > 0)
        pthread_cond_wait(&w->changed, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/* The sizes of the groups the writer committed, from options.on_group. */
struct groups {
    pthread_mutex_t lock;
    size_t largest;
};

static void on_group(void *ctx, double seconds, size_t size)
{
    (void)seconds;
    struct groups *g = ctx;
    pthread_mutex_lock(&g->lock);
    if (size > g->largest)
        g->largest = size;
    pthread_mutex_unlock(&g->lock);
}

static bool has_report(struct store *store, int64_t seq, int64_t step)
{
    struct store_report r;
    char err[GLR_ERR_MAX] = "";
    int rc = store_report_find(store, seq, step, 0, &r, err);
    ck_assert_msg(rc == GLR_OK || rc == GLR_ENOTFOUND, "%s", err);
    return rc == GLR_OK;
}

START_TEST(group_commit_isolates_a_failing_decision)
{
    struct groups groups = {.largest = 0};
    pthread_mutex_init(&groups.lock, NULL);
    struct store_options options = {.on_group = on_group, .on_group_ctx = &groups};
    struct store *store = open_store(&options);
    int64_t a = add_job(store, "a"), b = add_job(store, "b"), c = add_job(store, "c");
    atomic_bool a_failed, b_failed, c_failed;
    atomic_init(&a_failed, false);
    atomic_init(&b_failed, false);
    atomic_init(&c_failed, false);
    struct waiter w;
    waiter_init(&w);

    /* Step 0 of a, answered while the writer is held, so the next three queue together. */
    struct decision first, d[3];
    w.hold_first = true;
    decision_init(&first, &w, a, 0, 1.0, 0.1, 1, &a_failed);
    submit(store, &first);
    pthread_mutex_lock(&w.lock);
    while (!w.holding)
        pthread_cond_wait(&w.changed, &w.lock);
    pthread_mutex_unlock(&w.lock);
    ck_assert_int_eq(first.status, GLR_OK);

    decision_init(&d[0], &w, b, 0, 2.0, 0.1, 1, &b_failed);
    decision_init(&d[1], &w, a, 0, 1.5, 0.1, 1, &a_failed); /* a's step 0 again */
    decision_init(&d[2], &w, c, 0, 3.0, 0.1, 1, &c_failed);
    for (int i = 0; i < 3; i++)
        submit(store, &d[i]);
    pthread_mutex_lock(&w.lock);
    w.hold_first = false;
    pthread_cond_broadcast(&w.changed);
    pthread_mutex_unlock(&w.lock);
    wait_all(&w);

    pthread_mutex_lock(&groups.lock);
    ck_assert_uint_eq(groups.largest, 3);
    pthread_mutex_unlock(&groups.lock);
    ck_assert_int_eq(d[0].status, GLR_OK);
    ck_assert_int_eq(d[1].status, GLR_ECONFLICT);
    ck_assert_int_eq(d[2].status, GLR_OK);
    ck_assert(has_report(store, b, 0));
    ck_assert(has_report(store, c, 0));
    ck_assert(atomic_load(&a_failed));
    ck_assert(!atomic_load(&b_failed) && !atomic_load(&c_failed));
    /* The stored row of a's step 0 is the first one. */
    struct store_report r;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(store_report_find(store, a, 0, 0, &r, err), GLR_OK);
    ck_assert(r.loss == 1.0);

    /* A later decision of a was made on top of the failed one: it fails unwritten. */
    struct decision later;
    decision_init(&later, &w, a, 1, 0.9, 0.1, 2, &a_failed);
    submit(store, &later);
    wait_all(&w);
    ck_assert(later.answered);
    ck_assert_int_eq(later.status, GLR_EIO);
    ck_assert(!has_report(store, a, 1));
    /* The job's row is still there, as of its last stored decision. */
    struct store_job job;
    ck_assert_int_eq(store_job_load(store, "a", &job, err), GLR_OK);
    ck_assert_int_eq(job.last_step, 0);
    store_job_clear(&job);

    store_close(store);
    waiter_destroy(&w);
    pthread_mutex_destroy(&groups.lock);
}
END_TEST

START_TEST(close_answers_every_queued_decision)
{
    struct store *store = open_store(NULL);
    int64_t a = add_job(store, "a");
    struct waiter w;
    waiter_init(&w);
    enum { N = 50 };
    struct decision d[N];
    for (int i = 0; i < N; i++) {
        decision_init(&d[i], &w, a, i, 1.0 / (i + 1), 0.1, i + 1, NULL);
        submit(store, &d[i]);
    }
    store_close(store);
    for (int i = 0; i < N; i++) {
        ck_assert(d[i].answered);
        ck_assert_int_eq(d[i].status, GLR_OK);
    }
    store = open_store(NULL);
    struct store_job job;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(store_job_load(store, "a", &job, err), GLR_OK);
    ck_assert_int_eq(job.last_step, N - 1);
    ck_assert_int_eq(job.reports, N);
    store_job_clear(&job);
    store_close(store);
    waiter_destroy(&w);
}
END_TEST

/* ---- block summaries -------------------------------------------------------------------- */

static double block_loss(int i)
{
    return i % 17 == 5 ? (double)NAN : 2.0 + sin(i * 0.7);
}

static double block_lr(int i)
{
    return 0.1 / (1 + i / 10);
}

struct blocks {
    size_t n;
    struct summary b[8];
};

static bool collect_block(void *ctx, const struct summary *block)
{
    struct blocks *bs = ctx;
    ck_assert_uint_lt(bs->n, 8);
    bs->b[bs->n++] = *block;
    return true;
}

static struct blocks scan_blocks(struct store *store, int64_t seq)
{
    struct blocks bs = {0};
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(store_block_scan(store, seq, INT64_MIN, INT64_MAX, collect_block, &bs, err) ==
                      GLR_OK,
                  "%s", err);
    return bs;
}

/* What a block of rows from..to-1 must say: summary_add_row() over them, by the lr rule. */
static struct summary expected_block(int from, int to)
{
    struct summary s = {0};
    for (int i = from; i < to; i++) {
        double prev = block_lr(i - 1), lr = block_lr(i);
        bool changed = i > 0 && summary_lrs_differ(&prev, &lr, 1);
        summary_add_row(&s, i, block_loss(i), changed);
    }
    return s;
}

static void assert_same_summary(const struct summary *got, const struct summary *want)
{
    ck_assert_int_eq(got->first_step, want->first_step);
    ck_assert_int_eq(got->last_step, want->last_step);
    ck_assert_int_eq(got->rows, want->rows);
    ck_assert_int_eq(got->changes, want->changes);
    if (want->changes > 0)
        ck_assert_int_eq(got->change_step, want->change_step);
    ck_assert_int_eq(got->low_step, want->low_step);
    ck_assert(got->low_loss == want->low_loss || (isnan(got->low_loss) && isnan(want->low_loss)));
    ck_assert_int_eq(got->have_high, want->have_high);
    if (want->have_high) {
        ck_assert_int_eq(got->high_step, want->high_step);
        ck_assert(got->high_loss == want->high_loss);
    }
}

/* Commits the rows from..to-1 of job seq and waits for them. */
static void commit_rows(struct store *store, int64_t seq, int from, int to)
{
    struct waiter w;
    waiter_init(&w);
    struct decision *d = calloc((size_t)(to - from), sizeof(*d));
    ck_assert_ptr_nonnull(d);
    for (int i = from; i < to; i++) {
        decision_init(&d[i - from], &w, seq, i, block_loss(i), block_lr(i), i + 1, NULL);
        submit(store, &d[i - from]);
    }
    wait_all(&w);
    for (int i = from; i < to; i++)
        ck_assert_int_eq(d[i - from].status, GLR_OK);
    free(d);
    waiter_destroy(&w);
}

START_TEST(full_blocks_are_summarized_as_they_fill)
{
    struct store *store = open_store(NULL);
    int64_t seq = add_job(store, "blocks");
    commit_rows(store, seq, 0, STORE_BLOCK_ROWS - 1);
    ck_assert_uint_eq(scan_blocks(store, seq).n, 0);

    commit_rows(store, seq, STORE_BLOCK_ROWS - 1, STORE_BLOCK_ROWS);
    struct blocks bs = scan_blocks(store, seq);
    ck_assert_uint_eq(bs.n, 1);
    struct summary want = expected_block(0, STORE_BLOCK_ROWS);
    assert_same_summary(&bs.b[0], &want);

    /* Fewer rows than two blocks: the rows after the first are not summarized yet. */
    commit_rows(store, seq, STORE_BLOCK_ROWS, 2 * STORE_BLOCK_ROWS - 1);
    ck_assert_uint_eq(scan_blocks(store, seq).n, 1);

    commit_rows(store, seq, 2 * STORE_BLOCK_ROWS - 1, 2 * STORE_BLOCK_ROWS);
    bs = scan_blocks(store, seq);
    ck_assert_uint_eq(bs.n, 2);
    want = expected_block(STORE_BLOCK_ROWS, 2 * STORE_BLOCK_ROWS);
    assert_same_summary(&bs.b[1], &want);
    ck_assert_int_eq(bs.b[1].first_step, bs.b[0].last_step + 1);

    /* A scan returns only the blocks wholly inside its range. */
    struct blocks part = {0};
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(
        store_block_scan(store, seq, 1, 2 * STORE_BLOCK_ROWS, collect_block, &part, err), GLR_OK);
    ck_assert_uint_eq(part.n, 1);
    ck_assert_int_eq(part.b[0].first_step, STORE_BLOCK_ROWS);
    store_close(store);
}
END_TEST

/* ---- migrations ------------------------------------------------------------------------- */

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *message = NULL;
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &message) == SQLITE_OK, "%s: %s", sql,
                  message ? message : "?");
}

static void set_version(sqlite3 *db, int version)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
    exec_sql(db, sql);
}

/* Builds db_path with the first `version` migrations, as an older greedylr left it. */
static sqlite3 *old_database(int version)
{
    ck_assert_int_le(version, (int)store_migration_count);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    for (int v = 0; v < version; v++)
        exec_sql(db, store_migrations[v].sql);
    set_version(db, version);
    return db;
}

/* The schema version before history blocks, and history rows to backfill in it. */
#define OLD_VERSION 5
#define OLD_ROWS    (2 * STORE_BLOCK_ROWS + 9)

START_TEST(an_older_database_is_migrated_and_backfilled)
{
    sqlite3 *db = old_database(OLD_VERSION);
    exec_sql(db, "INSERT INTO jobs (id, policy, initial_lr, config, state, created_ms,"
                 " updated_ms) VALUES ('old', 'constant', '0.1', '{}', '{}', 1, 1)");
    sqlite3_stmt *insert = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "INSERT INTO history (job_seq, step, rank, loss, lr,"
                                        " event, time_ms) VALUES (1, ?1, 0, ?2, ?3, 'hold', 1)",
                                        -1, &insert, NULL),
                     SQLITE_OK);
    for (int i = 0; i < OLD_ROWS; i++) {
        sqlite3_bind_int(insert, 1, i);
        if (!isnan(block_loss(i)))
            sqlite3_bind_double(insert, 2, block_loss(i));
        sqlite3_bind_double(insert, 3, block_lr(i));
        ck_assert_int_eq(sqlite3_step(insert), SQLITE_DONE);
        sqlite3_reset(insert);
        sqlite3_clear_bindings(insert);
    }
    sqlite3_finalize(insert);
    sqlite3_close(db);

    struct store *store = open_store(NULL);
    ck_assert_int_eq(store_schema_version(store), store_latest_version());
    struct store_job job;
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(store_job_load(store, "old", &job, err) == GLR_OK, "%s", err);
    struct blocks bs = scan_blocks(store, job.seq);
    ck_assert_uint_eq(bs.n, 2);
    struct summary want = expected_block(0, STORE_BLOCK_ROWS);
    assert_same_summary(&bs.b[0], &want);
    want = expected_block(STORE_BLOCK_ROWS, 2 * STORE_BLOCK_ROWS);
    assert_same_summary(&bs.b[1], &want);
    /* The old rows read back, with the columns later migrations added at their defaults. */
    struct store_report r;
    ck_assert_int_eq(store_report_find(store, job.seq, OLD_ROWS - 1, 0, &r, err), GLR_OK);
    ck_assert(r.lrs[0] == block_lr(OLD_ROWS - 1));
    ck_assert(isinf(r.lr_cap));
    ck_assert_int_eq(r.ranks, 1);
    store_job_clear(&job);
    store_close(store);
}
END_TEST

START_TEST(a_newer_database_is_refused)
{
    store_close(open_store(NULL));
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    int newer = store_latest_version() + 1;
    set_version(db, newer);
    sqlite3_close(db);

    struct store *store = NULL;
    char err[GLR_ERR_MAX] = "", number[32];
    ck_assert_int_eq(store_open(db_path, NULL, &store, err), GLR_ECORRUPT);
    ck_assert_ptr_null(store);
    snprintf(number, sizeof(number), "version %d", newer);
    ck_assert_msg(strstr(err, number), "%s", err);
    snprintf(number, sizeof(number), "(%d)", store_latest_version());
    ck_assert_msg(strstr(err, number), "%s", err);
    ck_assert_int_eq(testdb_user_version(db_path), newer);
}
END_TEST

/* ---- tokens ----------------------------------------------------------------------------- */

static struct store_token token_of(const char *name, int64_t created_ms)
{
    struct store_token t = {0};
    snprintf(t.name, sizeof(t.name), "%s", name);
    snprintf(t.role, sizeof(t.role), "reader");
    for (size_t i = 0; i < sizeof(t.hash); i++)
        t.hash[i] = (unsigned char)(name[0] + i);
    t.created_ms = created_ms;
    return t;
}

struct names {
    size_t n;
    char name[8][STORE_TOKEN_NAME_MAX + 1];
};

static bool collect_name(void *ctx, const struct store_token *token)
{
    struct names *ns = ctx;
    ck_assert_uint_lt(ns->n, 8);
    snprintf(ns->name[ns->n++], sizeof(ns->name[0]), "%s", token->name);
    return true;
}

static struct names scan_names(struct store *store)
{
    struct names ns = {0};
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(store_token_scan(store, collect_name, &ns, err) == GLR_OK, "%s", err);
    return ns;
}

START_TEST(token_rows)
{
    struct store *store = open_store(NULL);
    char err[GLR_ERR_MAX] = "";
    struct store_token a = token_of("alpha", 30), b = token_of("bravo", 10),
                       c = token_of("charlie", 20);
    ck_assert_int_eq(store_token_insert(store, &a, err), GLR_OK);
    ck_assert_int_eq(store_token_insert(store, &b, err), GLR_OK);
    ck_assert_int_eq(store_token_insert(store, &c, err), GLR_OK);
    struct store_token again = token_of("bravo", 40);
    again.hash[0] ^= 0xff;
    ck_assert_int_eq(store_token_insert(store, &again, err), GLR_ECONFLICT);
    ck_assert_msg(strstr(err, "bravo"), "%s", err);

    /* Oldest first. */
    struct names ns = scan_names(store);
    ck_assert_uint_eq(ns.n, 3);
    ck_assert_str_eq(ns.name[0], "bravo");
    ck_assert_str_eq(ns.name[1], "charlie");
    ck_assert_str_eq(ns.name[2], "alpha");

    ck_assert_int_eq(store_token_delete(store, "bravo", err), GLR_OK);
    ck_assert_int_eq(store_token_delete(store, "bravo", err), GLR_ENOTFOUND);
    ck_assert_int_eq(store_token_delete(store, "nobody", err), GLR_ENOTFOUND);
    ns = scan_names(store);
    ck_assert_uint_eq(ns.n, 2);
    ck_assert_str_eq(ns.name[0], "charlie");
    ck_assert_str_eq(ns.name[1], "alpha");
    store_close(store);
}
END_TEST

/* ---- job tags --------------------------------------------------------------------------- */

static bool collect_job_id(void *ctx, const struct store_job *job)
{
    struct names *ns = ctx;
    ck_assert_uint_lt(ns->n, sizeof(ns->name) / sizeof(ns->name[0]));
    snprintf(ns->name[ns->n++], sizeof(ns->name[0]), "%.64s", job->id);
    return true;
}

/* The ids of the jobs a scan finds with tag key=value (key NULL: every job). */
static struct names jobs_tagged(struct store *store, const char *key, const char *value)
{
    struct names ns = {0};
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(store_job_scan(store, 0, 100, STORE_ANY, key, value, NULL, collect_job_id, &ns,
                                 err) == GLR_OK,
                  "%s", err);
    return ns;
}

START_TEST(tags_are_indexed_from_the_pairs_given)
{
    struct store *store = open_store(NULL);
    char err[GLR_ERR_MAX] = "";
    struct store_tag tags[] = {{"team", "vision"}, {"size", "large"}};
    int64_t seq =
        add_tagged_job(store, "tagged", "{\"team\":\"vision\",\"size\":\"large\"}", tags, 2);
    add_job(store, "plain");

    struct names ns = jobs_tagged(store, "team", "vision");
    ck_assert_uint_eq(ns.n, 1);
    ck_assert_str_eq(ns.name[0], "tagged");
    ck_assert_uint_eq(jobs_tagged(store, "size", "large").n, 1);
    ck_assert_uint_eq(jobs_tagged(store, "team", "audio").n, 0);
    ck_assert_uint_eq(jobs_tagged(store, NULL, NULL).n, 2);

    /* A patch replaces the tags: the old pairs no longer match, the new ones do. */
    struct store_tag retagged[] = {{"team", "audio"}};
    ck_assert_msg(store_job_patch(store, seq, NULL, NULL, "{\"team\":\"audio\"}", retagged, 1, 5,
                                  err) == GLR_OK,
                  "%s", err);
    ck_assert_uint_eq(jobs_tagged(store, "team", "vision").n, 0);
    ck_assert_uint_eq(jobs_tagged(store, "size", "large").n, 0);
    ck_assert_uint_eq(jobs_tagged(store, "team", "audio").n, 1);
    struct store_job row;
    ck_assert_int_eq(store_job_load(store, "tagged", &row, err), GLR_OK);
    ck_assert_str_eq(row.tags, "{\"team\":\"audio\"}");
    ck_assert_int_eq(row.updated_ms, 5);
    store_job_clear(&row);

    /* A patch of the status alone keeps them. */
    bool finished = true;
    ck_assert_int_eq(store_job_patch(store, seq, &finished, NULL, NULL, NULL, 0, 6, err), GLR_OK);
    ck_assert_uint_eq(jobs_tagged(store, "team", "audio").n, 1);
    ck_assert_int_eq(store_job_patch(store, seq + 100, &finished, NULL, NULL, NULL, 0, 7, err),
                     GLR_ENOTFOUND);
    store_close(store);
}
END_TEST

/* ---- how tools open the store ----------------------------------------------------------- */

/* The threads of this process, from /proc (each case runs in a process of its own). */
static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    int threads = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Threads: %d", &threads) == 1)
            break;
    fclose(f);
    ck_assert_int_gt(threads, 0);
    return threads;
}

/*
 * Waits until the process has `expected` threads: a joined thread may still be counted
 * for a moment, until the kernel has released it.
 */
static void wait_threads(int expected)
{
    for (int i = 0; i < 100 && thread_count() != expected; i++)
        testutil_sleep_ms(10);
    ck_assert_int_eq(thread_count(), expected);
}

START_TEST(without_threads_starts_none_and_still_writes)
{
    int before = thread_count();
    struct store_options options = {.sync = STORE_SYNC_FULL, .without_threads = true};
    struct store *store = open_store(&options);
    ck_assert_int_eq(thread_count(), before);
    ck_assert_int_eq(store_schema_version(store), store_latest_version());
    char err[GLR_ERR_MAX] = "";
    struct store_token t = token_of("tool", 1);
    ck_assert_int_eq(store_token_insert(store, &t, err), GLR_OK);
    add_job(store, "job");
    store_close(store);

    /* A store with threads starts two: the writer and the checkpointer. */
    store = open_store(NULL);
    ck_assert_int_eq(thread_count(), before + 2);
    ck_assert_uint_eq(scan_names(store).n, 1);
    store_close(store);
    wait_threads(before);
}
END_TEST

START_TEST(read_only_refuses_a_missing_database)
{
    struct store_options options = {.read_only = true};
    struct store *store = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(store_open(db_path, &options, &store, err), GLR_ENOTFOUND);
    ck_assert_ptr_null(store);
    ck_assert_msg(strstr(err, db_path), "%s", err);
    ck_assert(!exists(db_path));
}
END_TEST

START_TEST(read_only_neither_migrates_nor_writes)
{
    sqlite3_close(old_database(OLD_VERSION));
    int before = thread_count();
    struct store_options options = {.read_only = true};
    struct store *store = NULL;
    char err[GLR_ERR_MAX] = "", number[32];
    ck_assert_int_eq(store_open(db_path, &options, &store, err), GLR_ECORRUPT);
    ck_assert_ptr_null(store);
    snprintf(number, sizeof(number), "version %d", OLD_VERSION);
    ck_assert_msg(strstr(err, number), "%s", err);
    snprintf(number, sizeof(number), "(%d)", store_latest_version());
    ck_assert_msg(strstr(err, number), "%s", err);
    ck_assert_int_eq(testdb_user_version(db_path), OLD_VERSION);

    /* Migrated by an ordinary open, it reads; it still refuses writes. */
    store = open_store(NULL);
    struct store_token t = token_of("kept", 1);
    ck_assert_int_eq(store_token_insert(store, &t, err), GLR_OK);
    store_close(store);
    store = open_store(&options);
    ck_assert_int_eq(thread_count(), before);
    ck_assert_int_eq(store_schema_version(store), store_latest_version());
    struct names ns = scan_names(store);
    ck_assert_uint_eq(ns.n, 1);
    ck_assert_str_eq(ns.name[0], "kept");
    struct store_token other = token_of("other", 2);
    /* Refused as a write to a read-only database is: 503 with Retry-After, saying why. */
    ck_assert_int_eq(store_token_insert(store, &other, err), GLR_EBUSY);
    ck_assert_msg(strstr(err, "read-only"), "%s", err);
    ck_assert_int_ne(store_token_delete(store, "kept", err), GLR_OK);
    store_close(store);
    store = open_store(NULL);
    ck_assert_uint_eq(scan_names(store).n, 1);
    store_close(store);
}
END_TEST

/* ---- backup ----------------------------------------------------------------------------- */

START_TEST(backup_copies_a_live_database)
{
    struct store *store = open_store(NULL);
    int64_t seq = add_job(store, "saved");
    commit_rows(store, seq, 0, STORE_BLOCK_ROWS);
    char err[GLR_ERR_MAX] = "";
    struct store_token t = token_of("saved", 1);
    ck_assert_int_eq(store_token_insert(store, &t, err), GLR_OK);

    char copy[PATH_MAX_TEST], wal[PATH_MAX_TEST + 8];
    snprintf(copy, sizeof(copy), "%s/copy.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", copy);
    int64_t bytes = 0;
    ck_assert_msg(store_backup(db_path, copy, false, &bytes, err) == GLR_OK, "%s", err);
    ck_assert_int_gt(bytes, 0);
    ck_assert(!exists(wal));
    /* Written after the copy: not in it. */
    add_job(store, "later");
    ck_assert_int_eq(store_backup(db_path, db_path, true, &bytes, err), GLR_EINVAL);
    store_close(store);

    char saved_db[PATH_MAX_TEST];
    snprintf(saved_db, sizeof(saved_db), "%s", db_path);
    snprintf(db_path, sizeof(db_path), "%s", copy);
    struct store_options options = {.read_only = true};
    store = open_store(&options);
    struct store_job job;
    ck_assert_int_eq(store_job_load(store, "saved", &job, err), GLR_OK);
    ck_assert_int_eq(job.reports, STORE_BLOCK_ROWS);
    ck_assert_uint_eq(scan_blocks(store, job.seq).n, 1);
    store_job_clear(&job);
    ck_assert_int_eq(store_job_load(store, "later", &job, err), GLR_ENOTFOUND);
    ck_assert_uint_eq(scan_names(store).n, 1);
    store_close(store);

    /* Only a greedylr database is copied, and only one that exists. */
    char other[PATH_MAX_TEST], missing[PATH_MAX_TEST];
    snprintf(other, sizeof(other), "%s/other.db", dir);
    snprintf(missing, sizeof(missing), "%s/missing.db", dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(other, &db), SQLITE_OK);
    exec_sql(db, "CREATE TABLE t (x)");
    sqlite3_close(db);
    ck_assert_int_eq(store_backup(other, copy, false, &bytes, err), GLR_ECONFLICT);
    ck_assert_int_eq(store_backup(other, copy, true, &bytes, err), GLR_EINVAL);
    ck_assert_int_eq(store_backup(missing, copy, true, &bytes, err), GLR_EIO);
    ck_assert(!exists(missing));
    snprintf(db_path, sizeof(db_path), "%s", saved_db);
}
END_TEST

/* Adds a case of the suite whose tests each get a temporary directory (setup, teardown). */
static void add_case(Suite *suite, const char *name, const TTest *const *tests, size_t n)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    for (size_t i = 0; i < n; i++)
        tcase_add_test(tc, tests[i]);
    suite_add_tcase(suite, tc);
}

#define ADD_CASE(suite, name, ...)                                                                 \
    do {                                                                                           \
        const TTest *const tests_[] = {__VA_ARGS__};                                               \
        add_case(suite, name, tests_, sizeof(tests_) / sizeof(tests_[0]));                         \
    } while (0)

/* ---- rewinds ----------------------------------------------------------------------- */

/* Rows of the long history a rewind forgets: twenty batches. */
#define REWIND_ROWS (20 * STORE_REWIND_BATCH)

/* A thread that writes (creates jobs) over and over while a rewind runs. */
struct writer_beside {
    struct store *store;
    atomic_bool stop;
    atomic_int done; /* writes completed */
    double worst_s;  /* the longest one took; read after the thread is joined */
};

static void *write_beside(void *arg)
{
    struct writer_beside *w = arg;
    for (int i = 0; !atomic_load(&w->stop); i++) {
        struct store_job job = {.policy = "constant",
                                .initial_lr = "0.1",
                                .config = "{}",
                                .tags = "{}",
                                .state = "{}",
                                .last_step = -1,
                                .world_size = 1};
        snprintf(job.id, sizeof(job.id), "beside-%d", i);
        snprintf(job.aggregate, sizeof(job.aggregate), "mean");
        char err[GLR_ERR_MAX] = "";
        double started = testutil_seconds();
        int rc = store_job_insert(w->store, &job, NULL, 0, err);
        double took = testutil_seconds() - started;
        ck_assert_msg(rc == GLR_OK, "%s", err);
        if (took > w->worst_s)
            w->worst_s = took;
        atomic_fetch_add(&w->done, 1);
    }
    return NULL;
}

START_TEST(a_long_rewind_lets_other_writes_through)
{
    struct store *store = open_store(NULL);
    int64_t seq = add_job(store, "long");
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
             " INSERT INTO history (job_seq, step, rank, loss, metric, lr, event, time_ms)"
             " SELECT %lld, i, 0, 2.0, 2.0, 0.1, 'hold', 0 FROM n;"
             "INSERT INTO snapshots (job_seq, step, reports, state)"
             " VALUES (%lld, 4095, 4096, '{}'), (%lld, 8191, 8192, '{}');"
             "UPDATE jobs SET last_step = %d, reports = %d WHERE seq = %lld",
             REWIND_ROWS - 1, (long long)seq, (long long)seq, (long long)seq, REWIND_ROWS - 1,
             REWIND_ROWS, (long long)seq);
    testdb_exec(db_path, sql);

    struct writer_beside w = {.store = store};
    atomic_init(&w.stop, false);
    atomic_init(&w.done, 0);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, write_beside, &w), 0);
    while (atomic_load(&w.done) == 0)
        testutil_sleep_ms(1);
    int done_before = atomic_load(&w.done);
    double started = testutil_seconds();
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(store_rewind_commit(store, seq, 9, "{}", 9, 10, 1, err) == GLR_OK, "%s", err);
    double took = testutil_seconds() - started;
    int done_during = atomic_load(&w.done) - done_before;
    atomic_store(&w.stop, true);
    pthread_join(thread, NULL);
    store_close(store);

    /* Everything after step 9 is gone, and the row says where the job stands. */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM history WHERE job_seq = %lld", (long long)seq);
    ck_assert_int_eq(testdb_integer(db_path, sql), 10);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM snapshots WHERE job_seq = %lld",
             (long long)seq);
    ck_assert_int_eq(testdb_integer(db_path, sql), 0);
    snprintf(sql, sizeof(sql), "SELECT last_step * 1000 + reports FROM jobs WHERE seq = %lld",
             (long long)seq);
    ck_assert_int_eq(testdb_integer(db_path, sql), 9 * 1000 + 10);
    /*
     * The other writer was held back for a batch at a time, not for the whole rewind: in
     * one transaction, its longest write would take about as long as the rewind.
     */
    ck_assert_msg(done_during >= 5, "%d writes went through during a rewind of %.3f s", done_during,
                  took);
    ck_assert_msg(w.worst_s < took / 4, "a write waited %.3f s during a rewind of %.3f s",
                  w.worst_s, took);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("store");
    ADD_CASE(suite, "commit", group_commit_isolates_a_failing_decision,
             close_answers_every_queued_decision);
    ADD_CASE(suite, "blocks", full_blocks_are_summarized_as_they_fill);
    ADD_CASE(suite, "migrations", an_older_database_is_migrated_and_backfilled,
             a_newer_database_is_refused);
    ADD_CASE(suite, "tokens", token_rows);
    ADD_CASE(suite, "tags", tags_are_indexed_from_the_pairs_given);
    ADD_CASE(suite, "tools", without_threads_starts_none_and_still_writes,
             read_only_refuses_a_missing_database, read_only_neither_migrates_nor_writes);
    ADD_CASE(suite, "backup", backup_copies_a_live_database);
    ADD_CASE(suite, "rewind", a_long_rewind_lets_other_writes_through);
    return testutil_run(suite);
}
