/*
 * Rewind over HTTP: a job put back to the state right after a step answers the same
 * losses with the same learning rates, bit for bit, whether the state comes from replaying
 * history alone or from a snapshot and history; the rewind survives a restart.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apitest.h"
#include "golden.h"
#include "base/jsonx.h"
#include "testdb.h"
#include "testutil.h"

static void create_job(const char *id, const char *policy, const cJSON *lr, const cJSON *config)
{
    char *lr_text = testutil_print_exact(lr);
    char *config_text = testutil_print_exact(config);
    char body[4096], path[128];
    snprintf(body, sizeof(body), "{\"policy\":\"%s\",\"lr\":%s,\"config\":%s}", policy, lr_text,
             config_text);
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    cJSON_Delete(httpc_expect(&client, "PUT", path, body, 201));
    free(lr_text);
    free(config_text);
}

/* Reports losses[from..to) and checks every lr against expected (groups per step). */
static void report_and_compare(const char *id, const double *losses, const double *expected,
                               size_t groups, int from, int to)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    for (int k = from; k < to; k++) {
        char loss[JSONX_DOUBLE_MAX], body[128];
        jsonx_format_double(losses[k], loss);
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", k, loss);
        struct httpc_response r;
        httpc_json(&client, "POST", path, body, &r);
        if (r.status != 200)
            ck_abort_msg("%s step %d: status %d: %s", id, k, r.status, r.body);
        cJSON *a = cJSON_Parse(r.body);
        httpc_response_free(&r);
        const cJSON *lr = cJSON_GetObjectItemCaseSensitive(a, "lr");
        for (size_t g = 0; g < groups; g++) {
            double v = NAN;
            const cJSON *item = cJSON_IsArray(lr) ? cJSON_GetArrayItem(lr, (int)g) : lr;
            if (!jsonx_get_double(item, &v) || v != expected[(size_t)k * groups + g])
                ck_abort_msg("%s step %d group %zu: %.17g, expected %.17g", id, k, g, v,
                             expected[(size_t)k * groups + g]);
        }
        cJSON_Delete(a);
    }
}

static cJSON *rewind_to(const char *id, int to_step)
{
    char path[128], body[64];
    snprintf(path, sizeof(path), "/v1/jobs/%s/rewind", id);
    snprintf(body, sizeof(body), "{\"to_step\":%d}", to_step);
    return httpc_expect(&client, "POST", path, body, 200);
}

static int number(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    ck_assert_msg(cJSON_IsNumber(item), "no %s", key);
    return (int)item->valuedouble;
}

/*
 * Every third golden case of a few hundred steps or more (a sample keeps the suite short):
 * rewind to two points, go on again each time.
 */
START_TEST(golden_case_rewinds_exactly)
{
    const struct golden_case *gc = &golden_cases[_i];
    /* Under valgrind (slow) a smaller sample: memcheck sees the same code either way. */
    if (gc->steps < 200 || _i % (testutil_slow() > 1 ? 9 : 3) != 0)
        return;
    char id[96];
    snprintf(id, sizeof(id), "rw-%s", gc->name);
    create_job(id, gc->policy, gc->lr, gc->config);
    report_and_compare(id, gc->losses, gc->expected, gc->groups, 0, gc->steps);
    int points[] = {gc->steps * (2 + _i % 5) / 7, 0};
    for (int i = 0; i < 2; i++) {
        cJSON *job = rewind_to(id, points[i]);
        ck_assert_int_eq(number(job, "last_step"), points[i]);
        ck_assert_int_eq(number(job, "reports"), points[i] + 1);
        ck_assert_int_eq(number(job, "rewinds"), i + 1);
        cJSON_Delete(job);
        report_and_compare(id, gc->losses, gc->expected, gc->groups, points[i] + 1, gc->steps);
    }
}
END_TEST

