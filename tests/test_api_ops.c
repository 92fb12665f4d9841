/*
 * The operator's routes: /readyz says 503 when the daemon could not commit a report now
 * (the write lock held elsewhere, another schema version, a full disk), and /metrics counts known
 * traffic exactly, in text that parses as the Prometheus exposition format.
 */
#define _GNU_SOURCE /* prlimit() */
#include <ctype.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "httpc.h"
#include "testutil.h"

/* ---- /readyz ---------------------------------------------------------------------------- */

/* GET /readyz; returns the status and copies the problem's detail (if any) into detail. */
static int readyz(struct httpc *c, char *detail, size_t size)
{
    struct httpc_response r;
    httpc_json(c, "GET", "/readyz", NULL, &r);
    cJSON *body = httpc_body_json(&r);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "detail");
    snprintf(detail, size, "%s", cJSON_IsString(d) ? d->valuestring : "");
    int status = r.status;
    if (status == 200)
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(body, "status")->valuestring, "ready");
    else
        ck_assert_ptr_nonnull(strstr(r.headers, "application/problem+json"));
    cJSON_Delete(body);
    httpc_response_free(&r);
    return status;
}

static void sql(sqlite3 *db, const char *text)
{
    char *message = NULL;
    ck_assert_msg(sqlite3_exec(db, text, NULL, NULL, &message) == SQLITE_OK, "%s: %s", text,
                  message ? message : "?");
}

/*
 * Another process holding the database's write lock is what makes a live daemon unable to
 * commit (root ignores file modes, and a read-only mount needs privileges a test lacks):
 * the probe must see it within its short busy timeout and say so.
 */
START_TEST(readyz_is_503_while_the_database_cannot_be_written)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    char detail[512];
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);

    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(d.db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sql(db, "BEGIN IMMEDIATE");
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(strstr(detail, "locked"), "detail: %s", detail);
    /* Reports wait for the lock too, and succeed once it is free. */
    sql(db, "ROLLBACK");
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);

    /* A newer greedylr migrated the file under this daemon: it must not write to it. */
    sqlite3_stmt *stmt = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(stmt), SQLITE_ROW);
    int version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    char text[64];
    snprintf(text, sizeof(text), "PRAGMA user_version = %d", version + 1);
    sql(db, text);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(strstr(detail, "schema version"), "detail: %s", detail);
    snprintf(text, sizeof(text), "PRAGMA user_version = %d", version);
    sql(db, text);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    sqlite3_close(db);

    /* HEAD works like GET; other methods are refused. */
    cJSON_Delete(httpc_expect(&c, "POST", "/readyz", NULL, 405));
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Sets the daemon's soft limit on the size of the files it writes (0: none may grow). */
static void limit_file_size(pid_t pid, bool limited)
{
    struct rlimit limit;
    ck_assert_int_eq(prlimit(pid, RLIMIT_FSIZE, NULL, &limit), 0);
    limit.rlim_cur = limited ? 0 : limit.rlim_max;
    ck_assert_int_eq(prlimit(pid, RLIMIT_FSIZE, &limit, NULL), 0);
}

/*
 * A disk that fills up under a live daemon: a file size limit of 0, set from outside,
 * makes every write that grows the WAL fail as a full disk would (writing at the end of
 * a file is what fails there too). Reports are then 503 with Retry-After and store
 * nothing, /readyz says why, reads go on; once there is room again both recover by
 * themselves, and the report that failed succeeds when sent again.
 */
START_TEST(a_full_disk_is_503_until_there_is_room)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/disk", "{\"lr\":0.1}", 201));
    for (int k = 0; k < 10; k++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", k, 10 - k);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/disk/reports", body, 200));
    }
    char detail[512];
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);

    limit_file_size(d.pid, true);
    struct httpc_response r;
    httpc_json(&c, "POST", "/v1/jobs/disk/reports", "{\"step\":10,\"loss\":1}", &r);
    ck_assert_int_eq(r.status, 503);
    char retry[16];
    ck_assert_ptr_nonnull(httpc_header(&r, "Retry-After", retry, sizeof(retry)));
    ck_assert_msg(strstr(r.body, "nothing was stored"), "body: %s", r.body);
    httpc_response_free(&r);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(strstr(detail, "committing"), "detail: %s", detail);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/disk", NULL, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "last_step")->valuedouble, 9);
    cJSON_Delete(job);

    limit_file_size(d.pid, false);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/jobs/disk/reports", "{\"step\":10,\"loss\":1}", 200));
    job = httpc_expect(&c, "GET", "/v1/jobs/disk", NULL, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble, 11);
    cJSON_Delete(job);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- /metrics: a parser of the text format ---------------------------------------------- */

