/*
 * The limits of what one client may take: request bodies (413, chunked ones cut short),
 * headers (431) and URLs (414), requests per second per token or address (429 with
 * Retry-After, and no accepted report lost), connections in all and per address, and
 * idle connections. Each group runs against a daemon started with its limits.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "httpc.h"
#include "testutil.h"

/* The body limit the daemon enforces (API_BODY_MAX). */
#define BODY_MAX (1024 * 1024)

static struct daemon server;

static void stop_server(void)
{
    daemon_stop(&server);
    daemon_cleanup(&server);
}

static void start_default(void)
{
    daemon_start(&server, NULL, NULL);
}

static const char *const rate_args[] = {"--rate-limit", "2/s", NULL};
static void start_rate(void)
{
    daemon_start(&server, NULL, rate_args);
}

/* The idle timeout grows with the suite's slowness, so that only idleness trips it. */
static char idle_text[16];
static const char *conn_args[] = {
    "--threads", "1", "--max-connections", "4", "--max-connections-per-ip", "0", "--idle-timeout",
    idle_text,   NULL};
static void start_conns(void)
{
    snprintf(idle_text, sizeof(idle_text), "%d", 2 * testutil_slow());
    daemon_start(&server, NULL, conn_args);
}

/* A deadline of a second (times the suite's slowness) for every request to arrive. */
static char request_text[16];
static const char *deadline_args[] = {"--max-connections-per-ip", "0", "--request-timeout",
                                      request_text, NULL};
static void start_deadline(void)
{
    snprintf(request_text, sizeof(request_text), "%d", testutil_slow());
    daemon_start(&server, NULL, deadline_args);
}

static const char *const per_ip_args[] = {"--max-connections-per-ip", "3", NULL};
static void start_per_ip(void)
{
    daemon_start(&server, NULL, per_ip_args);
}

/*
 * A daemon whose open-file limit is far below what --max-connections needs, as under a
 * container's or an init system's low default.
 */
#define TIGHT_OPEN_FILES 128
static const char *const tight_args[] = {"--max-connections-per-ip", "0", NULL};
static void start_tight(void)
{
    daemon_start_limited(&server, NULL, tight_args, TIGHT_OPEN_FILES);
}

static int status_of(const char *method, const char *path, const char *body)
{
    struct httpc c;
    httpc_init(&c, server.port);
    struct httpc_response r;
    int rc = httpc_request(&c, method, path, body ? "application/json" : NULL, body,
                           body ? strlen(body) : 0, &r);
    int status = rc == 0 ? r.status : -1;
    httpc_response_free(&r);
    httpc_close(&c);
    return status;
}

/*
 * Sends a chunked POST of total bytes of JSON-ish filler in 64 KiB chunks; returns the
 * bytes sent before the server stopped taking them (total when it took them all).
 */
