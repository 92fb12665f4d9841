/*
 * Broken and hostile input against a live daemon: truncated and oversized bodies, bytes
 * that are not UTF-8, numbers out of every range, JSON nested past any sense, garbage
 * request lines, slow clients and a flood of connections. The daemon must stay up,
 * answer each with the right status, and leave the stored data exactly as it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "apitest.h"
#include "base/jsonx.h"
#include "testutil.h"

/* A job with history made before the attack, as its GET and history answered then. */
static char *job_before, *history_before;

static void prepare(void)
{
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(
        httpc_expect(&c, "PUT", "/v1/jobs/keep", "{\"lr\":0.1,\"tags\":{\"t\":\"v\"}}", 201));
    for (int step = 0; step < 5; step++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", step, 9 - step);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/keep/reports", body, 200));
    }
    httpc_close(&c);
    job_before = httpc_get_text(server.port, "/v1/jobs/keep");
    history_before = httpc_get_text(server.port, "/v1/jobs/keep/history");
}

/* Sends method path with a JSON body; returns the status. */
static int send_json(const char *method, const char *path, const char *body, size_t len)
{
    struct httpc c;
    httpc_init(&c, server.port);
    struct httpc_response r;
    int rc = httpc_request(&c, method, path, "application/json", body, len, &r);
    int status = rc == 0 ? r.status : -1;
    httpc_response_free(&r);
    httpc_close(&c);
    return status;
}

static void expect_status(const char *method, const char *path, const char *body, int status)
{
    int got = send_json(method, path, body, strlen(body));
    ck_assert_msg(got == status, "%s %s %.80s: %d, expected %d", method, path, body, got, status);
}

START_TEST(truncated_bodies)
{
    const char *cuts[] = {
        "POST /v1/jobs/keep/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{\"step\":5,",
        "PUT /v1/jobs/keep HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n10\r\n{\"lr\":0.5,\"conf",
        "POST /v1/jobs/keep/rewind HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        /* The client sends part of its body and hangs up. */
        int fd = httpc_connect(server.port, NULL);
        ck_assert_int_ge(fd, 0);
        send(fd, cuts[i], strlen(cuts[i]), MSG_NOSIGNAL);
        close(fd);
    }
    /* Complete JSON that ends too soon is malformed. */
    expect_status("POST", "/v1/jobs/keep/reports", "{\"step\":5,\"loss\":", 400);
    expect_status("PUT", "/v1/jobs/keep", "{\"lr\":0.1,\"tags\":{\"t\":\"v\"}", 400);
}
END_TEST

START_TEST(oversized_bodies)
{
    size_t big = 2 * 1024 * 1024;
    char *body = malloc(big + 1);
    ck_assert_ptr_nonnull(body);
    memset(body, ' ', big);
    memcpy(body, "{\"step\":5,\"loss\":1", 18);
    body[big - 1] = '}';
    body[big] = '\0';
    ck_assert_int_eq(send_json("POST", "/v1/jobs/keep/reports", body, big), 413);
    ck_assert_int_eq(send_json("PUT", "/v1/jobs/keep", body, 1024 * 1024 + 1), 413);
    free(body);
}
END_TEST

START_TEST(invalid_utf8)
{
    expect_status("PUT", "/v1/jobs/u8", "{\"lr\":0.1,\"tags\":{\"k\":\"\xff\xfe\"}}", 400);
    expect_status("PATCH", "/v1/jobs/keep", "{\"tags\":{\"t\":\"\xc0\xaf\"}}", 400);
    expect_status("POST", "/v1/jobs/keep/reports", "{\"st\xed\xa0\x80\":5,\"loss\":1}", 400);
    expect_status("PUT", "/v1/jobs/u8", "{\"lr\":0.1,\"tags\":{\"k\":\"caf\xc3\xa9\"}}", 201);

    /* A detail that quotes the client's text, cut inside a character, is still UTF-8. */
    char body[256] = "{\"lr\":0.1,\"tags\":{\"a";
    for (int i = 0; i < 40; i++)
        strcat(body, "\xc3\xa9");
    strcat(body, "\":5}}");
    struct httpc c;
    httpc_init(&c, server.port);
    struct httpc_response r;
    ck_assert_int_eq(
        httpc_request(&c, "PUT", "/v1/jobs/u8-long", "application/json", body, strlen(body), &r),
        0);
    ck_assert_int_eq(r.status, 422);
    ck_assert_uint_eq(jsonx_utf8_check(r.body, strlen(r.body)), strlen(r.body));
    httpc_response_free(&r);
    httpc_close(&c);
}
END_TEST