/* Most samples kept from one scrape. */
#define SCRAPE_SAMPLES_MAX 4096

struct sample {
    char series[256]; /* name{labels} exactly as written */
    char name[128];
    double value;
};

struct scrape {
    struct sample samples[SCRAPE_SAMPLES_MAX];
    int count;
    char types[64][192]; /* families with a # TYPE line, and their type after a space */
    int ntypes;
};

static bool metric_name_char(char ch, bool first)
{
    return isalpha((unsigned char)ch) || ch == '_' || ch == ':' ||
           (!first && isdigit((unsigned char)ch));
}

/* Parses {name="value",...}; returns the character after '}' or NULL when malformed. */
static const char *parse_labels(const char *p)
{
    if (*p != '{')
        return p;
    p++;
    while (*p != '}') {
        if (!metric_name_char(*p, true) || *p == ':')
            return NULL;
        while (metric_name_char(*p, false) && *p != ':')
            p++;
        if (*p++ != '=' || *p++ != '"')
            return NULL;
        while (*p != '"') {
            if (*p == '\0' || *p == '\n')
                return NULL;
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n')
                    return NULL;
            }
            p++;
        }
        p++;
        if (*p == ',')
            p++;
        else if (*p != '}')
            return NULL;
    }
    return p + 1;
}

/* The family a sample belongs to: histograms' _bucket, _sum and _count go to their base. */
static const char *family_type(const struct scrape *s, const char *name)
{
    for (int i = 0; i < s->ntypes; i++) {
        size_t len = strcspn(s->types[i], " ");
        const char *type = s->types[i] + len + 1;
        if (strncmp(name, s->types[i], len) != 0)
            continue;
        const char *rest = name + len;
        if (*rest == '\0')
            return type;
        if (strcmp(type, "histogram") == 0 &&
            (!strcmp(rest, "_bucket") || !strcmp(rest, "_sum") || !strcmp(rest, "_count")))
            return type;
    }
    return NULL;
}

/* Parses a whole exposition, failing the test at the first line that is not valid. */
static void parse_scrape(const char *text, struct scrape *s)
{
    memset(s, 0, sizeof(*s));
    int line_no = 0;
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        line_no++;
        const char *end = strchr(line, '\n');
        ck_assert_msg(end, "line %d does not end with a newline", line_no);
        int len = (int)(end - line);
        if (line[0] == '#') {
            char name[128], type[32];
            if (sscanf(line, "# TYPE %127s %31s", name, type) == 2) {
                ck_assert_msg(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
                                  !strcmp(type, "histogram"),
                              "line %d: type %s", line_no, type);
                ck_assert_msg(!family_type(s, name), "line %d: second TYPE of %s", line_no, name);
                ck_assert_int_lt(s->ntypes, 64);
                snprintf(s->types[s->ntypes++], sizeof(s->types[0]), "%s %s", name, type);
            } else {
                ck_assert_msg(strncmp(line, "# HELP ", 7) == 0, "line %d: %.*s", line_no, len,
                              line);
            }
            continue;
        }
        ck_assert_msg(metric_name_char(line[0], true), "line %d: %.*s", line_no, len, line);
        const char *p = line;
        while (metric_name_char(*p, false))
            p++;
        const char *labels_end = parse_labels(p);
        ck_assert_msg(labels_end && *labels_end == ' ', "line %d: bad labels: %.*s", line_no, len,
                      line);
        ck_assert_int_lt(s->count, SCRAPE_SAMPLES_MAX);
        struct sample *sm = &s->samples[s->count++];
        snprintf(sm->name, sizeof(sm->name), "%.*s", (int)(p - line), line);
        snprintf(sm->series, sizeof(sm->series), "%.*s", (int)(labels_end - line), line);
        char *value_end = NULL;
        const char *value = labels_end + 1;
        sm->value = strncmp(value, "+Inf", 4) == 0 ? INFINITY : strtod(value, &value_end);
        ck_assert_msg(strncmp(value, "+Inf", 4) == 0 || (value_end != value && value_end == end),
                      "line %d: bad value: %.*s", line_no, len, line);
        ck_assert_msg(family_type(s, sm->name), "line %d: %s has no # TYPE before it", line_no,
                      sm->name);
    }
}

