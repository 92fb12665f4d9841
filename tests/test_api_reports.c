/*
 * Reports over HTTP: retries replay the stored answer, conflicting steps are refused,
 * diverged losses are accepted in every spelling, and concurrent reports of one job are
 * applied one after the other.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apitest.h"
#include "base/jsonx.h"
#include "testutil.h"

static void create(const char *id, const char *body)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    cJSON_Delete(httpc_expect(&client, "PUT", path, body, 201));
}

/* Reports and returns the answer (status 200 asserted). */
static cJSON *report(const char *id, const char *body)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    return httpc_expect(&client, "POST", path, body, 200);
}

static int report_status(const char *id, const char *body, char *detail, size_t size)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    struct httpc_response r;
    httpc_json(&client, "POST", path, body, &r);
    int status = r.status;
    if (detail) {
        cJSON *problem = cJSON_Parse(r.body);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(problem, "detail");
        snprintf(detail, size, "%s", cJSON_IsString(d) ? d->valuestring : "");
        cJSON_Delete(problem);
    }
    httpc_response_free(&r);
    return status;
}

static double lr_of(const cJSON *answer)
{
    double v = NAN;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(answer, "lr"), &v));
    return v;
}

static int reports_of(const char *id)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/jobs/%s", id);
    cJSON *job = httpc_expect(&client, "GET", path, NULL, 200);
    int n = (int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble;
    cJSON_Delete(job);
    return n;
}

START_TEST(answer_has_job_step_lr_and_event)
{
    create("ans-1", "{\"lr\":0.1,\"config\":{\"patience\":0}}");
    cJSON *a = report("ans-1", "{\"step\":0,\"loss\":2.5}");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(a, "job")->valuestring, "ans-1");
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(a, "step")->valuedouble, 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(a, "event")->valuestring, "increase");
    ck_assert(lr_of(a) == 0.1 / 0.95);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(a, "replayed"));
    cJSON_Delete(a);
}
END_TEST

START_TEST(retry_replays_the_stored_answer)
{
    create("retry-1", "{\"lr\":0.1,\"config\":{\"patience\":0}}");
    cJSON *first = report("retry-1", "{\"step\":5,\"loss\":1.25}");
    cJSON *again = report("retry-1", "{\"step\":5,\"loss\":1.25}");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(again, "replayed")));
    ck_assert(lr_of(first) == lr_of(again));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(first, "event")->valuestring,
                     cJSON_GetObjectItemCaseSensitive(again, "event")->valuestring);
    cJSON_Delete(first);
    cJSON_Delete(again);
    ck_assert_int_eq(reports_of("retry-1"), 1);
    /* An older step is replayed too, and changes nothing. */
    cJSON_Delete(report("retry-1", "{\"step\":6,\"loss\":1.0}"));
    cJSON *old = report("retry-1", "{\"step\":5,\"loss\":1.25,\"rank\":0}");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(old, "replayed")));
    cJSON_Delete(old);
    ck_assert_int_eq(reports_of("retry-1"), 2);
    /* A diverged step replays as well. */
    cJSON_Delete(report("retry-1", "{\"step\":7,\"loss\":null}"));
    old = report("retry-1", "{\"step\":7,\"loss\":\"NaN\"}");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(old, "replayed")));
    cJSON_Delete(old);
}
END_TEST

START_TEST(conflicting_steps_are_refused)
{
    char detail[256];
    create("conf-1", "{\"lr\":0.1}");
    cJSON_Delete(report("conf-1", "{\"step\":0,\"loss\":3}"));
    cJSON_Delete(report("conf-1", "{\"step\":2,\"loss\":3}"));
    ck_assert_int_eq(report_status("conf-1", "{\"step\":2,\"loss\":4}", detail, sizeof(detail)),
                     409);
    ck_assert_msg(strstr(detail, "another loss"), "%s", detail);
    ck_assert_int_eq(report_status("conf-1", "{\"step\":1,\"loss\":3}", detail, sizeof(detail)),
                     409);
    ck_assert_msg(strstr(detail, "never"), "%s", detail);
    ck_assert_int_eq(reports_of("conf-1"), 2);
    ck_assert_int_eq(report_status("conf-none", "{\"step\":0,\"loss\":1}", NULL, 0), 404);
}
END_TEST

START_TEST(diverged_losses_in_every_spelling)
{
    create("div-1", "{\"lr\":0.1,\"config\":{\"patience\":1,\"smooth\":true,\"window_size\":3}}");
    const char *bodies[] = {
        "{\"step\":0,\"loss\":1.0}",           "{\"step\":1,\"loss\":null}",
        "{\"step\":2,\"loss\":\"NaN\"}",       "{\"step\":3,\"loss\":\"Infinity\"}",
        "{\"step\":4,\"loss\":\"-Infinity\"}", "{\"step\":5,\"loss\":0.5}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        cJSON *a = report("div-1", bodies[i]);
        ck_assert(isfinite(lr_of(a)));
        cJSON_Delete(a);
    }
    cJSON *job = httpc_expect(&client, "GET", "/v1/jobs/div-1", NULL, 200);
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(job, "state");
    double best = NAN;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(state, "best"), &best));
    ck_assert(best == 0.75); /* the mean of 1.0 and 0.5: no diverged step entered the window */
    cJSON_Delete(job);
}
END_TEST

