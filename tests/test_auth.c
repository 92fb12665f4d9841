/*
 * Who gets in: bearer tokens and their roles over a real socket (401 without a valid
 * token, 403 for a role below what the route needs), tokens made and revoked over HTTP
 * and from the command line, and a daemon that will not serve a public address without
 * tokens.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apitest.h"
#include "testutil.h"

/* Room for a token (glr_ and 64 hex digits) and its line end. */
#define TOKEN_TEXT 96

/* Made in prepare(), in the parent, so every forked case has them. */
static char admin[TOKEN_TEXT], writer[TOKEN_TEXT], reader[TOKEN_TEXT];

static const char *str(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    ck_assert_msg(cJSON_IsString(item), "no string %s", key);
    return item->valuestring;
}

/* POST /v1/tokens as whoever c is; copies the new token into out. */
static void make_token(struct httpc *c, const char *role, const char *name, char *out)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"role\":\"%s\",\"name\":\"%s\"}", role, name);
    cJSON *made = httpc_expect(c, "POST", "/v1/tokens", body, 201);
    ck_assert_str_eq(str(made, "name"), name);
    ck_assert_str_eq(str(made, "role"), role);
    ck_assert_int_eq((int)strlen(str(made, "token")), 68);
    ck_assert(strncmp(str(made, "token"), "glr_", 4) == 0);
    snprintf(out, TOKEN_TEXT, "%s", str(made, "token"));
    cJSON_Delete(made);
}

/*
 * A daemon on loopback without tokens lets anyone in, so the first admin token is made
 * over HTTP; from then on tokens are needed.
 */
static void prepare(void)
{
    struct httpc c;
    httpc_init(&c, server.port);
    make_token(&c, "admin", "boss", admin);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs", NULL, 401));
    c.bearer = admin;
    make_token(&c, "writer", "trainer", writer);
    make_token(&c, "reader", "dashboard", reader);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/seen", "{\"lr\":0.1}", 201));
    httpc_close(&c);
}

/* Sends a request as token (NULL: none) and checks the status and the problem's type. */
static void expect(const char *token, const char *method, const char *path, const char *body,
                   int status, const char *problem)
{
    struct httpc c;
    httpc_init(&c, server.port);
    c.bearer = token;
    struct httpc_response r;
    httpc_json(&c, method, path, body, &r);
    ck_assert_msg(r.status == status, "%s %s: %d, expected %d: %s", method, path, r.status, status,
                  r.body);
    if (problem) {
        cJSON *p = httpc_body_json(&r);
        char type[96];
        snprintf(type, sizeof(type), "urn:greedylr:problem:%s", problem);
        ck_assert_str_eq(str(p, "type"), type);
        cJSON_Delete(p);
    }
    if (status == 401) {
        char value[64];
        ck_assert_ptr_nonnull(httpc_header(&r, "WWW-Authenticate", value, sizeof(value)));
        ck_assert(strncmp(value, "Bearer", 6) == 0);
    }
    httpc_response_free(&r);
    httpc_close(&c);
}

START_TEST(health_needs_no_token)
{
    expect(NULL, "GET", "/healthz", NULL, 200, NULL);
}
END_TEST

START_TEST(no_token_is_401)
{
    expect(NULL, "GET", "/v1/jobs", NULL, 401, "unauthorized");
    expect(NULL, "GET", "/v1/jobs/seen", NULL, 401, "unauthorized");
    expect(NULL, "POST", "/v1/jobs/seen/reports", "{\"step\":0,\"loss\":1}", 401, "unauthorized");
    expect(NULL, "GET", "/v1/tokens", NULL, 401, "unauthorized");
}
END_TEST

/*
 * A body sent where no token is needed, or without a token, is answered before a byte of
 * it is read: the client declares a body just under the limit (1 MiB), sends none, and
 * has its answer at once.
 */
START_TEST(bodies_nobody_reads_are_refused_unread)
{
    const struct {
        const char *head;
        int status;
    } cases[] = {
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 413},
        {"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 413},
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 413},
        {"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 404},
        /* A method no route serves needs an admin: 401 without a token. */
        {"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 401},
        {"POST /v1/jobs/seen/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: 1000000\r\n\r\n",
         401},
        /* No body at all, declared as such, is still served. */
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 200},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char reply[4096];
        double start = testutil_seconds();
        int status = httpc_raw(server.port, NULL, cases[i].head, strlen(cases[i].head), reply,
                               sizeof(reply), 3000 * testutil_slow());
        double waited = testutil_seconds() - start;
        ck_assert_msg(status == cases[i].status, "case %zu answered %d, expected %d: %s", i, status,
                      cases[i].status, reply);
        ck_assert_msg(waited < 1.0 * testutil_slow(), "case %zu answered after %.1f s", i, waited);
    }
}
END_TEST

