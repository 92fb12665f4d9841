/*
 * What one client may store: the jobs of a database (--max-jobs) and the steps of a job
 * (--max-reports-per-job), each answered 507 with a problem that names the limit, and each
 * freed again by what frees the room (a deleted job, a rewind), over HTTP against a real
 * daemon.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "httpc.h"
#include "testutil.h"

/* Asserts that r is a 507 problem whose detail holds the option's name. */
static void assert_quota_problem(const struct httpc_response *r, const char *option)
{
    ck_assert_int_eq(r->status, 507);
    char type[64];
    ck_assert_ptr_nonnull(httpc_header(r, "Content-Type", type, sizeof(type)));
    ck_assert_str_eq(type, "application/problem+json");
    cJSON *problem = httpc_body_json(r);
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(problem, "detail");
    ck_assert_msg(cJSON_IsString(detail) && strstr(detail->valuestring, option),
                  "the detail names %s: %s", option, r->body);
    cJSON_Delete(problem);
}

static void report(struct httpc *c, const char *job, int step, int status)
{
    char path[96], body[64];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", job);
    snprintf(body, sizeof(body), "{\"step\": %d, \"loss\": %g}", step, 2.0 - step * 0.01);
    cJSON_Delete(httpc_expect(c, "POST", path, body, status));
}

START_TEST(jobs_past_the_limit_are_507_until_one_is_deleted)
{
    static const char *const args[] = {"--max-jobs", "3", NULL};
    struct daemon d;
    daemon_start(&d, NULL, args);
    struct httpc c;
    httpc_init(&c, d.port);
    const char *body = "{\"lr\": 0.1}";
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/a", body, 201));
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/b", body, 201));
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs", body, 201));

    struct httpc_response r;
    httpc_json(&c, "PUT", "/v1/jobs/d", body, &r);
    assert_quota_problem(&r, "--max-jobs");
    httpc_response_free(&r);
    httpc_json(&c, "POST", "/v1/jobs", body, &r);
    assert_quota_problem(&r, "--max-jobs");
    httpc_response_free(&r);
    /* Nothing of the refused job was kept. */
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/d", NULL, 404));
    /* The same request for a job that exists still finds it: a retry is not refused. */
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/a", body, 200));

    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/jobs/b", NULL, 204));
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/d", body, 201));
    httpc_json(&c, "PUT", "/v1/jobs/e", body, &r);
    assert_quota_problem(&r, "--max-jobs");
    httpc_response_free(&r);

    /* The count survives a restart: it is read from the database, not kept from before. */
    httpc_close(&c);
    daemon_stop(&d);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    httpc_json(&c, "PUT", "/v1/jobs/e", body, &r);
    assert_quota_problem(&r, "--max-jobs");
    httpc_response_free(&r);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(reports_past_the_limit_are_507_until_a_rewind)
{
    static const char *const args[] = {"--max-reports-per-job", "5", NULL};
    struct daemon d;
    daemon_start(&d, NULL, args);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/full", "{\"lr\": 0.1}", 201));
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/other", "{\"lr\": 0.1}", 201));
    for (int step = 0; step < 5; step++)
        report(&c, "full", step, 200);

    struct httpc_response r;
    httpc_json(&c, "POST", "/v1/jobs/full/reports", "{\"step\": 5, \"loss\": 1.5}", &r);
    assert_quota_problem(&r, "--max-reports-per-job");
    httpc_response_free(&r);
    /* A retry of a decided step is answered as before; other jobs are not held back. */
    report(&c, "full", 4, 200);
    report(&c, "other", 0, 200);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/full", NULL, 200);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(job, "last_step")->valueint, 4);
    cJSON_Delete(job);

    /* A rewind makes room again. */
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/full/rewind", "{\"to_step\": 2}", 200));
    report(&c, "full", 3, 200);
    report(&c, "full", 4, 200);
    httpc_json(&c, "POST", "/v1/jobs/full/reports", "{\"step\": 5, \"loss\": 1.5}", &r);
    assert_quota_problem(&r, "--max-reports-per-job");
    httpc_response_free(&r);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(zero_means_no_limit)
{
    static const char *const args[] = {"--max-jobs", "0", "--max-reports-per-job", "0", NULL};
    struct daemon d;
    daemon_start(&d, NULL, args);
    struct httpc c;
    httpc_init(&c, d.port);
    for (int i = 0; i < 20; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/v1/jobs/j%d", i);
        cJSON_Delete(httpc_expect(&c, "PUT", path, "{\"lr\": 0.1}", 201));
    }
    for (int step = 0; step < 20; step++)
        report(&c, "j0", step, 200);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quotas");
    TCase *tc = tcase_create("quotas");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, jobs_past_the_limit_are_507_until_one_is_deleted);
    tcase_add_test(tc, reports_past_the_limit_are_507_until_a_rewind);
    tcase_add_test(tc, zero_means_no_limit);
    suite_add_tcase(s, tc);
    return testutil_run(s);
}
