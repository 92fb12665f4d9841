/*
 * Jobs of several ranks over HTTP: every rank of a step gets the same decision, made once
 * on the combined loss; a slow rank is decided without at the timeout and then answered
 * as late; lookups wait for a decision; waiting requests are bounded and all answered
 * when the daemon stops, even when their clients went away.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apitest.h"
#include "base/jsonx.h"
#include "testutil.h"

static double rank_loss(int rank, int step)
{
    return 2.0 / (1.0 + 0.05 * step) + 0.1 * sin(step * 0.9 + rank) + 0.01 * rank;
}

/* Reports steps 0..steps-1 as one rank; writes "step lr event ranks" per answer to fd. */
static void rank_main(int port, const char *id, int rank, int steps, int fd)
{
    struct httpc c;
    httpc_init(&c, port);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    FILE *out = fdopen(fd, "w");
    for (int k = 0; k < steps; k++) {
        char loss[JSONX_DOUBLE_MAX], body[128];
        jsonx_format_double(rank_loss(rank, k), loss);
        snprintf(body, sizeof(body), "{\"step\":%d,\"rank\":%d,\"loss\":%s}", k, rank, loss);
        cJSON *a = httpc_expect(&c, "POST", path, body, 200);
        double lr = 0;
        jsonx_get_double(cJSON_GetObjectItemCaseSensitive(a, "lr"), &lr);
        const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(a, "ranks");
        fprintf(out, "%d %a %s %d\n", k, lr,
                cJSON_GetObjectItemCaseSensitive(a, "event")->valuestring,
                cJSON_IsNumber(ranks) ? (int)ranks->valuedouble : 1);
        cJSON_Delete(a);
    }
    fclose(out);
    httpc_close(&c);
}

START_TEST(eight_ranks_get_one_decision_per_step)
{
    enum { RANKS = 8, STEPS = 60 };
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/dp-8",
                              "{\"lr\":0.1,\"world_size\":8,\"config\":{\"patience\":2,"
                              "\"smooth\":true,\"window_size\":4}}",
                              201));
    pid_t pids[RANKS];
    FILE *results[RANKS];
    for (int r = 0; r < RANKS; r++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pids[r] = fork();
        ck_assert_int_ge(pids[r], 0);
        if (pids[r] == 0) {
            close(fds[0]);
            rank_main(server.port, "dp-8", r, STEPS, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        results[r] = fdopen(fds[0], "r");
    }
    double lrs[RANKS][STEPS];
    for (int r = 0; r < RANKS; r++) {
        for (int k = 0; k < STEPS; k++) {
            int step, ranks;
            char event[16];
            ck_assert_int_eq(fscanf(results[r], "%d %la %15s %d", &step, &lrs[r][k], event, &ranks),
                             4);
            ck_assert_int_eq(step, k);
            ck_assert_int_eq(ranks, RANKS);
        }
        fclose(results[r]);
        int status;
        waitpid(pids[r], &status, 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* The same lr on every rank, and the one the policy gives for the mean of the ranks. */
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1", "{\"patience\":2,\"smooth\":true,\"window_size\":4}");
    for (int k = 0; k < STEPS; k++) {
        double sum = 0;
        for (int r = 0; r < RANKS; r++)
            sum += rank_loss(r, k);
        struct glr_step_result result;
        glr_sched_step(sched, k, sum / RANKS, &result);
        for (int r = 0; r < RANKS; r++)
            ck_assert_msg(lrs[r][k] == glr_sched_lrs(sched)[0], "rank %d step %d", r, k);
    }
    glr_sched_free(sched);
    cJSON *job = httpc_expect(&client, "GET", "/v1/jobs/dp-8", NULL, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble, STEPS);
    cJSON_Delete(job);
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/dp-8/history", NULL, 200);
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(h, "points");
    ck_assert_int_eq(cJSON_GetArraySize(points), STEPS);
    ck_assert_int_eq(
        (int)cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(points, 0), "ranks")->valuedouble,
        RANKS);
    cJSON_Delete(h);
}
END_TEST

/* Two ranks report step 0 at once (rank 0 first, from a child); returns rank 1's answer. */
static cJSON *two_ranks(const char *id, const char *loss0, const char *loss1)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    char path[128], body[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    if (pid == 0) {
        struct httpc c;
        httpc_init(&c, server.port);
        snprintf(body, sizeof(body), "{\"step\":0,\"rank\":0,\"loss\":%s}", loss0);
        cJSON_Delete(httpc_expect(&c, "POST", path, body, 200));
        _exit(0);
    }
    testutil_sleep_ms(100);
    snprintf(body, sizeof(body), "{\"step\":0,\"rank\":1,\"loss\":%s}", loss1);
    cJSON *answer = httpc_expect(&client, "POST", path, body, 200);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return answer;
}

static double history_loss(const char *id, int step)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/history?from_step=%d&to_step=%d", id, step, step);
    cJSON *h = httpc_expect(&client, "GET", path, NULL, 200);
    double loss = NAN;
    jsonx_get_double(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "points"), 0), "loss"),
        &loss);
    cJSON_Delete(h);
    return loss;
}

