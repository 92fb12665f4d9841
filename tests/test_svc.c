/*
 * The service on its own, through svc.h, over a real store in a temporary directory: the
 * waits the deadline heap ends (a late rank, a lookup), that clients are called back with
 * no lock of the service held, that listings and history reads leave cold jobs out of
 * memory, and the bound on CSV exports.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/status.h"
#include "svc/svc.h"
#include "testutil.h"

/* Longest path a case builds inside its temporary directory. */
#define PATH_MAX_TEST 512

static char dir[TESTUTIL_DIR_MAX];
static char db_path[PATH_MAX_TEST];
static struct svc *svc;

static void open_svc(void)
{
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(svc_open(db_path, NULL, &svc, err) == GLR_OK, "%s", err);
}

static void setup(void)
{
    testutil_tmpdir("glr-svc", dir);
    snprintf(db_path, sizeof(db_path), "%s/svc.db", dir);
    open_svc();
}

static void teardown(void)
{
    svc_close(svc);
    svc = NULL;
    testutil_tmpdir_remove(dir);
}

/* Creates job id from the JSON of a create request's lr and, optionally, its ranks. */
static void create(const char *id, const char *lr, int world_size, int timeout_ms)
{
    cJSON *lr_json = testutil_parse(lr);
    cJSON *world = world_size ? cJSON_CreateNumber(world_size) : NULL;
    cJSON *timeout = timeout_ms ? cJSON_CreateNumber(timeout_ms) : NULL;
    struct svc_create request = {
        .id = id, .lr = lr_json, .world_size = world, .aggregate_timeout_ms = timeout};
    bool created = false;
    cJSON *job = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(svc_job_create(svc, &request, &created, &job, err) == GLR_OK, "%s", err);
    ck_assert(created);
    cJSON_Delete(job);
    cJSON_Delete(lr_json);
    cJSON_Delete(world);
    cJSON_Delete(timeout);
}

/* ---- a waiter a test can wait on ------------------------------------------------------- */

struct wait {
    struct svc_waiter waiter; /* first: done() finds the wait from it */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool answered;
    int status;
    struct svc_report_result result;
    double answered_at;
    const char *job; /* when set, done() reads this job from the service */
    int reentered;   /* what that read gave */
};

static void done(struct svc_waiter *waiter, int status, const struct svc_report_result *result,
                 const char *err)
{
    (void)err;
    struct wait *w = (struct wait *)(void *)waiter;
    /*
     * Calling the service back from done must work: it is called with none of the
     * service's locks held (a job lock held here would deadlock, or fail the lock order).
     */
    int reentered = GLR_OK;
    if (w->job) {
        cJSON *job = NULL;
        char e[GLR_ERR_MAX];
        reentered = svc_job_get(svc, w->job, &job, e);
        cJSON_Delete(job);
    }
    pthread_mutex_lock(&w->lock);
    w->answered = true;
    w->status = status;
    if (result)
        w->result = *result;
    w->answered_at = testutil_seconds();
    w->reentered = reentered;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
}

static void wait_init(struct wait *w, const char *job)
{
    memset(w, 0, sizeof(*w));
    w->waiter.done = done;
    w->job = job;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
}

/* Waits for the answer (at most 30 s, stretched under valgrind); returns its status. */
static int wait_answer(struct wait *w)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30 * testutil_slow();
    pthread_mutex_lock(&w->lock);
    while (!w->answered && pthread_cond_timedwait(&w->changed, &w->lock, &until) == 0)
        ;
    ck_assert_msg(w->answered, "no answer came");
    int status = w->status;
    pthread_mutex_unlock(&w->lock);
    return status;
}

static void wait_destroy(struct wait *w)
{
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->changed);
}

/* Reports step of a job of one rank and waits for its commit. */
static void report(const char *id, int64_t step, double loss)
{
    struct wait w;
    wait_init(&w, NULL);
    struct svc_report_result r;
    char err[GLR_ERR_MAX] = "";
    int rc = svc_report(svc, id, &(struct svc_report_input){step, 0, loss, true, INFINITY},
                        &w.waiter, &r, err);
    ck_assert_msg(rc == GLR_EWAIT, "%d %s", rc, err);
    ck_assert_int_eq(wait_answer(&w), GLR_OK);
    wait_destroy(&w);
}

