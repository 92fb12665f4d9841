/*
 * History over HTTP: pages in step order with a cursor, downsampling that keeps the shape
 * of the curve (lowest and highest loss, every lr change), and the CSV export.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apitest.h"
#include "base/jsonx.h"
#include "testutil.h"

/* The long job every case reads: its losses, and its lrs as the reports answered them. */
#define LONG_STEPS 3000
static double long_losses[LONG_STEPS];
static double long_lrs[LONG_STEPS];

static double loss_at(int k)
{
    /* A noisy decline with plateaus, so the lr goes both ways; two marked extremes. */
    double v = 3.0 / (1.0 + 0.002 * k) + 0.3 * sin(k * 0.37) * sin(k * 0.011);
    if (k == 1234)
        v = -5.0;
    if (k == 2345)
        v = 50.0;
    return v;
}

/* Reports the long job once, before the cases. */
static void report_long_job(void)
{
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/long",
                              "{\"lr\":0.1,\"config\":{\"patience\":3,\"factor\":0.9}}", 201));
    for (int k = 0; k < LONG_STEPS; k++) {
        long_losses[k] = loss_at(k);
        char loss[JSONX_DOUBLE_MAX], body[96];
        jsonx_format_double(long_losses[k], loss);
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", k, loss);
        cJSON *a = httpc_expect(&c, "POST", "/v1/jobs/long/reports", body, 200);
        ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(a, "lr"), &long_lrs[k]));
        cJSON_Delete(a);
    }
    httpc_close(&c);
}

static double point_number(const cJSON *point, const char *key)
{
    double v = NAN;
    ck_assert_msg(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(point, key), &v), "no %s", key);
    return v;
}

START_TEST(pages_walk_the_range_in_order)
{
    int next_step = 100;
    char token[64] = "";
    int pages = 0;
    for (;;) {
        char path[200];
        snprintf(path, sizeof(path),
                 "/v1/jobs/long/history?from_step=100&to_step=349&page_size=100%s%s",
                 token[0] ? "&page_token=" : "", token);
        cJSON *h = httpc_expect(&client, "GET", path, NULL, 200);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(h, "job")->valuestring, "long");
        const cJSON *point;
        cJSON_ArrayForEach(point, cJSON_GetObjectItemCaseSensitive(h, "points"))
        {
            int step = (int)point_number(point, "step");
            ck_assert_int_eq(step, next_step);
            ck_assert(point_number(point, "loss") == long_losses[step]);
            ck_assert(point_number(point, "lr") == long_lrs[step]);
            ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(point, "event")));
            next_step++;
        }
        pages++;
        bool done = !httpc_next_page(h, token, sizeof(token));
        cJSON_Delete(h);
        if (done)
            break;
    }
    ck_assert_int_eq(next_step, 350);
    ck_assert_int_eq(pages, 3);
}
END_TEST

START_TEST(downsampling_keeps_extremes_and_lr_changes)
{
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/long/history?max_points=400", NULL, 200);
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(h, "points");
    int n = cJSON_GetArraySize(points);
    ck_assert_int_le(n, 400);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(h, "next_page_token")));
    bool has_min = false, has_max = false;
    int last_step = -1;
    int kept[LONG_STEPS] = {0};
    const cJSON *point;
    cJSON_ArrayForEach(point, points)
    {
        int step = (int)point_number(point, "step");
        ck_assert_int_gt(step, last_step);
        last_step = step;
        kept[step] = 1;
        ck_assert(point_number(point, "lr") == long_lrs[step]);
        has_min |= step == 1234;
        has_max |= step == 2345;
    }
    ck_assert_msg(has_min && has_max, "the global extremes were dropped");
    int changes = 0;
    for (int k = 1; k < LONG_STEPS; k++) {
        if (long_lrs[k] != long_lrs[k - 1]) {
            changes++;
            ck_assert_msg(kept[k], "the lr change at step %d was dropped", k);
        }
    }
    ck_assert_int_gt(changes, 10);
    ck_assert_int_lt(changes, 200);
    ck_assert_int_gt(n, 300); /* the budget is used, not wasted */
    cJSON_Delete(h);

    /* A range with fewer points than asked comes whole. */
    h = httpc_expect(&client, "GET", "/v1/jobs/long/history?from_step=10&to_step=19&max_points=50",
                     NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(h, "points")), 10);
    cJSON_Delete(h);
}
END_TEST