START_TEST(aggregates_combine_the_ranks)
{
    const char *kinds[] = {"mean", "max", "min", "rank0"};
    const double expected[] = {2.0, 3.0, 1.0, 1.0};
    for (int i = 0; i < 4; i++) {
        char id[32], path[64], body[128];
        snprintf(id, sizeof(id), "agg-%s", kinds[i]);
        snprintf(path, sizeof(path), "/v1/jobs/%s", id);
        snprintf(body, sizeof(body), "{\"lr\":0.1,\"world_size\":2,\"aggregate\":\"%s\"}",
                 kinds[i]);
        cJSON_Delete(httpc_expect(&client, "PUT", path, body, 201));
        cJSON_Delete(two_ranks(id, "1", "3"));
        ck_assert_msg(history_loss(id, 0) == expected[i], "%s", kinds[i]);
    }
    /* One diverged rank makes the step diverged. */
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/agg-nan", "{\"lr\":0.1,\"world_size\":2}", 201));
    cJSON_Delete(two_ranks("agg-nan", "1", "null"));
    ck_assert(isnan(history_loss("agg-nan", 0)));
}
END_TEST

START_TEST(slow_rank_is_decided_without_then_late)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"lr\":0.1,\"world_size\":3,\"aggregate_timeout_ms\":%d}",
             300 * testutil_slow());
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/slow", body, 201));
    pid_t pid = fork();
    if (pid == 0) {
        struct httpc c;
        httpc_init(&c, server.port);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/slow/reports",
                                  "{\"step\":0,\"rank\":0,\"loss\":1}", 200));
        _exit(0);
    }
    cJSON *a = httpc_expect(&client, "POST", "/v1/jobs/slow/reports",
                            "{\"step\":0,\"rank\":1,\"loss\":3}", 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(a, "ranks")->valuedouble, 2);
    cJSON_Delete(a);
    waitpid(pid, NULL, 0);
    ck_assert(history_loss("slow", 0) == 2.0);
    cJSON *late = httpc_expect(&client, "POST", "/v1/jobs/slow/reports",
                               "{\"step\":0,\"rank\":2,\"loss\":100}", 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(late, "late")));
    cJSON_Delete(late);
    /* Its retry is a replay; another loss from it a conflict. */
    late = httpc_expect(&client, "POST", "/v1/jobs/slow/reports",
                        "{\"step\":0,\"rank\":2,\"loss\":100}", 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(late, "replayed")));
    cJSON_Delete(late);
    cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/slow/reports",
                              "{\"step\":0,\"rank\":2,\"loss\":7}", 409));
    ck_assert(history_loss("slow", 0) == 2.0); /* a late loss changes no decision */
}
END_TEST

START_TEST(lookup_waits_for_the_decision)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/watch", "{\"lr\":0.1}", 201));
    pid_t pid = fork();
    if (pid == 0) {
        testutil_sleep_ms(150);
        struct httpc c;
        httpc_init(&c, server.port);
        cJSON_Delete(
            httpc_expect(&c, "POST", "/v1/jobs/watch/reports", "{\"step\":0,\"loss\":1}", 200));
        _exit(0);
    }
    cJSON *a = httpc_expect(&client, "GET", "/v1/jobs/watch/lr?step=0&wait_ms=5000", NULL, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(a, "step")->valuedouble, 0);
    cJSON_Delete(a);
    waitpid(pid, NULL, 0);
    /* A skipped step is never decided: its lookups learn it when a later step is. */
    pid = fork();
    if (pid == 0) {
        testutil_sleep_ms(150);
        struct httpc c;
        httpc_init(&c, server.port);
        cJSON_Delete(
            httpc_expect(&c, "POST", "/v1/jobs/watch/reports", "{\"step\":5,\"loss\":1}", 200));
        _exit(0);
    }
    cJSON_Delete(httpc_expect(&client, "GET", "/v1/jobs/watch/lr?step=3&wait_ms=5000", NULL, 404));
    waitpid(pid, NULL, 0);
}
END_TEST

/* A rank whose client went away while waiting: the step is still decided, nothing breaks. */
START_TEST(client_gone_while_waiting)
{
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/gone", "{\"lr\":0.1,\"world_size\":2}", 201));
    /* Rank 0 sends its report, lets it be taken in, and hangs up without the answer. */
    pid_t pid = fork();
    if (pid == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server.port)};
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        const char *body = "{\"step\":0,\"rank\":0,\"loss\":1}";
        char request[256];
        int n = snprintf(request, sizeof(request),
                         "POST /v1/jobs/gone/reports HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                         strlen(body), body);
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
            write(fd, request, (size_t)n) != n)
            _exit(1);
        testutil_sleep_ms(300);
        close(fd);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cJSON *a = httpc_expect(&client, "POST", "/v1/jobs/gone/reports",
                            "{\"step\":0,\"rank\":1,\"loss\":3}", 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(a, "ranks")->valuedouble, 2);
    cJSON_Delete(a);
    /* Rank 0 comes back and retries: the decision, replayed. */
    a = httpc_expect(&client, "POST", "/v1/jobs/gone/reports", "{\"step\":0,\"rank\":0,\"loss\":1}",
                     200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "replayed")));
    cJSON_Delete(a);
}
END_TEST