START_TEST(numbers_out_of_range)
{
    const char *reports[] = {
        "{\"step\":1e400,\"loss\":1}",
        "{\"step\":-1,\"loss\":1}",
        "{\"step\":-1e400,\"loss\":1}",
        "{\"step\":9007199254740993,\"loss\":1}",
        "{\"step\":5.5,\"loss\":1}",
        "{\"step\":\"5\",\"loss\":1}",
        "{\"step\":5,\"loss\":\"1e5\"}",
        "{\"step\":5,\"loss\":1,\"rank\":-1}",
        "{\"step\":5,\"loss\":1,\"rank\":1e300}",
    };
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++)
        expect_status("POST", "/v1/jobs/keep/reports", reports[i], 422);
    expect_status("PUT", "/v1/jobs/n1", "{\"lr\":-0.1}", 422);
    expect_status("PUT", "/v1/jobs/n1", "{\"lr\":1e400}", 422);
    expect_status("PUT", "/v1/jobs/n1", "{\"lr\":0.1,\"world_size\":1e20}", 422);
    expect_status("PUT", "/v1/jobs/n1", "{\"lr\":0.1,\"config\":{\"patience\":-5}}", 422);
    expect_status("POST", "/v1/jobs/keep/rewind", "{\"to_step\":-2}", 422);
    expect_status("POST", "/v1/jobs/keep/rewind", "{\"to_step\":1e19}", 422);
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/keep/history?from_step=-5", NULL, 422));
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs?page_size=99999999999999999999", NULL, 422));
    httpc_close(&c);
}
END_TEST

/*
 * Deeply nested JSON is 400: cJSON stops at CJSON_NESTING_LIMIT (1000) levels, and the
 * parser's own depth bound is lower still.
 */
START_TEST(deeply_nested_json)
{
    size_t depth = 100000;
    char *body = malloc(2 * depth + 64);
    ck_assert_ptr_nonnull(body);
    size_t len = (size_t)sprintf(body, "{\"lr\":0.1,\"tags\":");
    memset(body + len, '[', depth);
    len += depth;
    memset(body + len, ']', depth);
    len += depth;
    body[len++] = '}';
    body[len] = '\0';
    ck_assert_int_eq(send_json("PUT", "/v1/jobs/deep", body, len), 400);
    memset(body, '{', depth);
    ck_assert_int_eq(send_json("POST", "/v1/jobs/keep/reports", body, depth), 400);
    free(body);
}
END_TEST

START_TEST(garbage_requests)
{
    const char *garbage[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /healthz HTTP/9.9\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS hello on plain HTTP */
        "POST /v1/jobs/keep/reports HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        ("POST /v1/jobs/keep/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "zz\r\n{}\r\n0\r\n\r\n"), /* one request: a chunk size that is not hex */
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        char reply[4096];
        int status = httpc_raw(server.port, NULL, garbage[i], strlen(garbage[i]), reply,
                               sizeof(reply), 2000 * testutil_slow());
        ck_assert_msg(status == 0 || (status >= 400 && status < 500) || status == 505,
                      "garbage %zu answered %d", i, status);
    }
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/..%2f..%2fetc", NULL, 404));
    cJSON_Delete(httpc_expect(&c, "GET", "/healthz", NULL, 200));
    httpc_close(&c);
}
END_TEST