/* Checks a downsampled answer against what was reported; returns how many points it has. */
static int check_sampled(const cJSON *h, int from, int to, int max_points, int *lr_changes)
{
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(h, "points");
    int n = 0, last_step = -1;
    bool has_min = false, has_max = false;
    *lr_changes = 0;
    const cJSON *point;
    cJSON_ArrayForEach(point, points)
    {
        int step = (int)point_number(point, "step");
        ck_assert_int_gt(step, last_step);
        ck_assert_int_ge(step, from);
        ck_assert_int_le(step, to);
        last_step = step;
        ck_assert(point_number(point, "loss") == long_losses[step]);
        ck_assert(point_number(point, "lr") == long_lrs[step]);
        has_min |= step == 1234;
        has_max |= step == 2345;
        *lr_changes += step > from && long_lrs[step] != long_lrs[step - 1];
        n++;
    }
    ck_assert_int_le(n, max_points);
    ck_assert_msg(has_min && has_max, "the extremes were dropped");
    return n;
}

/*
 * With more blocks of history than points asked (3000 rows are 46 blocks of 64), the
 * answer is made from the blocks' summaries plus the rows around them: the extremes, and
 * as many lr changes as half the budget holds, all of them rows that were reported.
 */
START_TEST(downsampling_from_block_summaries)
{
    int changes = 0;
    for (int k = 1; k < LONG_STEPS; k++)
        changes += long_lrs[k] != long_lrs[k - 1];
    ck_assert_int_gt(changes, 20);

    int shown_changes;
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/long/history?max_points=40", NULL, 200);
    int n = check_sampled(h, 0, LONG_STEPS - 1, 40, &shown_changes);
    cJSON_Delete(h);
    ck_assert_int_ge(shown_changes, 15); /* half the budget, less rows picked twice */
    ck_assert_int_ge(n, 30);

    /* A range that starts and ends inside blocks: its ends are read row by row. */
    h = httpc_expect(&client, "GET",
                     "/v1/jobs/long/history?from_step=100&to_step=2900&max_points=40", NULL, 200);
    n = check_sampled(h, 100, 2900, 40, &shown_changes);
    cJSON_Delete(h);
    ck_assert_int_ge(shown_changes, 15);
    ck_assert_int_ge(n, 30);
}
END_TEST