/* The value of a series (name{labels} exactly), or NAN when the scrape has none. */
static double value_of(const struct scrape *s, const char *series)
{
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->samples[i].series, series) == 0)
            return s->samples[i].value;
    return NAN;
}

static void expect_value(const struct scrape *s, const char *series, double expected)
{
    double v = value_of(s, series);
    ck_assert_msg(v == expected, "%s is %g, expected %g", series, v, expected);
}

/* Every histogram: buckets cumulative, ending at +Inf with the value of _count. */
static void check_histograms(const struct scrape *s)
{
    for (int i = 0; i < s->count; i++) {
        const struct sample *sm = &s->samples[i];
        if (!strstr(sm->name, "_bucket"))
            continue;
        bool first = i == 0 || strcmp(s->samples[i - 1].name, sm->name) != 0 ||
                     strstr(s->samples[i - 1].series, "le=\"+Inf\"");
        if (!first)
            ck_assert_msg(sm->value >= s->samples[i - 1].value, "%s decreases", sm->series);
        if (strstr(sm->series, "le=\"+Inf\"")) {
            const struct sample *count = &s->samples[i + 2];
            ck_assert_msg(i + 2 < s->count && strstr(count->name, "_count") &&
                              count->value == sm->value,
                          "%s: +Inf bucket and _count differ", sm->series);
        }
    }
}

static void scrape(struct httpc *c, struct scrape *s)
{
    struct httpc_response r;
    httpc_json(c, "GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    char type[128];
    ck_assert_ptr_nonnull(httpc_header(&r, "Content-Type", type, sizeof(type)));
    ck_assert_msg(strncmp(type, "text/plain; version=0.0.4", 25) == 0, "type %s", type);
    parse_scrape(r.body, s);
    /* No job id may become a label: that would grow without bound. */
    ck_assert_msg(!strstr(r.body, "metrics-job"), "a job id is in the metrics");
    httpc_response_free(&r);
    check_histograms(s);
}

#define REQUESTS(route, method, status)                                                            \
    "greedylr_http_requests_total{route=\"" route "\",method=\"" method "\",status=\"" status "\"" \
    "}"

START_TEST(metrics_count_known_traffic_exactly)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    static struct scrape s;

    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/metrics-job", "{\"lr\":0.1}", 201));
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/metrics-job", "{\"lr\":0.1}", 200));
    for (int k = 0; k < 3; k++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", k, 5 - k);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/metrics-job/reports", body, 200));
    }
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/jobs/metrics-job/reports", "{\"step\":2,\"loss\":9}", 409));
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/metrics-job/reports", "{\"step\":0,\"loss\":5}",
                              200)); /* a retry: nothing committed */
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/metrics-job/history", NULL, 200));
    cJSON_Delete(httpc_expect(&c, "GET", "/nowhere", NULL, 404));
    cJSON_Delete(httpc_expect(&c, "DELETE", "/healthz", NULL, 405));
    cJSON_Delete(
        httpc_expect(&c, "PATCH", "/v1/jobs/metrics-job", "{\"status\":\"finished\"}", 200));
    scrape(&c, &s);

    expect_value(&s, REQUESTS("/v1/jobs/{id}", "PUT", "201"), 1);
    expect_value(&s, REQUESTS("/v1/jobs/{id}", "PUT", "200"), 1);
    expect_value(&s, REQUESTS("/v1/jobs/{id}", "PATCH", "200"), 1);
    expect_value(&s, REQUESTS("/v1/jobs/{id}/reports", "POST", "200"), 4);
    expect_value(&s, REQUESTS("/v1/jobs/{id}/reports", "POST", "409"), 1);
    expect_value(&s, REQUESTS("/v1/jobs/{id}/history", "GET", "200"), 1);
    expect_value(&s, REQUESTS("unmatched", "GET", "404"), 1);
    expect_value(&s, REQUESTS("/healthz", "DELETE", "405"), 1);
    ck_assert_msg(isnan(value_of(&s, REQUESTS("/metrics", "GET", "200"))),
                  "a scrape counts itself only once it is over");
    expect_value(
        &s, "greedylr_http_request_duration_seconds_count{route=\"/v1/jobs/{id}/reports\"}", 5);
    expect_value(&s, "greedylr_http_request_duration_seconds_count{route=\"/v1/jobs/{id}/lr\"}", 0);
    expect_value(&s, "greedylr_jobs{status=\"running\"}", 0);
    expect_value(&s, "greedylr_jobs{status=\"finished\"}", 1);
    expect_value(&s, "greedylr_store_commits_total", 3);
    expect_value(&s, "greedylr_store_commit_batch_size_sum", 3);
    expect_value(&s, "greedylr_store_commit_batch_size_bucket{le=\"1\"}", 3);
    expect_value(&s, "greedylr_store_commit_duration_seconds_count", 3);
    ck_assert(value_of(&s, "greedylr_store_commit_duration_seconds_sum") > 0);
    expect_value(&s, "greedylr_http_requests_in_flight", 1); /* the scrape itself */
    expect_value(&s, "greedylr_waiting_requests", 0);

    scrape(&c, &s);
    expect_value(&s, REQUESTS("/metrics", "GET", "200"), 1);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Reports one rank's loss of step 0 of job "ranked" (it waits for the other rank). */