/* An encoded NUL cut the path short: DELETE /v1/jobs/keep%00/x deleted job keep. */
START_TEST(encoded_nul_in_a_path)
{
    const char *requests[] = {
        "DELETE /v1/jobs/keep%00/anything/else HTTP/1.1\r\nHost: x\r\n\r\n",
        "PUT /v1/jobs/zz%00b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 10\r\n\r\n{\"lr\":0.1}",
        "GET /v1/jobs/keep%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        char reply[4096];
        int status = httpc_raw(server.port, NULL, requests[i], strlen(requests[i]), reply,
                               sizeof(reply), 2000 * testutil_slow());
        ck_assert_msg(status == 400, "request %zu answered %d: %s", i, status, reply);
        ck_assert_msg(strstr(reply, "%00"), "request %zu: %s", i, reply);
    }
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/keep", NULL, 200));
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/zz", NULL, 404));
    /* Other escapes still decode: %2E is '.', so this is job keep.2. */
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/keep%2E2", NULL, 404));
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/esc%2Dx", "{\"lr\":0.1}", 201));
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/esc-x", NULL, 200));
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/jobs/esc-x", NULL, 204));
    httpc_close(&c);
}
END_TEST

/* Heads a proxy could read otherwise: no Host in HTTP/1.1, two Content-Lengths that differ. */
START_TEST(ambiguous_request_heads)
{
    const struct {
        const char *request;
        const char *detail; /* NULL: answered as usual */
    } cases[] = {
        {"GET /healthz HTTP/1.1\r\n\r\n", "Host"},
        {"POST /v1/jobs/keep/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: 22\r\nContent-Length: 23\r\n\r\n{\"step\":9,\"loss\":1.5}",
         "Content-Length"},
        /* HTTP/1.0 has no Host to require; the same length twice is one length. */
        {"GET /healthz HTTP/1.0\r\n\r\n", NULL},
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n"
         "Connection: close\r\n\r\n",
         NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char reply[4096];
        int status = httpc_raw(server.port, NULL, cases[i].request, strlen(cases[i].request), reply,
                               sizeof(reply), 2000 * testutil_slow());
        if (cases[i].detail) {
            ck_assert_msg(status == 400, "case %zu answered %d: %s", i, status, reply);
            ck_assert_msg(strstr(reply, cases[i].detail), "case %zu: %s", i, reply);
        } else {
            ck_assert_msg(status == 200, "case %zu answered %d: %s", i, status, reply);
        }
    }
}
END_TEST

/* Sends method path with len bytes of JSON; asserts a problem+json of status saying says. */
static void expect_problem(const char *method, const char *path, const char *body, size_t len,
                           int status, const char *says)
{
    struct httpc c;
    httpc_init(&c, server.port);
    struct httpc_response r;
    ck_assert_int_eq(httpc_request(&c, method, path, "application/json", body, len, &r), 0);
    char type[64];
    ck_assert_msg(r.status == status, "%s %s %.60s: %d, expected %d: %s", method, path, body,
                  r.status, status, r.body);
    ck_assert_str_eq(httpc_header(&r, "Content-Type", type, sizeof(type)),
                     "application/problem+json");
    cJSON *problem = httpc_body_json(&r);
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(problem, "detail");
    ck_assert_msg(cJSON_IsString(detail) && strstr(detail->valuestring, says),
                  "%s %s %.60s: %s, expected %s", method, path, body, r.body, says);
    cJSON_Delete(problem);
    httpc_response_free(&r);
    httpc_close(&c);
}

/*
 * What cJSON reads leniently, and another parser (a proxy's, an auditor's) may read
 * otherwise, is refused: each of these once changed a job, or was taken for another value.
 */