/* ---- waits the heap ends ---------------------------------------------------------------- */

START_TEST(a_late_rank_is_decided_at_the_timeout)
{
    create("ranks", "0.1", 2, 200);
    struct wait w;
    wait_init(&w, "ranks");
    struct svc_report_result r;
    char err[GLR_ERR_MAX] = "";
    double start = testutil_seconds();
    ck_assert_int_eq(svc_report(svc, "ranks", &(struct svc_report_input){0, 0, 1.0, true, INFINITY},
                                &w.waiter, &r, err),
                     GLR_EWAIT);
    ck_assert_int_eq(wait_answer(&w), GLR_OK);
    /* Decided with the one rank that came, after the timeout and not before. */
    ck_assert_msg(w.answered_at - start >= 0.2, "decided after %.3f s", w.answered_at - start);
    ck_assert_int_eq(w.result.step, 0);
    ck_assert_int_eq(w.result.ranks, 1);
    ck_assert_int_eq(w.reentered, GLR_OK);
    struct svc_stats stats;
    ck_assert_int_eq(svc_stats(svc, &stats, err), GLR_OK);
    ck_assert_int_eq(stats.waiting_requests, 0);
    wait_destroy(&w);
}
END_TEST

START_TEST(a_lookup_ends_after_its_wait)
{
    create("lookup", "0.1", 0, 0);
    report("lookup", 0, 1.0);
    struct wait early, late;
    wait_init(&early, "lookup");
    wait_init(&late, "lookup");
    struct svc_report_result r;
    char err[GLR_ERR_MAX] = "";
    double start = testutil_seconds();
    /* Two lookups of a step not decided: the shorter wait ends first, each at its time. */
    ck_assert_int_eq(svc_lr(svc, "lookup", 1, 400, &late.waiter, &r, err), GLR_EWAIT);
    ck_assert_int_eq(svc_lr(svc, "lookup", 1, 100, &early.waiter, &r, err), GLR_EWAIT);
    struct svc_stats stats;
    ck_assert_int_eq(svc_stats(svc, &stats, err), GLR_OK);
    ck_assert_int_eq(stats.waiting_requests, 2);
    ck_assert_int_eq(stats.waiting_jobs, 1);
    ck_assert_int_eq(wait_answer(&early), GLR_EAGAIN);
    ck_assert_int_eq(wait_answer(&late), GLR_EAGAIN);
    ck_assert_msg(early.answered_at - start >= 0.1, "%.3f s", early.answered_at - start);
    ck_assert_msg(late.answered_at - start >= 0.4, "%.3f s", late.answered_at - start);
    ck_assert(early.answered_at < late.answered_at);
    ck_assert_int_eq(early.reentered, GLR_OK);
    ck_assert_int_eq(svc_stats(svc, &stats, err), GLR_OK);
    ck_assert_int_eq(stats.waiting_requests, 0);
    ck_assert_int_eq(stats.waiting_jobs, 0);

    /* A lookup answered by the decision it waited for. */
    struct wait decided;
    wait_init(&decided, "lookup");
    ck_assert_int_eq(svc_lr(svc, "lookup", 1, 10000, &decided.waiter, &r, err), GLR_EWAIT);
    report("lookup", 1, 0.5);
    ck_assert_int_eq(wait_answer(&decided), GLR_OK);
    ck_assert_int_eq(decided.result.step, 1);
    wait_destroy(&early);
    wait_destroy(&late);
    wait_destroy(&decided);
}
END_TEST

START_TEST(stopping_answers_every_waiter)
{
    create("stop", "0.1", 3, 60000);
    struct wait w;
    wait_init(&w, NULL);
    struct svc_report_result r;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(svc_report(svc, "stop", &(struct svc_report_input){0, 1, 1.0, true, INFINITY},
                                &w.waiter, &r, err),
                     GLR_EWAIT);
    svc_cancel_waiters(svc);
    ck_assert_int_eq(wait_answer(&w), GLR_EBUSY);
    /* And no new waiter is taken. */
    struct wait after;
    wait_init(&after, NULL);
    ck_assert_int_eq(svc_lr(svc, "stop", 5, 1000, &after.waiter, &r, err), GLR_EBUSY);
    wait_destroy(&w);
    wait_destroy(&after);
}
END_TEST