START_TEST(rewind_forgets_history_and_can_go_to_the_start)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/rw-start",
                              "{\"lr\":0.1,\"config\":{\"patience\":1}}", 201));
    for (int k = 0; k < 20; k++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", k, 20 - k);
        cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/rw-start/reports", body, 200));
    }
    cJSON_Delete(rewind_to("rw-start", 9));
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/rw-start/history", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(h, "points")), 10);
    cJSON_Delete(h);
    /* Step 10 is new again: a different loss is no conflict. */
    cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/rw-start/reports",
                              "{\"step\":10,\"loss\":99}", 200));

    cJSON *job = rewind_to("rw-start", -1);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "last_step")));
    ck_assert_int_eq(number(job, "reports"), 0);
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(job, "state");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(state, "best")));
    double lr = 0;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(job, "lr"), &lr) && lr == 0.1);
    cJSON_Delete(job);
    /* Rewinding to the last step changes nothing: a retried rewind is answered alike. */
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/rw-start/reports", "{\"step\":0,\"loss\":3}", 200));
    job = rewind_to("rw-start", 0);
    ck_assert_int_eq(number(job, "rewinds"), 2);
    ck_assert_int_eq(number(job, "last_step"), 0);
    cJSON_Delete(job);
    /* Beyond the last step there is nothing to go back to: 409, naming the last step. */
    struct httpc_response r;
    httpc_json(&client, "POST", "/v1/jobs/rw-start/rewind", "{\"to_step\":1000}", &r);
    ck_assert_int_eq(r.status, 409);
    ck_assert_msg(strstr(r.body, "decided steps up to 0"), "%s", r.body);
    httpc_response_free(&r);
    job = httpc_expect(&client, "GET", "/v1/jobs/rw-start", NULL, 200);
    ck_assert_int_eq(number(job, "rewinds"), 2);
    cJSON_Delete(job);
}
END_TEST

START_TEST(rewind_runs_a_finished_job_again)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/rw-fin", "{\"lr\":0.1}", 201));
    for (int k = 0; k < 3; k++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":1}", k);
        cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/rw-fin/reports", body, 200));
    }
    cJSON_Delete(
        httpc_expect(&client, "PATCH", "/v1/jobs/rw-fin", "{\"status\":\"finished\"}", 200));
    cJSON *job = rewind_to("rw-fin", 1);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(job, "status")->valuestring, "running");
    cJSON_Delete(job);
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/rw-fin/reports", "{\"step\":2,\"loss\":0.5}", 200));
    cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/rw-none/rewind", "{\"to_step\":1}", 404));
    cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/rw-fin/rewind", "{\"to_step\":-2}", 422));
}
END_TEST

/* Long enough to have snapshots: rewinds land before, between and after them. */
START_TEST(rewind_from_snapshots_is_exact)
{
    /* Past two snapshots (one every 4096 reports); past one only when running slow. */
    const int STEPS = testutil_slow() > 1 ? 4500 : 9000;
    double *losses = malloc((size_t)STEPS * sizeof(double));
    double *lrs = malloc((size_t)STEPS * sizeof(double));
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/rw-long",
                              "{\"lr\":0.1,\"config\":{\"patience\":3,\"smooth\":true,"
                              "\"window_size\":7,\"reset_start\":20}}",
                              201));
    for (int k = 0; k < STEPS; k++) {
        losses[k] = 2.0 / (1.0 + 0.001 * k) + 0.2 * sin(k * 0.7) * cos(k * 0.013);
        char loss[JSONX_DOUBLE_MAX], body[96];
        jsonx_format_double(losses[k], loss);
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", k, loss);
        struct httpc_response r;
        httpc_json(&client, "POST", "/v1/jobs/rw-long/reports", body, &r);
        if (r.status != 200)
            ck_abort_msg("step %d: %d", k, r.status);
        cJSON *a = cJSON_Parse(r.body);
        jsonx_get_double(cJSON_GetObjectItemCaseSensitive(a, "lr"), &lrs[k]);
        cJSON_Delete(a);
        httpc_response_free(&r);
    }
    /* Each point below the steps reported again after the one before. */
    int points[] = {STEPS - 500, 8191, 5000, 4096, 4095, 100};
    for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
        if (points[i] >= STEPS - 300 && i > 0)
            continue; /* beyond a shorter run */
        cJSON_Delete(rewind_to("rw-long", points[i]));
        int end = points[i] + 300 < STEPS ? points[i] + 300 : STEPS;
        report_and_compare("rw-long", losses, lrs, 1, points[i] + 1, end);
    }
    free(losses);
    free(lrs);
}
END_TEST

START_TEST(rewind_survives_a_restart)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/rw-restart", "{\"lr\":0.1}", 201));
    for (int k = 0; k < 10; k++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", k, k % 3);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/rw-restart/reports", body, 200));
    }
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/rw-restart/rewind", "{\"to_step\":4}", 200));
    httpc_close(&c);
    daemon_kill(&d);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/rw-restart", NULL, 200);
    ck_assert_int_eq(number(job, "last_step"), 4);
    ck_assert_int_eq(number(job, "rewinds"), 1);
    cJSON_Delete(job);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Reports steps [from, to) of job id with loss 1 + step/1000, but marked at one step. */
static void report_range(const char *id, int from, int to, int marked_step, double marked_loss)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    for (int k = from; k < to; k++) {
        char loss[JSONX_DOUBLE_MAX], body[128];
        jsonx_format_double(k == marked_step ? marked_loss : 1.0 + k / 1000.0, loss);
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", k, loss);
        cJSON_Delete(httpc_expect(&client, "POST", path, body, 200));
    }
}