static void report_rank(int port, int rank)
{
    struct httpc c;
    httpc_init(&c, port);
    char body[64];
    snprintf(body, sizeof(body), "{\"step\":0,\"rank\":%d,\"loss\":1.5}", rank);
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/ranked/reports", body, 200));
    httpc_close(&c);
}

START_TEST(metrics_show_waiting_requests)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    static struct scrape s;
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/ranked", "{\"lr\":0.1,\"world_size\":2}", 201));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        report_rank(d.port, 0);
        _exit(0);
    }
    /* The rank's request arrives when it arrives: watch for it. */
    double waiting = 0;
    for (int tries = 0; tries < 500 && waiting != 1; tries++) {
        testutil_sleep_ms(10);
        scrape(&c, &s);
        waiting = value_of(&s, "greedylr_waiting_requests");
    }
    ck_assert_msg(waiting == 1, "waiting requests: %g", waiting);
    expect_value(&s, "greedylr_waiting_jobs", 1);
    expect_value(&s, "greedylr_http_requests_in_flight", 2);
    report_rank(d.port, 1);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /*
     * A request is counted once libmicrohttpd says it is over, which may be a moment after
     * the other rank has read its answer: wait for that moment, within bounds.
     */
    double answered = 0;
    for (int tries = 0; tries < 500 && answered != 2; tries++) {
        scrape(&c, &s);
        answered = value_of(&s, REQUESTS("/v1/jobs/{id}/reports", "POST", "200"));
        if (answered != 2)
            testutil_sleep_ms(10);
    }
    expect_value(&s, "greedylr_waiting_requests", 0);
    expect_value(&s, REQUESTS("/v1/jobs/{id}/reports", "POST", "200"), 2);
    expect_value(&s, "greedylr_store_commits_total", 1);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_ops");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 60 * testutil_slow());
    tcase_add_test(tc, readyz_is_503_while_the_database_cannot_be_written);
    tcase_add_test(tc, a_full_disk_is_503_until_there_is_room);
    tcase_add_test(tc, metrics_count_known_traffic_exactly);
    tcase_add_test(tc, metrics_show_waiting_requests);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