START_TEST(wrong_tokens_are_401)
{
    char forged[TOKEN_TEXT];
    snprintf(forged, sizeof(forged), "%s", admin);
    forged[10] = forged[10] == 'a' ? 'b' : 'a'; /* one digit off */
    expect(forged, "GET", "/v1/jobs", NULL, 401, "unauthorized");
    expect("glr_short", "GET", "/v1/jobs", NULL, 401, "unauthorized");
    expect("", "GET", "/v1/jobs", NULL, 401, "unauthorized");

    /* Another scheme, or the token without one. */
    const char *before[] = {"Basic ", "", "Bearer ", "Bearer"};
    const char *after[] = {"", "", " extra", ""};
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        char value[160], request[512];
        snprintf(value, sizeof(value), "%s%s%s", before[i], i == 3 ? "" : admin, after[i]);
        int len = snprintf(request, sizeof(request),
                           "GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                           "Connection: close\r\n\r\n",
                           value);
        char reply[4096];
        int status = httpc_raw(server.port, NULL, request, (size_t)len, reply, sizeof(reply),
                               5000 * testutil_slow());
        ck_assert_msg(status == 401, "Authorization: %s answered %d", value, status);
        ck_assert_ptr_nonnull(strstr(reply, "Bearer TOKEN"));
    }
}
END_TEST

START_TEST(reader_only_reads)
{
    expect(reader, "GET", "/v1/jobs", NULL, 200, NULL);
    expect(reader, "GET", "/v1/jobs/seen", NULL, 200, NULL);
    expect(reader, "GET", "/v1/jobs/seen/history", NULL, 200, NULL);
    expect(reader, "PUT", "/v1/jobs/r-1", "{\"lr\":0.1}", 403, "forbidden");
    expect(reader, "POST", "/v1/jobs", "{\"lr\":0.1}", 403, "forbidden");
    expect(reader, "POST", "/v1/jobs/seen/reports", "{\"step\":0,\"loss\":1}", 403, "forbidden");
    expect(reader, "PATCH", "/v1/jobs/seen", "{\"status\":\"finished\"}", 403, "forbidden");
    expect(reader, "POST", "/v1/jobs/seen/rewind", "{\"to_step\":-1}", 403, "forbidden");
    expect(reader, "DELETE", "/v1/jobs/seen", NULL, 403, "forbidden");
    expect(reader, "GET", "/v1/tokens", NULL, 403, "forbidden");
    /* Nothing it tried changed the job. */
    struct httpc c;
    httpc_init(&c, server.port);
    c.bearer = reader;
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/seen", NULL, 200);
    ck_assert_str_eq(str(job, "status"), "running");
    cJSON_Delete(job);
    httpc_close(&c);
}
END_TEST

START_TEST(writer_trains_but_does_not_delete)
{
    expect(writer, "PUT", "/v1/jobs/w-1", "{\"lr\":0.1}", 201, NULL);
    expect(writer, "POST", "/v1/jobs/w-1/reports", "{\"step\":0,\"loss\":1}", 200, NULL);
    expect(writer, "POST", "/v1/jobs/w-1/rewind", "{\"to_step\":-1}", 200, NULL);
    expect(writer, "PATCH", "/v1/jobs/w-1", "{\"tags\":{\"a\":\"b\"}}", 200, NULL);
    expect(writer, "GET", "/v1/jobs/w-1/lr?step=0", NULL, 204, NULL); /* rewound */
    expect(writer, "DELETE", "/v1/jobs/w-1", NULL, 403, "forbidden");
    expect(writer, "POST", "/v1/tokens", "{\"role\":\"admin\"}", 403, "forbidden");
    expect(writer, "DELETE", "/v1/tokens/boss", NULL, 403, "forbidden");
}
END_TEST