START_TEST(lenient_json_is_refused)
{
    static const struct {
        const char *method, *path, *body;
        size_t len; /* 0: strlen(body) */
        int status;
        const char *says;
    } cases[] = {
        /* cJSON keeps the first of two keys: this was a report of step 5. */
        {"POST", "/v1/jobs/keep/reports", "{\"step\":5,\"loss\":1,\"step\":6}", 0, 400,
         "duplicate key \"step\" in the request body"},
        {"POST", "/v1/jobs/keep/reports", "{\"step\":05,\"loss\":1}", 0, 400,
         "byte 8: leading zero in a number"},
        {"POST", "/v1/jobs/keep/reports", "{\"step\":5,\"loss\":1.}", 0, 400,
         "byte 19: a decimal point without digits"},
        /* Infinity, a diverged step, where the client wrote a (too large) number. */
        {"POST", "/v1/jobs/keep/reports", "{\"step\":5,\"loss\":1e309}", 0, 422,
         "\"loss\" is 1e309, beyond the range of a double"},
        {"POST", "/v1/jobs/keep/reports", "{\"step\":5,\"loss\":-1e309}", 0, 422, "\"loss\""},
        /* cJSON skips a NUL byte as white space. */
        {"POST", "/v1/jobs/keep/reports", "{\"step\":5,\0\"loss\":1}", 20, 400,
         "byte 10: a NUL byte"},
        {"POST", "/v1/jobs/keep/reports", "{\"step\":5,\"loss\":1}\0{\"x\":1}", 27, 400,
         "byte 19: a NUL byte after the JSON value"},
        {"POST", "/v1/jobs/keep/reports", "\xef\xbb\xbf{\"step\":5,\"loss\":1}", 0, 400,
         "byte 0: a byte-order mark"},
        {"PATCH", "/v1/jobs/keep", "{\"tags\":{\"t\":\"a\tb\"}}", 0, 400,
         "byte 15: control character 0x09"},
        /* cJSON cuts a string at \u0000: this tag was stored as "v". */
        {"PATCH", "/v1/jobs/keep", "{\"tags\":{\"t\":\"v\\u0000x\"}}", 0, 422,
         "\"tags.t\" holds an escaped NUL"},
        {"PATCH", "/v1/jobs/keep", "{\"tags\":{\"t\\u0000x\":\"v\"}}", 0, 422,
         "a key in \"tags\" holds an escaped NUL"},
        {"PATCH", "/v1/jobs/keep", "{\"tags\":{\"t\":\"v\",\"t\":\"w\"}}", 0, 400,
         "duplicate key \"t\" in \"tags\""},
        {"POST", "/v1/jobs/keep/rewind", "{\"to_step\":1,\"to_step\":2}", 0, 400,
         "duplicate key \"to_step\""},
        {"PUT", "/v1/jobs/strict", "{\"lr\":0.1,\"config\":{\"patience\":5,\"patience\":6}}", 0,
         400, "duplicate key \"patience\" in \"config\""},
        {"PUT", "/v1/jobs/strict", "{\"lr\":[0.1,1e309]}", 0, 422, "\"lr[1]\" is 1e309"},
        {"PUT", "/v1/jobs/strict", "{\"lr\":0.1,\"config\":{\"min_lr\":-2e308}}", 0, 422,
         "\"config.min_lr\" is -2e308"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_problem(cases[i].method, cases[i].path, cases[i].body,
                       cases[i].len ? cases[i].len : strlen(cases[i].body), cases[i].status,
                       cases[i].says);
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/strict", NULL, 404));
    /* A number that rounds to zero or to a subnormal is a double, and taken. */
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/strict-ok", "{\"lr\":0.1}", 201));
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/strict-ok/reports",
                              "{\"step\":0,\"loss\":1e-400}", 200));
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/strict-ok/reports",
                              "{\"step\":1,\"loss\":4.9e-324}", 200));
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/jobs/strict-ok", NULL, 204));
    httpc_close(&c);
}
END_TEST

