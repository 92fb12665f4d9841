/*
 * The auto policy over HTTP: jobs answer every golden report as the core does, lr_cap
 * included; the cap is stored with the report, so that a restart (which replays the
 * history after the job's row) and a rewind answer the same again; the cap is refused
 * where it does not apply; the ranks of a step share the lowest cap; the job keeps its
 * version.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apitest.h"
#include "autogolden.h"
#include "base/jsonx.h"
#include "testutil.h"

/* Reports of a golden case sent over HTTP at most (the core test covers every one). */
#define HTTP_REPORTS_MAX 150

static void create_job(struct httpc *c, const char *id, const struct auto_case *ac)
{
    char *lr = testutil_print_exact(ac->lr);
    char *config = testutil_print_exact(ac->config);
    char body[4096], path[160];
    snprintf(body, sizeof(body), "{\"policy\":\"auto\",\"lr\":%s,\"config\":%s}", lr, config);
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    cJSON_Delete(httpc_expect(c, "PUT", path, body, 201));
    free(lr);
    free(config);
}

/* The body of report k of a case: its step, loss and (when it has one) cap. */
static void report_body(const struct auto_case *ac, int k, char *body, size_t size)
{
    char loss[JSONX_DOUBLE_MAX], cap[JSONX_DOUBLE_MAX];
    jsonx_format_double(ac->losses[k], loss);
    bool quoted = !isfinite(ac->losses[k]);
    int n = snprintf(body, size, "{\"step\":%lld,\"loss\":%s%s%s", (long long)ac->step[k],
                     quoted ? "\"" : "", loss, quoted ? "\"" : "");
    if (isfinite(ac->caps[k])) {
        jsonx_format_double(ac->caps[k], cap);
        n += snprintf(body + n, size - (size_t)n, ",\"lr_cap\":%s", cap);
    }
    snprintf(body + n, size - (size_t)n, "}");
}

/* Reports [from, to) of a case and checks each answer's lrs and event against the file. */
static void report_and_compare(struct httpc *c, const char *id, const struct auto_case *ac,
                               int from, int to)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    for (int k = from; k < to; k++) {
        char body[256];
        report_body(ac, k, body, sizeof(body));
        struct httpc_response r;
        httpc_json(c, "POST", path, body, &r);
        if (r.status != 200)
            ck_abort_msg("%s report %d: status %d: %s", id, k, r.status, r.body);
        cJSON *a = cJSON_Parse(r.body);
        httpc_response_free(&r);
        const cJSON *lr = cJSON_GetObjectItemCaseSensitive(a, "lr");
        for (size_t g = 0; g < ac->groups; g++) {
            double v = NAN, want = ac->expected[(size_t)k * ac->groups + g];
            const cJSON *item = cJSON_IsArray(lr) ? cJSON_GetArrayItem(lr, (int)g) : lr;
            if (!jsonx_get_double(item, &v) || memcmp(&v, &want, sizeof(v)) != 0)
                ck_abort_msg("%s report %d group %zu: %.17g, expected %.17g", id, k, g, v, want);
        }
        const char *event = cJSON_GetObjectItemCaseSensitive(a, "event")->valuestring;
        if (strcmp(event, glr_event_name((enum glr_event)ac->events[k])) != 0)
            ck_abort_msg("%s report %d: event %s, expected %s", id, k, event,
                         glr_event_name((enum glr_event)ac->events[k]));
        cJSON_Delete(a);
    }
}

static int reports_of(const struct auto_case *ac)
{
    return ac->steps < HTTP_REPORTS_MAX ? ac->steps : HTTP_REPORTS_MAX;
}

START_TEST(golden_cases_over_http)
{
    const struct auto_case *ac = &auto_cases[_i];
    char id[96];
    snprintf(id, sizeof(id), "auto-%s", ac->name);
    create_job(&client, id, ac);
    report_and_compare(&client, id, ac, 0, reports_of(ac));
}
END_TEST

/* The golden case with a cap on every report. */
static const struct auto_case *capped_case(void)
{
    for (int i = 0; i < auto_case_count; i++)
        if (strcmp(auto_cases[i].name, "capped") == 0)
            return &auto_cases[i];
    ck_abort_msg("the golden file has no case \"capped\"");
    return NULL;
}

START_TEST(a_rewind_replays_the_caps)
{
    const struct auto_case *ac = capped_case();
    create_job(&client, "auto-rewind", ac);
    report_and_compare(&client, "auto-rewind", ac, 0, ac->steps);
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/auto-rewind/rewind", "{\"to_step\":70}", 200));
    report_and_compare(&client, "auto-rewind", ac, 71, ac->steps);
}
END_TEST

START_TEST(the_history_shows_each_cap)
{
    const struct auto_case *ac = capped_case();
    create_job(&client, "auto-history", ac);
    report_and_compare(&client, "auto-history", ac, 0, 10);
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/auto-history/history", NULL, 200);
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(h, "points");
    ck_assert_int_eq(cJSON_GetArraySize(points), 10);
    for (int k = 0; k < 10; k++) {
        double cap = 0;
        const cJSON *p = cJSON_GetArrayItem(points, k);
        ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(p, "lr_cap"), &cap));
        ck_assert(cap == ac->caps[k]);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(p, "event")->valuestring, "capped");
    }
    cJSON_Delete(h);
}
END_TEST