static size_t send_chunked(int fd, size_t total)
{
    const char *head = "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    if (send(fd, head, strlen(head), MSG_NOSIGNAL) < 0)
        return 0;
    static char chunk[64 * 1024 + 16];
    int prefix = snprintf(chunk, sizeof(chunk), "%x\r\n", 64 * 1024);
    memset(chunk + prefix, 'x', 64 * 1024);
    memcpy(chunk + prefix + 64 * 1024, "\r\n", 2);
    size_t chunk_len = (size_t)prefix + 64 * 1024 + 2;
    size_t sent = 0;
    while (sent < total) {
        size_t off = 0;
        while (off < chunk_len) {
            ssize_t n = send(fd, chunk + off, chunk_len - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return sent;
            off += (size_t)n;
        }
        sent += 64 * 1024;
    }
    send(fd, "0\r\n\r\n", 5, MSG_NOSIGNAL);
    return sent;
}

/* Reads until the server closes or goes quiet; returns the HTTP status, 0 for none. */
static int read_status(int fd, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char reply[4096];
    size_t got = 0;
    ssize_t n;
    while (got + 1 < sizeof(reply) && (n = recv(fd, reply + got, sizeof(reply) - 1 - got, 0)) > 0)
        got += (size_t)n;
    reply[got] = '\0';
    int status = 0;
    if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    ck_assert_msg(status != 413 || strstr(reply, "application/problem+json"), "%s", reply);
    return status;
}

START_TEST(chunked_body_over_the_limit_is_413)
{
    int fd = httpc_connect(server.port, NULL);
    ck_assert_int_ge(fd, 0);
    size_t sent = send_chunked(fd, BODY_MAX + 512 * 1024);
    ck_assert_int_eq(read_status(fd, 10000 * testutil_slow()), 413);
    close(fd);
    ck_assert_msg(sent == BODY_MAX + 512 * 1024, "sent %zu", sent);
}
END_TEST

/* A chunked body far past the limit is not read to its end: the server hangs up. */
START_TEST(chunked_body_far_over_the_limit_is_cut_off)
{
    int fd = httpc_connect(server.port, NULL);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {10 * testutil_slow(), 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    size_t total = (size_t)256 * 1024 * 1024;
    size_t sent = send_chunked(fd, total);
    int status = read_status(fd, 2000);
    close(fd);
    /* What the kernel buffers on both sides is all that goes beyond the server's 2 MiB. */
    ck_assert_msg(sent < (size_t)32 * 1024 * 1024, "the server read %zu bytes", sent);
    ck_assert_int_ne(status, 200);
    ck_assert_int_eq(status_of("GET", "/healthz", NULL), 200);
}
END_TEST

START_TEST(declared_body_over_the_limit_is_413_at_once)
{
    const char *head = "PUT /v1/jobs/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 104857600\r\n\r\n";
    char reply[4096];
    ck_assert_int_eq(httpc_raw(server.port, NULL, head, strlen(head), reply, sizeof(reply),
                               5000 * testutil_slow()),
                     413);
}
END_TEST

START_TEST(headers_over_the_limit_are_431)
{
    size_t big = 40 * 1024;
    char *request = malloc(big + 256);
    ck_assert_ptr_nonnull(request);
    int len = sprintf(request, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(request + len, 'b', big);
    len += (int)big;
    len += sprintf(request + len, "\r\n\r\n");
    char reply[4096];
    ck_assert_int_eq(httpc_raw(server.port, NULL, request, (size_t)len, reply, sizeof(reply),
                               5000 * testutil_slow()),
                     431);
    /* A URL that does not fit: 414. */
    len = sprintf(request, "GET /v1/jobs/");
    memset(request + len, 'u', big);
    len += (int)big;
    len += sprintf(request + len, " HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(httpc_raw(server.port, NULL, request, (size_t)len, reply, sizeof(reply),
                               5000 * testutil_slow()),
                     414);
    free(request);
    ck_assert_int_eq(status_of("GET", "/healthz", NULL), 200);
}
END_TEST

START_TEST(over_the_rate_is_429_with_retry_after)
{
    struct httpc c;
    httpc_init(&c, server.port);
    int limited = 0;
    for (int i = 0; i < 40; i++) {
        struct httpc_response r;
        httpc_json(&c, "GET", "/v1/jobs", NULL, &r);
        ck_assert(r.status == 200 || r.status == 429);
        if (r.status == 429 && limited++ == 0) {
            char value[32];
            ck_assert_ptr_nonnull(httpc_header(&r, "Retry-After", value, sizeof(value)));
            ck_assert_int_ge(atoi(value), 1);
            cJSON *problem = httpc_body_json(&r);
            ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(problem, "type")->valuestring,
                             "urn:greedylr:problem:rate-limited");
            ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(problem, "status")->valueint, 429);
            cJSON_Delete(problem);
        }
        httpc_response_free(&r);
    }
    ck_assert_int_gt(limited, 0);
    /* /healthz is never limited. */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(status_of("GET", "/healthz", NULL), 200);
    httpc_close(&c);
}
END_TEST

/* A report answered 429 was not taken; sent again it is; every 200 is in the history. */
START_TEST(rate_limit_loses_no_report)
{
    struct httpc c;
    httpc_init(&c, server.port);
    int status;
    while ((status = status_of("PUT", "/v1/jobs/paced", "{\"lr\":0.1}")) == 429)
        testutil_sleep_ms(500);
    ck_assert_int_eq(status, 201);
    int limited = 0;
    for (int step = 0; step < 8; step++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", step, 10 - step);
        for (;;) {
            struct httpc_response r;
            httpc_json(&c, "POST", "/v1/jobs/paced/reports", body, &r);
            int got = r.status;
            char value[32] = "1";
            httpc_header(&r, "Retry-After", value, sizeof(value));
            httpc_response_free(&r);
            if (got == 200)
                break;
            ck_assert_int_eq(got, 429);
            limited++;
            struct timespec pause = {atoi(value), 0};
            nanosleep(&pause, NULL);
        }
    }
    ck_assert_int_gt(limited, 0);
    cJSON *history = NULL;
    for (;;) {
        struct httpc_response r;
        httpc_json(&c, "GET", "/v1/jobs/paced/history", NULL, &r);
        if (r.status == 200)
            history = httpc_body_json(&r);
        httpc_response_free(&r);
        if (history)
            break;
        testutil_sleep_ms(500);
    }
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(history, "points");
    ck_assert_int_eq(cJSON_GetArraySize(points), 8);
    cJSON_Delete(history);
    httpc_close(&c);
}
END_TEST