/* "." and ".." are dot segments, which clients and proxies resolve: no job is named so. */
START_TEST(dot_segments_are_not_ids)
{
    const char *requests[] = {
        "PUT /v1/jobs/. HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 10\r\n\r\n{\"lr\":0.1}",
        "PUT /v1/jobs/.. HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 10\r\n\r\n{\"lr\":0.1}",
        "PUT /v1/jobs/%2e%2E HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 10\r\n\r\n{\"lr\":0.1}",
        "GET /v1/jobs/.. HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /v1/jobs/../reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 20\r\n\r\n{\"step\":0,\"loss\":1}",
        "GET /v1/jobs/./lr?step=0 HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE /v1/tokens/.. HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        char reply[4096];
        int status = httpc_raw(server.port, NULL, requests[i], strlen(requests[i]), reply,
                               sizeof(reply), 2000 * testutil_slow());
        ck_assert_msg(status == 400, "request %zu answered %d: %s", i, status, reply);
        ck_assert_msg(strstr(reply, "application/problem+json") && strstr(reply, "dot segment"),
                      "request %zu: %s", i, reply);
    }
    /* A name with dots in it is still a name. */
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/...", "{\"lr\":0.1}", 201));
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/jobs/...", NULL, 204));
    httpc_close(&c);
}
END_TEST

/* Sends GET path?query; asserts a problem+json 414 that says says, on a fresh connection. */
static void expect_query_refused(const char *path, const char *query, const char *says)
{
    size_t len = strlen(path) + strlen(query) + 64;
    char *request = malloc(len);
    ck_assert_ptr_nonnull(request);
    snprintf(request, len, "GET %s?%s HTTP/1.1\r\nHost: x\r\n\r\n", path, query);
    char reply[4096];
    int status = httpc_raw(server.port, NULL, request, strlen(request), reply, sizeof(reply),
                           2000 * testutil_slow());
    free(request);
    ck_assert_msg(status == 414, "%s?%.40s... answered %d: %s", path, query, status, reply);
    ck_assert_msg(strstr(reply, "application/problem+json") && strstr(reply, says),
                  "%s?%.40s...: %s", path, query, reply);
}

/*
 * A query of many parameters used up the connection's memory in libmicrohttpd before the
 * request reached the daemon, which then had no room left to answer at all.
 */
START_TEST(long_queries_are_414)
{
    char *query = malloc(16 * 1024);
    ck_assert_ptr_nonnull(query);
    size_t len = 0;
    for (int i = 0; i < 400; i++) /* 2.7 KB */
        len += (size_t)sprintf(query + len, "%sp%d=%d", i ? "&" : "", i, i);
    expect_query_refused("/v1/jobs", query, "the query has 400 parameters; at most 32");
    len = 0;
    for (int i = 0; i < 2000; i++)
        len += (size_t)sprintf(query + len, "%sa", i ? "&" : "");
    expect_query_refused("/v1/jobs/keep/history", query, "2000 parameters");
    /* Close to the connection's memory, a query of few parameters is too long all the same. */
    memset(query, 'x', 15000);
    memcpy(query, "page_token=", 11);
    query[15000] = '\0';
    expect_query_refused("/v1/jobs", query, "the query is 15000 bytes long; at most 4096");

    /* Up to the bounds, a query is read as before. */
    len = (size_t)sprintf(query, "page_size=1");
    for (int i = 1; i < 32; i++)
        len += (size_t)sprintf(query + len, "&x%d=1", i);
    char path[16 * 1024];
    snprintf(path, sizeof(path), "/v1/jobs?%s", query);
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON *page = httpc_expect(&c, "GET", path, NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(page, "jobs")), 1);
    cJSON_Delete(page);
    strcat(path, "&one=more");
    cJSON_Delete(httpc_expect(&c, "GET", path, NULL, 414));
    snprintf(path, sizeof(path), "/v1/jobs/keep/history?from_step=1&page_token=%04073d", 0);
    cJSON_Delete(httpc_expect(&c, "GET", path, NULL, 422)); /* 4096 bytes: read, and refused */
    cJSON_Delete(httpc_expect(&c, "GET", "/healthz", NULL, 200));
    httpc_close(&c);
    free(query);
}
END_TEST

