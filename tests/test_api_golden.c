/*
 * Every golden case through the HTTP API: create a job, report every loss over a real
 * socket, and compare every answered learning rate bit for bit and every event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "golden.h"
#include "httpc.h"
#include "base/jsonx.h"
#include "testutil.h"

static struct daemon server;

static void setup(void)
{
    golden_load();
    daemon_start(&server, NULL, NULL);
}

static void teardown(void)
{
    daemon_stop(&server);
    daemon_cleanup(&server);
    golden_free();
}

/* Reads the lr of an answer (a number or an array) into lrs; returns the group count. */
static size_t answer_lrs(const cJSON *answer, double *lrs, size_t max)
{
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(answer, "lr");
    if (!cJSON_IsArray(lr)) {
        if (!jsonx_get_double(lr, &lrs[0]))
            return 0;
        return 1;
    }
    size_t n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, lr)
    {
        if (n == max || !jsonx_get_double(item, &lrs[n]))
            return 0;
        n++;
    }
    return n;
}

START_TEST(golden_case_over_http)
{
    ck_assert_int_eq(golden_count, GOLDEN_CASES);
    const struct golden_case *gc = &golden_cases[_i];
    struct httpc client;
    httpc_init(&client, server.port);

    char *lr = testutil_print_exact(gc->lr);
    char *config = testutil_print_exact(gc->config);
    size_t cap = strlen(lr) + strlen(config) + 128;
    char *create = malloc(cap);
    snprintf(create, cap, "{\"policy\":\"%s\",\"lr\":%s,\"config\":%s}", gc->policy, lr, config);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", gc->name);
    cJSON_Delete(httpc_expect(&client, "PUT", path, create, 201));
    free(create);
    free(lr);
    free(config);

    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", gc->name);
    for (int k = 0; k < gc->steps; k++) {
        char loss[JSONX_DOUBLE_MAX];
        jsonx_format_double(gc->losses[k], loss);
        char body[128];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", k, loss);
        struct httpc_response r;
        httpc_json(&client, "POST", path, body, &r);
        if (r.status != 200)
            ck_abort_msg("%s step %d: status %d: %s", gc->name, k, r.status, r.body);
        cJSON *answer = cJSON_Parse(r.body);
        httpc_response_free(&r);
        double lrs[GLR_MAX_GROUPS];
        size_t groups = answer ? answer_lrs(answer, lrs, GLR_MAX_GROUPS) : 0;
        if (groups != gc->groups)
            ck_abort_msg("%s step %d: %zu lrs in the answer, expected %zu", gc->name, k, groups,
                         gc->groups);
        for (size_t g = 0; g < groups; g++)
            if (lrs[g] != gc->expected[(size_t)k * gc->groups + g])
                ck_abort_msg("%s step %d group %zu: lr %.17g, expected %.17g", gc->name, k, g,
                             lrs[g], gc->expected[(size_t)k * gc->groups + g]);
        const cJSON *event = cJSON_GetObjectItemCaseSensitive(answer, "event");
        if (gc->events &&
            (!cJSON_IsString(event) ||
             strcmp(event->valuestring, glr_event_name((enum glr_event)gc->events[k])) != 0))
            ck_abort_msg("%s step %d: event %s, expected %s", gc->name, k,
                         cJSON_IsString(event) ? event->valuestring : "(none)",
                         glr_event_name((enum glr_event)gc->events[k]));
        cJSON_Delete(answer);
    }
    httpc_close(&client);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_golden");
    TCase *tc = tcase_create("golden_over_http");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, golden_case_over_http, 0, GOLDEN_CASES);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