/*
 * A waiter given up (its client went away) is answered at once and leaves the counts; one
 * given up twice, or one that waits on nothing, is left alone. A rank's loss stays.
 */
START_TEST(a_waiter_given_up_is_answered_at_once)
{
    create("gone", "0.1", 2, 3600000);
    struct wait lookup, rank;
    wait_init(&lookup, "gone");
    wait_init(&rank, NULL);
    struct svc_report_result r;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(svc_lr(svc, "gone", 0, 60000, &lookup.waiter, &r, err), GLR_EWAIT);
    ck_assert_int_eq(svc_report(svc, "gone", &(struct svc_report_input){0, 0, 2.0, true, INFINITY},
                                &rank.waiter, &r, err),
                     GLR_EWAIT);
    struct svc_stats stats;
    ck_assert_int_eq(svc_stats(svc, &stats, err), GLR_OK);
    ck_assert_int_eq(stats.waiting_requests, 2);
    svc_cancel_waiter(svc, "gone", &lookup.waiter);
    svc_cancel_waiter(svc, "gone", &rank.waiter);
    ck_assert(lookup.answered && rank.answered); /* before svc_cancel_waiter returned */
    ck_assert_int_eq(lookup.status, GLR_EBUSY);
    ck_assert_int_eq(rank.status, GLR_EBUSY);
    ck_assert_int_eq(lookup.reentered, GLR_OK);
    ck_assert_int_eq(svc_stats(svc, &stats, err), GLR_OK);
    ck_assert_int_eq(stats.waiting_requests, 0);
    ck_assert_int_eq(stats.waiting_jobs, 1); /* the step is still gathered */
    /* Given up again, or on a job that is not there: nothing happens. */
    lookup.answered = false;
    svc_cancel_waiter(svc, "gone", &lookup.waiter);
    svc_cancel_waiter(svc, "nowhere", &lookup.waiter);
    ck_assert(!lookup.answered);
    /* Rank 0's loss counted: rank 1 completes the step on both, and rank 0's retry replays. */
    struct wait last, retry;
    wait_init(&last, NULL);
    wait_init(&retry, NULL);
    ck_assert_int_eq(svc_report(svc, "gone", &(struct svc_report_input){0, 1, 4.0, true, INFINITY},
                                &last.waiter, &r, err),
                     GLR_EWAIT);
    ck_assert_int_eq(wait_answer(&last), GLR_OK);
    ck_assert_int_eq(last.result.ranks, 2);
    ck_assert_int_eq(svc_report(svc, "gone", &(struct svc_report_input){0, 0, 2.0, true, INFINITY},
                                &retry.waiter, &r, err),
                     GLR_OK);
    ck_assert(r.replayed);
    wait_destroy(&lookup);
    wait_destroy(&rank);
    wait_destroy(&last);
    wait_destroy(&retry);
}
END_TEST

/* ---- reads that leave cold jobs cold ------------------------------------------------------ */

static int64_t jobs_in_memory(void)
{
    struct svc_stats stats;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(svc_stats(svc, &stats, err), GLR_OK);
    return stats.jobs_in_memory;
}