/* Clients that send a byte at a time do not hold up the others. */
START_TEST(slow_clients)
{
    enum { SLOW = 8 };
    int fds[SLOW];
    const char *req = "POST /v1/jobs/keep/reports HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n";
    for (int i = 0; i < SLOW; i++) {
        fds[i] = httpc_connect(server.port, NULL);
        ck_assert_int_ge(fds[i], 0);
    }
    for (size_t k = 0; k < 20; k++) {
        for (int i = 0; i < SLOW; i++)
            send(fds[i], req + k, 1, MSG_NOSIGNAL);
        double start = testutil_seconds();
        struct httpc c;
        httpc_init(&c, server.port);
        cJSON_Delete(httpc_expect(&c, "GET", "/healthz", NULL, 200));
        httpc_close(&c);
        double ms = (testutil_seconds() - start) * 1e3;
        ck_assert_msg(ms < 1000.0 * testutil_slow(), "a normal request took %.0f ms", ms);
        testutil_sleep_ms(20);
    }
    for (int i = 0; i < SLOW; i++)
        close(fds[i]);
}
END_TEST

/* Far more connections than one address may hold: refused, and served again after. */
START_TEST(connection_flood)
{
    enum { FLOOD = 300 };
    int fds[FLOOD];
    int opened = 0;
    for (int i = 0; i < FLOOD; i++)
        if ((fds[i] = httpc_connect(server.port, NULL)) >= 0)
            opened++;
    ck_assert_int_gt(opened, 100);
    for (int i = 0; i < FLOOD; i++)
        if (fds[i] >= 0)
            send(fds[i], "GET /v1/jobs/keep HTTP/1.1\r\nHost: x\r\n", 37, MSG_NOSIGNAL);
    for (int i = 0; i < FLOOD; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    int status = 0;
    for (int i = 0; i < 100 * testutil_slow() && status != 200; i++) {
        char reply[2048];
        const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        status = httpc_raw(server.port, NULL, req, strlen(req), reply, sizeof(reply),
                           2000 * testutil_slow());
        if (status != 200)
            testutil_sleep_ms(50);
    }
    ck_assert_int_eq(status, 200);
}
END_TEST

/* greedylr_waiting_requests from /metrics. */
static long waiting_requests(void)
{
    char *text = httpc_get_text(server.port, "/metrics");
    const char *line = strstr(text, "\ngreedylr_waiting_requests ");
    ck_assert_ptr_nonnull(line);
    long n = strtol(line + strlen("\ngreedylr_waiting_requests "), NULL, 10);
    free(text);
    return n;
}

/* Waits (at most limit_s, times the suite's slowness) until want requests wait. */
static long wait_for_waiting(long want, double limit_s)
{
    long n = waiting_requests();
    for (double start = testutil_seconds();
         n != want && testutil_seconds() - start < limit_s * testutil_slow();
         n = waiting_requests())
        testutil_sleep_ms(20);
    return n;
}

/* Sends request on new connections, one each; the descriptors go to fds. */
static void send_on_each(int *fds, int count, const char *request)
{
    for (int i = 0; i < count; i++) {
        fds[i] = httpc_connect(server.port, NULL);
        ck_assert_int_ge(fds[i], 0);
        ck_assert_int_eq((int)send(fds[i], request, strlen(request), MSG_NOSIGNAL),
                         (int)strlen(request));
    }
}

/* Long polls whose clients hang up give their place back within a second, not at wait_ms. */
START_TEST(long_polls_whose_clients_left_are_freed)
{
    enum { POLLS = 16 };
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/left-polls", "{\"lr\":0.1}", 201));
    httpc_close(&c);
    long before = waiting_requests();
    int fds[POLLS];
    send_on_each(fds, POLLS,
                 "GET /v1/jobs/left-polls/lr?step=0&wait_ms=60000 HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(wait_for_waiting(before + POLLS, 5), before + POLLS);
    for (int i = 0; i < POLLS; i++)
        close(fds[i]);
    ck_assert_int_eq(wait_for_waiting(before, 1), before);
}
END_TEST

/*
 * Ranks waiting for the others of their step, on a job that would wait an hour for them,
 * give their place back within a second of hanging up; their losses still count.
 */
START_TEST(rank_waiters_whose_clients_left_are_freed)
{
    enum { RANKS = 4 };
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/left-ranks",
                              "{\"lr\":0.1,\"world_size\":4,\"aggregate_timeout_ms\":3600000}",
                              201));
    long before = waiting_requests();
    int fds[RANKS - 1];
    for (int rank = 0; rank < RANKS - 1; rank++) {
        char request[256];
        char body[64];
        int len =
            snprintf(body, sizeof(body), "{\"step\":0,\"loss\":%d,\"rank\":%d}", 2 + rank, rank);
        snprintf(request, sizeof(request),
                 "POST /v1/jobs/left-ranks/reports HTTP/1.1\r\nHost: x\r\n"
                 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                 len, body);
        send_on_each(&fds[rank], 1, request);
    }
    ck_assert_int_eq(wait_for_waiting(before + RANKS - 1, 5), before + RANKS - 1);
    for (int rank = 0; rank < RANKS - 1; rank++)
        close(fds[rank]);
    ck_assert_int_eq(wait_for_waiting(before, 1), before);
    /* The last rank decides the step on all four losses: (2 + 3 + 4 + 5) / 4. */
    cJSON *decided = httpc_expect(&c, "POST", "/v1/jobs/left-ranks/reports",
                                  "{\"step\":0,\"loss\":5,\"rank\":3}", 200);
    ck_assert_int_eq((int)testutil_number(cJSON_GetObjectItem(decided, "ranks")), RANKS);
    cJSON_Delete(decided);
    cJSON *retry = httpc_expect(&c, "POST", "/v1/jobs/left-ranks/reports",
                                "{\"step\":0,\"loss\":2,\"rank\":0}", 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(retry, "replayed")));
    cJSON_Delete(retry);
    httpc_close(&c);
}
END_TEST

