/*
 * The request log: one line per request once it completes (long polls included) with its
 * method, route template, status and duration, as text or as JSON lines that parse, with
 * quotes, control characters and bytes that are not UTF-8 escaped correctly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "httpc.h"
#include "testutil.h"

/* Known traffic: one request of each kind the log must show. */
static void traffic(int port)
{
    struct httpc c;
    httpc_init(&c, port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/logged", "{\"lr\":0.1}", 201));
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/jobs/logged/reports", "{\"step\":0,\"loss\":1}", 200));
    /* A long poll: suspended, then answered 204 when its wait is over. */
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/logged/lr?step=1&wait_ms=100", NULL, 204));
    cJSON_Delete(httpc_expect(&c, "POST", "/healthz", NULL, 405));
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/nothing", NULL, 404));
    httpc_close(&c);
}

/* What the traffic must log, in order. */
static const struct {
    const char *method, *route;
    int status;
} expected[] = {
    {"PUT", "/v1/jobs/{id}", 201},    {"POST", "/v1/jobs/{id}/reports", 200},
    {"GET", "/v1/jobs/{id}/lr", 204}, {"POST", "/healthz", 405},
    {"GET", "unmatched", 404},
};
#define EXPECTED (sizeof(expected) / sizeof(expected[0]))

START_TEST(json_lines_parse_and_name_every_request)
{
    /* A database path with a quote, a backslash, a tab, UTF-8 and a byte that is not. */
    char dir[] = "/tmp/greedylr-logs-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char db[128];
    snprintf(db, sizeof(db),
             "%s/a\"b\\c\td\xe2\x82\xac"
             "e\xff.db",
             dir);
    const char *args[] = {"--log-format", "json", NULL};
    struct daemon d;
    daemon_start(&d, db, args);
    traffic(d.port);
    daemon_stop(&d);

    size_t len = 0;
    char *log = testutil_read_file(d.log, &len);
    size_t seen = 0;
    bool path_seen = false;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *entry = cJSON_Parse(line);
        ck_assert_msg(cJSON_IsObject(entry), "not a JSON object: %s", line);
        const cJSON *time = cJSON_GetObjectItemCaseSensitive(entry, "time");
        const cJSON *level = cJSON_GetObjectItemCaseSensitive(entry, "level");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(entry, "msg");
        ck_assert_msg(cJSON_IsString(time) && strlen(time->valuestring) == 24 &&
                          cJSON_IsString(level) && cJSON_IsString(msg),
                      "fields: %s", line);
        /* The byte that is not UTF-8 became U+FFFD; everything else is as it was. */
        if (strstr(msg->valuestring, "/a\"b\\c\td\xe2\x82\xac"
                                     "e\xef\xbf\xbd.db"))
            path_seen = true;
        if (strcmp(msg->valuestring, "request") == 0) {
            ck_assert_uint_lt(seen, EXPECTED);
            ck_assert_str_eq(level->valuestring, "info");
            const cJSON *status = cJSON_GetObjectItemCaseSensitive(entry, "status");
            const cJSON *duration = cJSON_GetObjectItemCaseSensitive(entry, "duration_ms");
            ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(entry, "method")->valuestring,
                             expected[seen].method);
            ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(entry, "route")->valuestring,
                             expected[seen].route);
            ck_assert_int_eq((int)status->valuedouble, expected[seen].status);
            ck_assert(cJSON_IsNumber(duration) && duration->valuedouble >= 0);
            if (expected[seen].status == 204)
                ck_assert_msg(duration->valuedouble >= 100, "the long poll took %g ms",
                              duration->valuedouble);
            seen++;
        }
        cJSON_Delete(entry);
    }
    ck_assert_msg(path_seen, "the start line does not show the database path");
    ck_assert_uint_eq(seen, EXPECTED);
    free(log);
    char path[160];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", db, suffixes[i]);
        unlink(path);
    }
    daemon_cleanup(&d);
    rmdir(dir);
}
END_TEST

START_TEST(text_lines_name_every_request)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    traffic(d.port);
    daemon_stop(&d);
    size_t len = 0;
    char *log = testutil_read_file(d.log, &len);
    const char *at = log;
    for (size_t i = 0; i < EXPECTED; i++) {
        char want[160];
        snprintf(want, sizeof(want),
                 " info request method=%s route=%s status=%d duration_ms=", expected[i].method,
                 expected[i].route, expected[i].status);
        const char *found = strstr(at, want);
        ck_assert_msg(found, "no line \"%s\" after the previous one in:\n%s", want, log);
        at = found + strlen(want);
    }
    free(log);
    daemon_cleanup(&d);
}
END_TEST

/* --log-level warn leaves the request lines out; a bad --log-format is refused. */
START_TEST(levels_and_formats_are_checked)
{
    const char *args[] = {"--log-level", "warn", NULL};
    struct daemon d;
    daemon_start(&d, NULL, args);
    traffic(d.port);
    daemon_stop(&d);
    size_t len = 0;
    char *log = testutil_read_file(d.log, &len);
    ck_assert_msg(!strstr(log, "request"), "log: %s", log);
    free(log);
    daemon_cleanup(&d);

    char err[512];
    const char *bad[] = {"--log-format", "xml", NULL};
    ck_assert_int_eq(daemon_run(bad, err, sizeof(err)), 2);
    ck_assert_msg(strstr(err, "--log-format must be text or json"), "stderr: %s", err);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("logs");
    TCase *tc = tcase_create("logs");
    tcase_set_timeout(tc, 60 * testutil_slow());
    tcase_add_test(tc, json_lines_parse_and_name_every_request);
    tcase_add_test(tc, text_lines_name_every_request);
    tcase_add_test(tc, levels_and_formats_are_checked);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