START_TEST(bad_reports_are_422)
{
    create("bad-rep", "{\"lr\":0.1}");
    const char *bodies[][2] = {
        {"{\"step\":0}", "loss is required: policy greedylr reads it"},
        {"{\"step\":0,\"loss\":\"abc\"}", "loss"},
        {"{\"step\":0,\"loss\":true}", "loss"},
        {"{\"step\":0,\"loss\":[1]}", "loss"},
        {"{\"loss\":1}", "step"},
        {"{\"step\":-1,\"loss\":1}", "step"},
        {"{\"step\":1.5,\"loss\":1}", "step"},
        {"{\"step\":\"1\",\"loss\":1}", "step"},
        {"{\"step\":1e300,\"loss\":1}", "step"},
        {"{\"step\":0,\"loss\":1,\"rank\":5000}", "rank"},
        {"{\"step\":0,\"loss\":1,\"rank\":-1}", "rank"},
        {"{\"step\":0,\"loss\":1,\"epoch\":3}", "epoch"},
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char detail[256];
        ck_assert_msg(report_status("bad-rep", bodies[i][0], detail, sizeof(detail)) == 422,
                      "%s was not refused", bodies[i][0]);
        ck_assert_msg(strstr(detail, bodies[i][1]), "%s: \"%s\" does not name %s", bodies[i][0],
                      detail, bodies[i][1]);
    }
    ck_assert_int_eq(reports_of("bad-rep"), 0);
}
END_TEST

START_TEST(a_schedule_takes_reports_without_a_loss)
{
    create("sched-noloss", "{\"policy\":\"step\",\"lr\":1,\"config\":{\"step_size\":2}}");
    cJSON *a = report("sched-noloss", "{\"step\":0}");
    ck_assert(lr_of(a) == 1);
    cJSON_Delete(a);
    a = report("sched-noloss", "{\"step\":1}");
    ck_assert(lr_of(a) == 0.1);
    cJSON_Delete(a);
    /* A retry without a loss is the same report; one with a loss is another. */
    a = report("sched-noloss", "{\"step\":1}");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "replayed")));
    cJSON_Delete(a);
    /* The history keeps no loss for them, as for a null one. */
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/sched-noloss/history", NULL, 200);
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(h, "points");
    ck_assert_int_eq(cJSON_GetArraySize(points), 2);
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(points, 0), "loss");
    ck_assert(cJSON_IsString(loss) && strcmp(loss->valuestring, "NaN") == 0);
    cJSON_Delete(h);
}
END_TEST

/* A report sent raw with an Accept header; returns the status, the body into body. */
static int report_accepting(const char *accept, const char *json, char *body, size_t size)
{
    char request[512], reply[2048];
    snprintf(request, sizeof(request),
             "POST /v1/jobs/text-1/reports HTTP/1.1\r\nHost: x\r\nAccept: %s\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
             "\r\n%s",
             accept, strlen(json), json);
    int status = httpc_raw(server.port, NULL, request, strlen(request), reply, sizeof(reply),
                           5000 * testutil_slow());
    const char *start = strstr(reply, "\r\n\r\n");
    snprintf(body, size, "%s", start ? start + 4 : "");
    return status;
}

START_TEST(decisions_come_as_text_when_asked)
{
    create("text-1", "{\"lr\":[0.1,0.2],\"config\":{\"patience\":0}}");
    char body[1024];
    ck_assert_int_eq(report_accepting("text/plain", "{\"step\":0,\"loss\":2}", body, sizeof(body)),
                     200);
    ck_assert_str_eq(body, "0.10526315789473685 0.2105263157894737\n");
    /* A refusal is one line with its status; a retry is the same answer again. */
    ck_assert_int_eq(report_accepting("text/plain", "{\"step\":0,\"loss\":3}", body, sizeof(body)),
                     409);
    ck_assert_msg(strncmp(body, "409 Conflict: step 0", 20) == 0, "%s", body);
    ck_assert_int_eq(report_accepting("text/plain; q=0.9, application/json; q=0.1",
                                      "{\"step\":0,\"loss\":2}", body, sizeof(body)),
                     200);
    ck_assert_str_eq(body, "0.10526315789473685 0.2105263157894737\n");
    /* JSON whenever text is not asked for above it: a wildcard, a tie, a lower q. */
    const char *json_accepts[] = {"*/*", "text/plain, application/json",
                                  "application/json, text/plain;q=0.5", "text/plain;q=0"};
    for (size_t i = 0; i < sizeof(json_accepts) / sizeof(json_accepts[0]); i++) {
        ck_assert_int_eq(
            report_accepting(json_accepts[i], "{\"step\":0,\"loss\":2}", body, sizeof(body)), 200);
        ck_assert_msg(body[0] == '{', "Accept: %s gave %s", json_accepts[i], body);
    }
    /* ?format=text does the same without a header, for reports and lookups alike. */
    struct httpc_response r;
    ck_assert_int_eq(
        httpc_request(&client, "GET", "/v1/jobs/text-1/lr?step=0&format=text", NULL, NULL, 0, &r),
        0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "0.10526315789473685 0.2105263157894737\n");
    char type[64];
    ck_assert_str_eq(httpc_header(&r, "Content-Type", type, sizeof(type)),
                     "text/plain; charset=utf-8");
    httpc_response_free(&r);
    const char *next = "{\"step\":1,\"loss\":1}";
    ck_assert_int_eq(httpc_request(&client, "POST", "/v1/jobs/text-1/reports?format=text",
                                   "application/json", next, strlen(next), &r),
                     0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strchr(r.body, '{') == NULL && r.body[strlen(r.body) - 1] == '\n', "%s", r.body);
    httpc_response_free(&r);
    cJSON_Delete(httpc_expect(&client, "GET", "/v1/jobs/text-1/lr?step=0&format=xml", NULL, 422));
}
END_TEST