/* A report's cap, where it does not apply or is not a bound, is a 422 naming lr_cap. */
START_TEST(a_cap_is_refused_where_it_does_not_apply)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/auto-greedy", "{\"lr\":0.1}", 201));
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/auto-bad", "{\"policy\":\"auto\",\"lr\":0.1}", 201));
    struct {
        const char *path;
        const char *body;
    } refused[] = {
        {"/v1/jobs/auto-greedy/reports", "{\"step\":0,\"loss\":1,\"lr_cap\":0.5}"},
        {"/v1/jobs/auto-bad/reports", "{\"step\":0,\"loss\":1,\"lr_cap\":0}"},
        {"/v1/jobs/auto-bad/reports", "{\"step\":0,\"loss\":1,\"lr_cap\":-1}"},
        {"/v1/jobs/auto-bad/reports", "{\"step\":0,\"loss\":1,\"lr_cap\":\"NaN\"}"},
        {"/v1/jobs/auto-bad/reports", "{\"step\":0,\"loss\":1,\"lr_cap\":null}"},
        {"/v1/jobs/auto-bad/reports", "{\"step\":0,\"loss\":1,\"lr_cap\":1e999}"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct httpc_response r;
        httpc_json(&client, "POST", refused[i].path, refused[i].body, &r);
        ck_assert_msg(r.status == 422 || (r.status == 400 && strstr(refused[i].body, "1e999")),
                      "%s: status %d", refused[i].body, r.status);
        if (r.status == 422)
            ck_assert_msg(strstr(r.body, "lr_cap"), "%s: %s", refused[i].body, r.body);
        httpc_response_free(&r);
    }
    /* Nothing was decided: step 0 is still new. */
    cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/auto-bad/reports",
                              "{\"step\":0,\"loss\":1,\"lr_cap\":0.05}", 200));
}
END_TEST

/* A job created without a version gets the newest, written in its config for good. */
START_TEST(a_job_records_its_version)
{
    cJSON *job = httpc_expect(&client, "PUT", "/v1/jobs/auto-version",
                              "{\"policy\":\"auto\",\"lr\":1e-5}", 201);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(job, "config");
    double version = 0, total = -1;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(config, "version"), &version));
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(config, "total_steps"), &total));
    ck_assert(version == 1 && total == 0);
    cJSON_Delete(job);
    struct httpc_response r;
    httpc_json(&client, "PUT", "/v1/jobs/auto-version-2",
               "{\"policy\":\"auto\",\"lr\":0.1,\"config\":{\"version\":2}}", &r);
    ck_assert_int_eq(r.status, 422);
    ck_assert_msg(strstr(r.body, "version"), "%s", r.body);
    httpc_response_free(&r);
}
END_TEST

/* The ranks of one step may each send a cap: the decision takes the lowest. */
START_TEST(ranks_share_the_lowest_cap)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/auto-ranks",
                              "{\"policy\":\"auto\",\"lr\":1.0,\"world_size\":2,"
                              "\"aggregate_timeout_ms\":60000}",
                              201));
    /* Rank 1 reports first, from a child: its request waits for rank 0's. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct httpc c;
        httpc_init(&c, server.port);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/auto-ranks/reports",
                                  "{\"step\":0,\"rank\":1,\"loss\":2,\"lr_cap\":0.25}", 200));
        _exit(0);
    }
    testutil_sleep_ms(100);
    cJSON *a = httpc_expect(&client, "POST", "/v1/jobs/auto-ranks/reports",
                            "{\"step\":0,\"rank\":0,\"loss\":2,\"lr_cap\":0.5}", 200);
    double lr = 0;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(a, "lr"), &lr));
    ck_assert(lr == 0.25);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(a, "event")->valuestring, "capped");
    cJSON_Delete(a);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/*
 * Killed after 100 capped reports, the daemon comes back with the job's row as of report
 * 64 and replays the 36 after it, caps and all; the job goes on exactly.
 */
START_TEST(a_restart_replays_the_caps)
{
    const struct auto_case *ac = capped_case();
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    create_job(&c, "auto-crash", ac);
    report_and_compare(&c, "auto-crash", ac, 0, 100);
    httpc_close(&c);
    daemon_kill(&d);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    report_and_compare(&c, "auto-crash", ac, 100, ac->steps);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_auto");
    TCase *tc = tcase_create("auto");
    apitest_fixtures(tc, autogolden_load);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, golden_cases_over_http, 0, AUTO_GOLDEN_CASES);
    tcase_add_test(tc, a_rewind_replays_the_caps);
    tcase_add_test(tc, the_history_shows_each_cap);
    tcase_add_test(tc, a_cap_is_refused_where_it_does_not_apply);
    tcase_add_test(tc, a_job_records_its_version);
    tcase_add_test(tc, ranks_share_the_lowest_cap);
    tcase_add_test(tc, a_restart_replays_the_caps);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