/*
 * Downsampled history after a rewind shows the new rows only: the summaries of the blocks
 * past the rewind went with their rows, and the new rows make new ones.
 */
START_TEST(rewind_forgets_the_history_summaries)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/rw-blocks", "{\"lr\":0.1}", 201));
    report_range("rw-blocks", 0, 2000, 1500, -9.0);
    cJSON_Delete(rewind_to("rw-blocks", 1000));
    report_range("rw-blocks", 1001, 2000, 1200, -7.0);
    /* 2000 rows are 31 blocks of 64: more than the points asked, so blocks are read. */
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/rw-blocks/history?max_points=20", NULL, 200);
    bool has_new_low = false;
    const cJSON *point;
    cJSON_ArrayForEach(point, cJSON_GetObjectItemCaseSensitive(h, "points"))
    {
        int step = number(point, "step");
        double loss = NAN;
        ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(point, "loss"), &loss));
        ck_assert(loss == (step == 1200 ? -7.0 : 1.0 + step / 1000.0));
        has_new_low |= step == 1200;
    }
    ck_assert_msg(has_new_low, "the lowest loss after the rewind is missing");
    cJSON_Delete(h);
}
END_TEST

static void load(void)
{
    golden_load();
}

/* Rows of the long history of the case below. */
#define LONG_ROWS 300000

/* A rewind sent on a connection of its own, and how long its answer took. */
struct rewinding {
    int port;
    int status;
    double seconds;
    atomic_bool done;
};

static void *rewind_long(void *arg)
{
    struct rewinding *w = arg;
    struct httpc c;
    httpc_init(&c, w->port);
    double started = testutil_seconds();
    w->status = httpc_status(&c, "POST", "/v1/jobs/long/rewind", "{\"to_step\":-1}", NULL, 0);
    w->seconds = testutil_seconds() - started;
    httpc_close(&c);
    atomic_store(&w->done, true);
    return NULL;
}

/*
 * A rewind of a long history takes a while; it runs off the server threads, so that with
 * one server thread the daemon still answers other connections meanwhile.
 */
START_TEST(a_long_rewind_holds_no_server_thread)
{
    static const char *const args[] = {"--threads", "1", NULL};
    struct daemon d;
    daemon_start(&d, NULL, args);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(
        httpc_expect(&c, "PUT", "/v1/jobs/long", "{\"policy\":\"constant\",\"lr\":0.1}", 201));
    httpc_close(&c);
    daemon_stop(&d);
    /* A constant job's rows replay to any state: the rewind to -1 replays none of them. */
    char sql[768];
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < %d)"
             " INSERT INTO history (job_seq, step, rank, loss, metric, lr, event, time_ms)"
             " SELECT (SELECT seq FROM jobs WHERE id = 'long'), i, 0, 2.0, 2.0, 0.1, 'hold', 0"
             " FROM k; UPDATE jobs SET last_step = %d, reports = %d WHERE id = 'long'",
             LONG_ROWS - 1, LONG_ROWS - 1, LONG_ROWS);
    testdb_exec(d.db, sql);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/long", NULL, 200)); /* loaded */

    struct rewinding w = {.port = d.port};
    atomic_init(&w.done, false);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, rewind_long, &w), 0);
    double worst = 0;
    int answered = 0;
    while (!atomic_load(&w.done)) {
        double started = testutil_seconds();
        ck_assert_int_eq(httpc_status(&c, "GET", "/healthz", NULL, NULL, 0), 200);
        double took = testutil_seconds() - started;
        worst = took > worst ? took : worst;
        answered++;
    }
    pthread_join(thread, NULL);
    ck_assert_int_eq(w.status, 200);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/long", NULL, 200);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "last_step")));
    cJSON_Delete(job);
    /* On the server thread, the slowest would take about as long as the rewind itself. */
    ck_assert_msg(answered >= 3 && worst < w.seconds / 4,
                  "%d answers during a rewind of %.3f s, the slowest in %.3f s", answered,
                  w.seconds, worst);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_rewind");
    TCase *tc = tcase_create("rewind");
    apitest_fixtures(tc, load);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, golden_case_rewinds_exactly, 0, GOLDEN_CASES);
    tcase_add_test(tc, rewind_forgets_history_and_can_go_to_the_start);
    tcase_add_test(tc, rewind_runs_a_finished_job_again);
    tcase_add_test(tc, rewind_from_snapshots_is_exact);
    tcase_add_test(tc, rewind_survives_a_restart);
    tcase_add_test(tc, rewind_forgets_the_history_summaries);
    tcase_add_test(tc, a_long_rewind_holds_no_server_thread);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