START_TEST(several_groups_answer_an_array)
{
    create("groups-1", "{\"lr\":[0.1,0.2,0.3],\"config\":{\"patience\":0}}");
    cJSON *a = report("groups-1", "{\"step\":0,\"loss\":1}");
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(a, "lr");
    ck_assert(cJSON_IsArray(lr));
    ck_assert_int_eq(cJSON_GetArraySize(lr), 3);
    ck_assert(cJSON_GetArrayItem(lr, 2)->valuedouble == 0.3 / 0.95);
    cJSON_Delete(a);
    /* A one-element array keeps its shape too. */
    create("groups-2", "{\"lr\":[0.1]}");
    a = report("groups-2", "{\"step\":0,\"loss\":1}");
    ck_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(a, "lr")));
    cJSON_Delete(a);
}
END_TEST

/*
 * Several clients report the same steps at the same moment: each step is decided once
 * (one answer not replayed, the others replays of it) and the job counts one report per
 * step.
 */
START_TEST(concurrent_reports_apply_one_after_the_other)
{
    enum { CLIENTS = 4, STEPS = 60 };
    create("race-1", "{\"lr\":0.1,\"config\":{\"patience\":1}}");
    int pipes[CLIENTS][2];
    pid_t pids[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        ck_assert_int_eq(pipe(pipes[c]), 0);
        pids[c] = fork();
        ck_assert_int_ge(pids[c], 0);
        if (pids[c] == 0) {
            struct httpc mine;
            httpc_init(&mine, server.port);
            char line[STEPS * 48];
            size_t used = 0;
            for (int s = 0; s < STEPS; s++) {
                char body[96];
                snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", s, (s * 7) % 11);
                cJSON *a = httpc_expect(&mine, "POST", "/v1/jobs/race-1/reports", body, 200);
                double lr = NAN;
                jsonx_get_double(cJSON_GetObjectItemCaseSensitive(a, "lr"), &lr);
                bool replayed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "replayed"));
                used += (size_t)snprintf(line + used, sizeof(line) - used, "%d %a %d\n", s, lr,
                                         replayed);
                cJSON_Delete(a);
            }
            ck_assert_int_eq(write(pipes[c][1], line, used), (ssize_t)used);
            _exit(0);
        }
        close(pipes[c][1]);
    }
    double lrs[CLIENTS][STEPS];
    int fresh[STEPS] = {0};
    for (int c = 0; c < CLIENTS; c++) {
        FILE *f = fdopen(pipes[c][0], "r");
        for (int s = 0; s < STEPS; s++) {
            int step, replayed;
            ck_assert_int_eq(fscanf(f, "%d %la %d", &step, &lrs[c][s], &replayed), 3);
            ck_assert_int_eq(step, s);
            fresh[s] += !replayed;
        }
        fclose(f);
        int status;
        waitpid(pids[c], &status, 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    for (int s = 0; s < STEPS; s++) {
        ck_assert_msg(fresh[s] == 1, "step %d was decided %d times", s, fresh[s]);
        for (int c = 1; c < CLIENTS; c++)
            ck_assert(lrs[c][s] == lrs[0][s]);
    }
    ck_assert_int_eq(reports_of("race-1"), STEPS);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_reports");
    TCase *tc = tcase_create("reports");
    apitest_fixtures(tc, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, answer_has_job_step_lr_and_event);
    tcase_add_test(tc, retry_replays_the_stored_answer);
    tcase_add_test(tc, conflicting_steps_are_refused);
    tcase_add_test(tc, diverged_losses_in_every_spelling);
    tcase_add_test(tc, bad_reports_are_422);
    tcase_add_test(tc, a_schedule_takes_reports_without_a_loss);
    tcase_add_test(tc, decisions_come_as_text_when_asked);
    tcase_add_test(tc, several_groups_answer_an_array);
    tcase_add_test(tc, concurrent_reports_apply_one_after_the_other);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