/* Stopping the daemon answers every waiting request first (503), then exits cleanly. */
/* Reports step 0 of job as rank 0 in a child; returns the pipe its status comes through. */
static int report_in_child(int port, const char *job, pid_t *pid)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    *pid = fork();
    if (*pid == 0) {
        struct httpc mine;
        httpc_init(&mine, port);
        char path[128];
        snprintf(path, sizeof(path), "/v1/jobs/%s/reports", job);
        struct httpc_response r;
        httpc_json(&mine, "POST", path, "{\"step\":0,\"rank\":0,\"loss\":1}", &r);
        char status[16];
        int n = snprintf(status, sizeof(status), "%d", r.status);
        ck_assert_int_eq(write(fds[1], status, (size_t)n), n);
        _exit(0);
    }
    close(fds[1]);
    return fds[0];
}

START_TEST(stop_answers_waiting_requests)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/stop", "{\"lr\":0.1,\"world_size\":4}", 201));
    pid_t pid;
    int from_child = report_in_child(d.port, "stop", &pid);
    testutil_sleep_ms(200);
    daemon_stop(&d); /* fails the test unless the exit is clean */
    char status[16] = "";
    ck_assert_int_gt(read(from_child, status, sizeof(status) - 1), 0);
    ck_assert_str_eq(status, "503");
    waitpid(pid, NULL, 0);
    close(from_child);
    httpc_close(&c);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(finishing_answers_the_waiting_ranks)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    /* 1 s of timeout, stretched as the test's own waits are (testutil_sleep_ms) under valgrind. */
    char body[96];
    snprintf(body, sizeof(body), "{\"lr\":0.1,\"world_size\":2,\"aggregate_timeout_ms\":%d}",
             1000 * testutil_slow());
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/fin", body, 201));
    pid_t pid;
    int from_child = report_in_child(d.port, "fin", &pid);
    testutil_sleep_ms(200); /* rank 0 waits for rank 1 */
    cJSON_Delete(httpc_expect(&c, "PATCH", "/v1/jobs/fin", "{\"status\":\"finished\"}", 200));
    char status[16] = "";
    ck_assert_int_gt(read(from_child, status, sizeof(status) - 1), 0);
    ck_assert_str_eq(status, "409");
    waitpid(pid, NULL, 0);
    close(from_child);
    /* Rank 1 is refused, and past the timeout nothing was decided on the finished job. */
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/fin/reports",
                              "{\"step\":0,\"rank\":1,\"loss\":1}", 409));
    testutil_sleep_ms(1500);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/fin", NULL, 200);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "last_step")));
    cJSON_Delete(job);
    cJSON *history = httpc_expect(&c, "GET", "/v1/jobs/fin/history", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(history, "points")), 0);
    cJSON_Delete(history);
    /* A long poll of a finished job is answered at once, not at the end of its wait. */
    double start = testutil_seconds();
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/fin/lr?step=0&wait_ms=10000", NULL, 409));
    double waited = testutil_seconds() - start;
    ck_assert_msg(waited < 5, "the long poll took %.3f s", waited);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(ranks_are_checked)
{
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/chk", "{\"lr\":0.1,\"world_size\":2}", 201));
    cJSON_Delete(httpc_expect(&client, "POST", "/v1/jobs/chk/reports",
                              "{\"step\":0,\"rank\":2,\"loss\":1}", 422));
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/chk2", "{\"lr\":0.1,\"world_size\":0}", 422));
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/chk2", "{\"lr\":0.1,\"world_size\":4097}", 422));
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/chk2",
                              "{\"lr\":0.1,\"aggregate\":\"median\"}", 422));
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/chk2",
                              "{\"lr\":0.1,\"aggregate_timeout_ms\":0}", 422));
    /* The same create from every rank is harmless; another world_size is a conflict. */
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/chk", "{\"lr\":0.1,\"world_size\":2}", 200));
    cJSON_Delete(
        httpc_expect(&client, "PUT", "/v1/jobs/chk", "{\"lr\":0.1,\"world_size\":3}", 409));
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_ranks");
    TCase *tc = tcase_create("ranks");
    apitest_fixtures(tc, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, eight_ranks_get_one_decision_per_step);
    tcase_add_test(tc, aggregates_combine_the_ranks);
    tcase_add_test(tc, slow_rank_is_decided_without_then_late);
    tcase_add_test(tc, lookup_waits_for_the_decision);
    tcase_add_test(tc, client_gone_while_waiting);
    tcase_add_test(tc, stop_answers_waiting_requests);
    tcase_add_test(tc, finishing_answers_the_waiting_ranks);
    tcase_add_test(tc, ranks_are_checked);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