START_TEST(listing_and_history_leave_cold_jobs_out_of_memory)
{
    /* 70 reports: the job's row has the state after 64, the replay gives the rest. */
    create("cold-a", "0.1", 0, 0);
    create("cold-b", "[0.1,0.2]", 0, 0);
    for (int k = 0; k < 70; k++)
        report("cold-a", k, 1.0 / (k + 1));
    report("cold-b", 0, 1.0);
    cJSON *before = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(svc_job_get(svc, "cold-a", &before, err), GLR_OK);
    svc_close(svc);
    open_svc();
    ck_assert_int_eq(jobs_in_memory(), 0);

    struct svc_list_query query = {.page_size = 10};
    cJSON *page = NULL;
    ck_assert_msg(svc_job_list(svc, &query, &page, err) == GLR_OK, "%s", err);
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(page, "jobs");
    ck_assert_int_eq(cJSON_GetArraySize(jobs), 2);
    /* Described as it is, not as its row was: the same as a GET before the restart. */
    ck_assert(cJSON_Compare(cJSON_GetArrayItem(jobs, 0), before, true));
    ck_assert_int_eq(jobs_in_memory(), 0);

    struct svc_history_query history = {.to_step = 1000, .page_size = 100};
    cJSON *points = NULL;
    ck_assert_msg(svc_history(svc, "cold-b", &history, &points, err) == GLR_OK, "%s", err);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(points, "points");
    ck_assert_int_eq(cJSON_GetArraySize(list), 1);
    ck_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "lr")));
    ck_assert_int_eq(jobs_in_memory(), 0);

    cJSON *job = NULL;
    ck_assert_int_eq(svc_job_get(svc, "cold-a", &job, err), GLR_OK);
    ck_assert_int_eq(jobs_in_memory(), 1);
    cJSON_Delete(job);
    cJSON_Delete(points);
    cJSON_Delete(page);
    cJSON_Delete(before);
}
END_TEST

/* ---- CSV exports ------------------------------------------------------------------------- */

START_TEST(csv_exports_are_bounded)
{
    create("csv", "0.1", 0, 0);
    report("csv", 0, 1.0);
    struct svc_csv *open[SVC_CSV_EXPORTS_MAX];
    char err[GLR_ERR_MAX] = "";
    for (int i = 0; i < SVC_CSV_EXPORTS_MAX; i++)
        ck_assert_msg(svc_csv_open(svc, "csv", 0, 10, &open[i], err) == GLR_OK, "%s", err);
    struct svc_csv *more = NULL;
    ck_assert_int_eq(svc_csv_open(svc, "csv", 0, 10, &more, err), GLR_EBUSY);
    ck_assert_msg(strstr(err, "CSV exports"), "%s", err);
    ck_assert_ptr_null(more);
    /* One that ends makes room; one that fails (no such job) takes none. */
    svc_csv_close(open[0]);
    ck_assert_int_eq(svc_csv_open(svc, "nothing", 0, 10, &more, err), GLR_ENOTFOUND);
    ck_assert_int_eq(svc_csv_open(svc, "csv", 0, 10, &open[0], err), GLR_OK);
    char text[256];
    ssize_t n = svc_csv_read(open[0], text, sizeof(text) - 1);
    ck_assert_int_gt(n, 0);
    text[n] = '\0';
    ck_assert_msg(strncmp(text, "step,loss,lr,event\n0,1,", 23) == 0, "%s", text);
    for (int i = 0; i < SVC_CSV_EXPORTS_MAX; i++)
        svc_csv_close(open[i]);
}
END_TEST

/* ---- the clocks the service keeps time with ----------------------------------------------- */

START_TEST(times_are_rfc3339_in_utc)
{
    const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1764694537123, "2025-12-02T16:55:37.123Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        /* Past year 9999, RFC 3339 has no form: the digits say what the year was. */
        {253402300800000, "10000-01-01T00:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[GLR_TIME_TEXT_MAX];
        glr_clock_format(cases[i].ms, text);
        ck_assert_str_eq(text, cases[i].text);
    }
    /* A deadline is never early: after_ms later at least, on the monotonic clock. */
    int64_t before = glr_clock_mono_ms();
    int64_t deadline = glr_clock_mono_deadline(5);
    ck_assert_int_ge(deadline, before + 5);
    ck_assert_int_le(deadline, glr_clock_mono_ms() + 6);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("svc");
    TCase *tc = tcase_create("waits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_late_rank_is_decided_at_the_timeout);
    tcase_add_test(tc, a_lookup_ends_after_its_wait);
    tcase_add_test(tc, stopping_answers_every_waiter);
    tcase_add_test(tc, a_waiter_given_up_is_answered_at_once);
    suite_add_tcase(suite, tc);
    tc = tcase_create("reads");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, listing_and_history_leave_cold_jobs_out_of_memory);
    tcase_add_test(tc, csv_exports_are_bounded);
    suite_add_tcase(suite, tc);
    tc = tcase_create("clock");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, times_are_rfc3339_in_utc);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