/* Runs last: nothing above changed the job or its history. */
START_TEST(stored_data_unchanged)
{
    char *job = httpc_get_text(server.port, "/v1/jobs/keep");
    char *history = httpc_get_text(server.port, "/v1/jobs/keep/history");
    ck_assert_str_eq(job, job_before);
    ck_assert_str_eq(history, history_before);
    free(job);
    free(history);
    struct httpc c;
    httpc_init(&c, server.port);
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/keep/reports", "{\"step\":5,\"loss\":4}", 200));
    httpc_close(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hostile");
    tcase_set_timeout(tc, 120);
    apitest_fixtures(tc, prepare);
    tcase_add_test(tc, truncated_bodies);
    tcase_add_test(tc, oversized_bodies);
    tcase_add_test(tc, invalid_utf8);
    tcase_add_test(tc, numbers_out_of_range);
    tcase_add_test(tc, deeply_nested_json);
    tcase_add_test(tc, garbage_requests);
    tcase_add_test(tc, encoded_nul_in_a_path);
    tcase_add_test(tc, ambiguous_request_heads);
    tcase_add_test(tc, lenient_json_is_refused);
    tcase_add_test(tc, dot_segments_are_not_ids);
    tcase_add_test(tc, long_queries_are_414);
    tcase_add_test(tc, slow_clients);
    tcase_add_test(tc, connection_flood);
    tcase_add_test(tc, long_polls_whose_clients_left_are_freed);
    tcase_add_test(tc, rank_waiters_whose_clients_left_are_freed);
    tcase_add_test(tc, stored_data_unchanged);
    suite_add_tcase(s, tc);
    return testutil_run(s);
}