/* Retries GET /healthz for a while: the server notices closed connections in its own time. */
static int healthz_soon(const char *source)
{
    int status = -1;
    for (int i = 0; i < 50 * testutil_slow() && status != 200; i++) {
        char reply[2048];
        const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        status = httpc_raw(server.port, source, req, strlen(req), reply, sizeof(reply),
                           2000 * testutil_slow());
        if (status != 200)
            testutil_sleep_ms(100);
    }
    return status;
}

/*
 * Seconds until the server closes fd (recv gives 0 or ECONNRESET), waiting at most
 * limit_s; -1 when it did not.
 */
static double seconds_to_close(int fd, double limit_s)
{
    double start = testutil_seconds();
    struct timeval tv = {0, 50 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (testutil_seconds() - start < limit_s) {
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return testutil_seconds() - start;
    }
    return -1;
}

/* Past the limit a connection is closed at once, not left in the listen queue. */
START_TEST(connections_over_the_limit_are_closed)
{
    int held[4];
    for (int i = 0; i < 4; i++) {
        held[i] = httpc_connect(server.port, NULL);
        ck_assert_int_ge(held[i], 0);
    }
    testutil_sleep_ms(200);
    int fifth = httpc_connect(server.port, "127.0.0.2");
    ck_assert_int_ge(fifth, 0);
    double closed = seconds_to_close(fifth, 2.0 * testutil_slow());
    close(fifth);
    ck_assert_msg(closed >= 0 && closed < 0.5 * testutil_slow(),
                  "a fifth connection was closed after %.2f s (-1: not at all)", closed);
    /* One of the four goes: its place is taken again while the others stay. */
    close(held[0]);
    ck_assert_int_eq(healthz_soon("127.0.0.2"), 200);
    for (int i = 1; i < 4; i++)
        close(held[i]);
    ck_assert_int_eq(healthz_soon(NULL), 200);
}
END_TEST

/*
 * Slow clients that send a byte now and then, often enough for the idle timeout, are
 * closed once their request has taken longer than --request-timeout, while others are
 * served meanwhile.
 */
START_TEST(requests_slower_than_the_deadline_are_closed)
{
    enum { SLOW = 6 };
    const char *head =
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"lr\":0.1}";
    int fds[SLOW];
    bool closed[SLOW] = {false};
    for (int i = 0; i < SLOW; i++) {
        fds[i] = httpc_connect(server.port, NULL);
        ck_assert_int_ge(fds[i], 0);
    }
    double timeout_s = 1.0 * testutil_slow();
    double start = testutil_seconds();
    int open = SLOW;
    for (size_t k = 0; open > 0 && testutil_seconds() - start < timeout_s + 3.0 * testutil_slow();
         k++) {
        for (int i = 0; i < SLOW; i++) {
            if (closed[i])
                continue;
            char buf[64];
            ssize_t n = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
            bool gone = n == 0 || (n < 0 && errno == ECONNRESET) ||
                        (k < strlen(head) - 1 && send(fds[i], head + k, 1, MSG_NOSIGNAL) < 0);
            if (!gone)
                continue;
            double at = testutil_seconds() - start;
            ck_assert_msg(at > timeout_s - 0.3, "slow client %d closed after %.2f s", i, at);
            closed[i] = true;
            open--;
        }
        ck_assert_int_eq(status_of("GET", "/healthz", NULL), 200);
        testutil_sleep_ms(100);
    }
    for (int i = 0; i < SLOW; i++)
        close(fds[i]);
    ck_assert_msg(open == 0, "%d slow clients were still connected after %.1f s", open,
                  testutil_seconds() - start);
}
END_TEST

/* A client that starts a request and goes quiet is hung up on after the idle timeout. */
START_TEST(idle_connections_are_closed)
{
    int fd = httpc_connect(server.port, NULL);
    ck_assert_int_ge(fd, 0);
    const char *part = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    ck_assert_int_eq((int)send(fd, part, strlen(part), MSG_NOSIGNAL), (int)strlen(part));
    double start = testutil_seconds();
    int idle_s = 2 * testutil_slow();
    struct timeval tv = {idle_s + 5 * testutil_slow(), 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    double waited = testutil_seconds() - start;
    close(fd);
    ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "recv gave %zd (errno %d)", n, errno);
    ck_assert_msg(waited >= idle_s - 1, "closed after %.1f s, before the idle timeout", waited);
    ck_assert_int_eq(healthz_soon(NULL), 200);
}
END_TEST

START_TEST(connections_per_address_are_limited)
{
    int held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = httpc_connect(server.port, NULL);
        ck_assert_int_ge(held[i], 0);
    }
    testutil_sleep_ms(200);
    char reply[2048];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int status = httpc_raw(server.port, NULL, req, strlen(req), reply, sizeof(reply),
                           1000 * testutil_slow());
    ck_assert_msg(status <= 0, "a fourth connection from 127.0.0.1 was answered %d", status);
    /* Another address is not held back by the first one's connections. */
    ck_assert_int_eq(httpc_raw(server.port, "127.0.0.2", req, strlen(req), reply, sizeof(reply),
                               5000 * testutil_slow()),
                     200);
    for (int i = 0; i < 3; i++)
        close(held[i]);
    ck_assert_int_eq(healthz_soon(NULL), 200);
}
END_TEST