START_TEST(admin_does_everything)
{
    expect(admin, "PUT", "/v1/jobs/a-1", "{\"lr\":0.1}", 201, NULL);
    expect(admin, "DELETE", "/v1/jobs/a-1", NULL, 204, NULL);
    struct httpc c;
    httpc_init(&c, server.port);
    c.bearer = admin;
    cJSON *list = httpc_expect(&c, "GET", "/v1/tokens", NULL, 200);
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(list, "tokens");
    ck_assert(cJSON_GetArraySize(tokens) >= 3);
    const cJSON *t;
    cJSON_ArrayForEach(t, tokens)
    {
        ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(t, "token")); /* never shown again */
        ck_assert(strlen(str(t, "created_at")) == 24);
    }
    cJSON_Delete(list);
    /* Bad requests about tokens name what is wrong. */
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/tokens", "{\"role\":\"root\"}", 422));
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/tokens", "{\"role\":\"reader\",\"name\":\"a b\"}", 422));
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/tokens", "{\"role\":\"reader\",\"name\":\"boss\"}", 409));
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/tokens/nobody", NULL, 404));
    /* Dot segments are no names: a client may resolve /v1/tokens/.. before it sends it. */
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/tokens", "{\"role\":\"reader\",\"name\":\"..\"}", 422));
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/tokens", "{\"role\":\"reader\",\"name\":\".\"}", 422));
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/tokens/..", NULL, 400));
    httpc_close(&c);
}
END_TEST

START_TEST(revoked_over_http_at_once)
{
    struct httpc c;
    httpc_init(&c, server.port);
    c.bearer = admin;
    char temp[TOKEN_TEXT];
    make_token(&c, "reader", "short-lived", temp);
    expect(temp, "GET", "/v1/jobs", NULL, 200, NULL);
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/tokens/short-lived", NULL, 204));
    expect(temp, "GET", "/v1/jobs", NULL, 401, "unauthorized");
    httpc_close(&c);
}
END_TEST

/* Polls GET /v1/jobs as token until it answers status (bounded); returns the last status. */
static int wait_for_status(const char *token, int status)
{
    int got = 0;
    for (int i = 0; i < 100 * testutil_slow(); i++) {
        struct httpc c;
        httpc_init(&c, server.port);
        c.bearer = token;
        struct httpc_response r;
        httpc_json(&c, "GET", "/v1/jobs", NULL, &r);
        got = r.status;
        httpc_response_free(&r);
        httpc_close(&c);
        if (got == status)
            break;
        testutil_sleep_ms(20);
    }
    return got;
}

START_TEST(command_line_tokens_and_sighup)
{
    const char *create[] = {"token",  "create", "--db",     server.db, "--role",
                            "writer", "--name", "from-cli", NULL};
    char out[256];
    ck_assert_int_eq(daemon_run_stdout(create, out, sizeof(out)), 0);
    out[strcspn(out, "\n")] = '\0';
    ck_assert_int_eq((int)strlen(out), 68);
    /* SIGHUP makes the running daemon read the tokens again. */
    kill(server.pid, SIGHUP);
    ck_assert_int_eq(wait_for_status(out, 200), 200);

    const char *list[] = {"token", "list", "--db", server.db, NULL};
    char listed[4096];
    ck_assert_int_eq(daemon_run_stdout(list, listed, sizeof(listed)), 0);
    ck_assert_ptr_nonnull(strstr(listed, "from-cli"));
    ck_assert_ptr_nonnull(strstr(listed, "writer"));
    ck_assert_ptr_null(strstr(listed, out)); /* the token is never shown again */

    const char *revoke[] = {"token", "revoke", "from-cli", "--db", server.db, NULL};
    char err[512];
    ck_assert_int_eq(daemon_run(revoke, err, sizeof(err)), 0);
    kill(server.pid, SIGHUP);
    ck_assert_int_eq(wait_for_status(out, 401), 401);
    ck_assert_int_eq(daemon_run(revoke, err, sizeof(err)), 1);
    ck_assert_ptr_nonnull(strstr(err, "from-cli"));
}
END_TEST

START_TEST(only_hashes_are_stored)
{
    const char *create[] = {"token", "create", "--db", server.db, "--role", "reader", NULL};
    char out[256];
    ck_assert_int_eq(daemon_run_stdout(create, out, sizeof(out)), 0);
    out[strcspn(out, "\n")] = '\0';
    ck_assert_int_eq((int)strlen(out), 68);
    /* Neither the token nor its hex digits are anywhere in the database or its log. */
    const char *suffixes[] = {"", "-wal"};
    for (int i = 0; i < 2; i++) {
        char path[400];
        snprintf(path, sizeof(path), "%s%s", server.db, suffixes[i]);
        if (access(path, F_OK) != 0)
            continue;
        size_t len = 0;
        char *bytes = testutil_read_file(path, &len);
        for (size_t k = 0; k + 64 <= len; k++)
            ck_assert_msg(memcmp(bytes + k, out + 4, 64) != 0, "the token is in %s", path);
        free(bytes);
    }
}
END_TEST