START_TEST(csv_of_three_groups)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/csv-3",
                              "{\"lr\":[0.1,0.01,0.001],\"config\":{\"patience\":0,"
                              "\"min_lr\":0.0001}}",
                              201));
    double losses[] = {1.0, 0.5, 0.75, 0.25, 2.0};
    double answered[5][3];
    for (int k = 0; k < 5; k++) {
        char body[96];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%.17g}", k, losses[k]);
        cJSON *a = httpc_expect(&client, "POST", "/v1/jobs/csv-3/reports", body, 200);
        for (int g = 0; g < 3; g++)
            jsonx_get_double(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(a, "lr"), g),
                             &answered[k][g]);
        cJSON_Delete(a);
    }
    struct httpc_response r;
    ck_assert_int_eq(
        httpc_request(&client, "GET", "/v1/jobs/csv-3/history?format=csv", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    char type[64];
    ck_assert_str_eq(httpc_header(&r, "Content-Type", type, sizeof(type)), "text/csv");
    char *line = strtok(r.body, "\n");
    ck_assert_str_eq(line, "step,loss,lr_0,lr_1,lr_2,event");
    for (int k = 0; k < 5; k++) {
        line = strtok(NULL, "\n");
        ck_assert_ptr_nonnull(line);
        int step;
        double loss, lr[3];
        char event[16];
        ck_assert_int_eq(
            sscanf(line, "%d,%lf,%lf,%lf,%lf,%15s", &step, &loss, &lr[0], &lr[1], &lr[2], event),
            6);
        ck_assert_int_eq(step, k);
        ck_assert(loss == losses[k]);
        for (int g = 0; g < 3; g++)
            ck_assert(lr[g] == answered[k][g]);
    }
    ck_assert_ptr_null(strtok(NULL, "\n"));
    httpc_response_free(&r);
}
END_TEST

START_TEST(csv_streams_the_whole_range)
{
    struct httpc_response r;
    ck_assert_int_eq(
        httpc_request(&client, "GET", "/v1/jobs/long/history?format=csv", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    int lines = 0;
    for (char *p = r.body; (p = strchr(p, '\n')); p++)
        lines++;
    ck_assert_int_eq(lines, LONG_STEPS + 1);
    ck_assert(strncmp(r.body, "step,loss,lr,event\n0,", 21) == 0);
    httpc_response_free(&r);
}
END_TEST

START_TEST(smoothed_metric_is_shown)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/smooth-1",
                              "{\"lr\":0.1,\"config\":{\"smooth\":true,\"window_size\":2}}", 201));
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/smooth-1/reports", "{\"step\":0,\"loss\":1}", 200));
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/smooth-1/reports", "{\"step\":1,\"loss\":2}", 200));
    cJSON *h = httpc_expect(&client, "GET", "/v1/jobs/smooth-1/history", NULL, 200);
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(h, "points");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(points, 0), "metric"));
    ck_assert(point_number(cJSON_GetArrayItem(points, 1), "metric") == 1.5);
    cJSON_Delete(h);
}
END_TEST

START_TEST(bad_history_queries_are_422)
{
    const char *queries[][2] = {
        {"/v1/jobs/long/history?from_step=-1", "from_step"},
        {"/v1/jobs/long/history?to_step=x", "to_step"},
        {"/v1/jobs/long/history?from_step=9&to_step=3", "from_step"},
        {"/v1/jobs/long/history?page_size=0", "page_size"},
        {"/v1/jobs/long/history?max_points=100000", "max_points"},
        {"/v1/jobs/long/history?format=xml", "format"},
        {"/v1/jobs/long/history?page_token=j12", "page_token"},
        /* A number out of range, and the forms sscanf took: a sign, spaces, a tail. */
        {"/v1/jobs/long/history?page_token=h99999999999999999999.0", "page_token"},
        {"/v1/jobs/long/history?page_token=h%2B5.0", "page_token"},
        {"/v1/jobs/long/history?page_token=h%205.%200", "page_token"},
        {"/v1/jobs/long/history?page_token=h5.0x", "page_token"},
        {"/v1/jobs/long/history?page_token=h5", "page_token"},
    };
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        struct httpc_response r;
        ck_assert_int_eq(httpc_request(&client, "GET", queries[i][0], NULL, NULL, 0, &r), 0);
        ck_assert_msg(r.status == 422, "%s: %d", queries[i][0], r.status);
        ck_assert_msg(strstr(r.body, queries[i][1]), "%s: %s", queries[i][0], r.body);
        httpc_response_free(&r);
    }
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_history");
    TCase *tc = tcase_create("history");
    apitest_fixtures(tc, report_long_job);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, pages_walk_the_range_in_order);
    tcase_add_test(tc, downsampling_keeps_extremes_and_lr_changes);
    tcase_add_test(tc, downsampling_from_block_summaries);
    tcase_add_test(tc, csv_of_three_groups);
    tcase_add_test(tc, csv_streams_the_whole_range);
    tcase_add_test(tc, smoothed_metric_is_shown);
    tcase_add_test(tc, bad_history_queries_are_422);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