/* The daemon says it serves fewer connections than asked, and why. */
START_TEST(a_low_open_file_limit_lowers_the_connection_limit)
{
    FILE *f = fopen(server.log, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    bool said = false;
    while (!said && fgets(line, sizeof(line), f))
        said = strstr(line, "open-file limit (") && strstr(line, "serving at most");
    fclose(f);
    ck_assert_msg(said, "no warning about the open-file limit in %s", server.log);
}
END_TEST

/*
 * Floods of connections far past the open-file limit, again and again: each is turned away
 * at the connection limit, and the daemon answers once they are gone.
 */
START_TEST(floods_past_the_limits_leave_the_daemon_answering)
{
    enum { FLOOD = 300, ROUNDS = 5 };
    const char *part = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    for (int round = 0; round < ROUNDS; round++) {
        int fds[FLOOD];
        for (int i = 0; i < FLOOD; i++)
            fds[i] = httpc_connect(server.port, NULL);
        for (int i = 0; i < FLOOD; i++)
            if (fds[i] >= 0)
                send(fds[i], part, strlen(part), MSG_NOSIGNAL);
        for (int i = 0; i < FLOOD; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        ck_assert_msg(healthz_soon(NULL) == 200, "no answer after flood %d", round + 1);
    }
}
END_TEST

static TCase *group(const char *name, void (*start)(void))
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, start, stop_server);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("limits");
    TCase *body = group("body", start_default);
    tcase_add_test(body, chunked_body_over_the_limit_is_413);
    tcase_add_test(body, chunked_body_far_over_the_limit_is_cut_off);
    tcase_add_test(body, declared_body_over_the_limit_is_413_at_once);
    tcase_add_test(body, headers_over_the_limit_are_431);
    suite_add_tcase(s, body);
    TCase *rate = group("rate", start_rate);
    tcase_add_test(rate, over_the_rate_is_429_with_retry_after);
    tcase_add_test(rate, rate_limit_loses_no_report);
    suite_add_tcase(s, rate);
    TCase *conns = group("connections", start_conns);
    tcase_add_test(conns, connections_over_the_limit_are_closed);
    tcase_add_test(conns, idle_connections_are_closed);
    suite_add_tcase(s, conns);
    TCase *deadline = group("deadline", start_deadline);
    tcase_add_test(deadline, requests_slower_than_the_deadline_are_closed);
    suite_add_tcase(s, deadline);
    TCase *per_ip = group("per_ip", start_per_ip);
    tcase_add_test(per_ip, connections_per_address_are_limited);
    suite_add_tcase(s, per_ip);
    TCase *tight = group("open_files", start_tight);
    tcase_add_test(tight, a_low_open_file_limit_lowers_the_connection_limit);
    tcase_add_test(tight, floods_past_the_limits_leave_the_daemon_answering);
    suite_add_tcase(s, tight);
    return testutil_run(s);
}