START_TEST(command_line_misuse)
{
    char err[1024];
    const char *no_role[] = {"token", "create", "--db", server.db, NULL};
    ck_assert_int_eq(daemon_run(no_role, err, sizeof(err)), 2);
    ck_assert_ptr_nonnull(strstr(err, "--role"));
    const char *bad_name[] = {"token",  "create", "--db",     server.db, "--role",
                              "reader", "--name", "no/slash", NULL};
    ck_assert_int_eq(daemon_run(bad_name, err, sizeof(err)), 1);
    ck_assert_ptr_nonnull(strstr(err, "name"));
    const char *no_name[] = {"token", "revoke", "--db", server.db, NULL};
    ck_assert_int_eq(daemon_run(no_name, err, sizeof(err)), 2);
    const char *unknown[] = {"token", "rotate", NULL};
    ck_assert_int_eq(daemon_run(unknown, err, sizeof(err)), 2);
}
END_TEST

/* Without tokens, only loopback: another address is refused before anything is bound. */
START_TEST(public_address_needs_tokens)
{
    char dir[] = "/tmp/greedylr-auth-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char db[64];
    snprintf(db, sizeof(db), "%s/t.db", dir);
    const char *args[] = {"--listen", "0.0.0.0:0", "--db", db, NULL};
    char err[2048];
    ck_assert_int_eq(daemon_run(args, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "without API tokens") && strstr(err, "token create") &&
                      strstr(err, "--insecure"),
                  "the refusal does not say why: %s", err);
    const char *v6[] = {"--listen", "[::]:0", "--db", db, NULL};
    ck_assert_int_eq(daemon_run(v6, err, sizeof(err)), 1);
    char side[96];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(side, sizeof(side), "%s%s", db, suffixes[i]);
        unlink(side);
    }
    rmdir(dir);
}
END_TEST

/* The first token is an admin's, and the last admin goes last: else no one manages tokens. */
START_TEST(tokens_keep_an_admin)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    struct httpc_response r;
    httpc_json(&c, "POST", "/v1/tokens", "{\"role\":\"reader\",\"name\":\"viewer\"}", &r);
    ck_assert_int_eq(r.status, 409);
    ck_assert_msg(strstr(r.body, "the first token must have role admin"), "%s", r.body);
    httpc_response_free(&r);
    /* Nothing was made: everyone still gets in. */
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs", NULL, 200));
    const char *cli[] = {"token", "create", "--db", d.db, "--role", "writer", NULL};
    char text[512];
    ck_assert_int_ne(daemon_run(cli, text, sizeof(text)), 0);
    ck_assert_msg(strstr(text, "role admin"), "%s", text);

    char root[TOKEN_TEXT], viewer[TOKEN_TEXT];
    make_token(&c, "admin", "root", root);
    c.bearer = root;
    make_token(&c, "reader", "viewer", viewer);
    httpc_json(&c, "DELETE", "/v1/tokens/root", NULL, &r);
    ck_assert_int_eq(r.status, 409);
    ck_assert_msg(strstr(r.body, "root is the last admin token"), "%s", r.body);
    httpc_response_free(&r);
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/tokens/viewer", NULL, 204));
    /* The last token of all may go: the daemon is open again, as before the first. */
    cJSON_Delete(httpc_expect(&c, "DELETE", "/v1/tokens/root", NULL, 204));
    c.bearer = NULL;
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs", NULL, 200));
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_set_timeout(tc, 60);
    apitest_fixtures(tc, prepare);
    tcase_add_test(tc, health_needs_no_token);
    tcase_add_test(tc, no_token_is_401);
    tcase_add_test(tc, bodies_nobody_reads_are_refused_unread);
    tcase_add_test(tc, wrong_tokens_are_401);
    tcase_add_test(tc, reader_only_reads);
    tcase_add_test(tc, writer_trains_but_does_not_delete);
    tcase_add_test(tc, admin_does_everything);
    tcase_add_test(tc, revoked_over_http_at_once);
    tcase_add_test(tc, command_line_tokens_and_sighup);
    tcase_add_test(tc, only_hashes_are_stored);
    tcase_add_test(tc, command_line_misuse);
    tcase_add_test(tc, public_address_needs_tokens);
    tcase_add_test(tc, tokens_keep_an_admin);
    suite_add_tcase(s, tc);
    return testutil_run(s);
}
