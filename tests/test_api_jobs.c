/*
 * Jobs over HTTP: create (PUT and POST), read, list with pagination and filters, patch,
 * delete, and every error status a client can provoke.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apitest.h"
#include "http/req.h"
#include "testutil.h"

static const char *str(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    ck_assert_msg(cJSON_IsString(item), "no string %s", key);
    return item->valuestring;
}

static double num(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    ck_assert_msg(cJSON_IsNumber(item), "no number %s", key);
    return item->valuedouble;
}

/* Sends a request and checks the status and, for errors, the problem body. */
static void expect_problem(const char *method, const char *path, const char *content_type,
                           const char *body, int status, const char *detail_part)
{
    struct httpc_response r;
    ck_assert_int_eq(
        httpc_request(&client, method, path, content_type, body, body ? strlen(body) : 0, &r), 0);
    ck_assert_msg(r.status == status, "%s %s: %d, expected %d: %s", method, path, r.status, status,
                  r.body);
    char type[64];
    ck_assert_str_eq(httpc_header(&r, "Content-Type", type, sizeof(type)),
                     "application/problem+json");
    cJSON *problem = httpc_body_json(&r);
    ck_assert_int_eq((int)num(problem, "status"), status);
    ck_assert(strncmp(str(problem, "type"), "urn:greedylr:problem:", 21) == 0);
    ck_assert(strlen(str(problem, "title")) > 0);
    ck_assert_msg(strstr(str(problem, "detail"), detail_part) != NULL,
                  "detail \"%s\" does not mention %s", str(problem, "detail"), detail_part);
    cJSON_Delete(problem);
    httpc_response_free(&r);
}

START_TEST(health_answers_ok)
{
    cJSON *health = httpc_expect(&client, "GET", "/healthz", NULL, 200);
    ck_assert_str_eq(str(health, "status"), "ok");
    cJSON_Delete(health);
}
END_TEST

START_TEST(put_creates_then_repeats_then_conflicts)
{
    const char *body = "{\"lr\":0.1,\"config\":{\"patience\":3},\"tags\":{\"team\":\"a\"}}";
    struct httpc_response r;
    httpc_json(&client, "PUT", "/v1/jobs/put-1", body, &r);
    ck_assert_int_eq(r.status, 201);
    char location[128];
    ck_assert_str_eq(httpc_header(&r, "Location", location, sizeof(location)), "/v1/jobs/put-1");
    cJSON *job = httpc_body_json(&r);
    httpc_response_free(&r);
    ck_assert_str_eq(str(job, "id"), "put-1");
    ck_assert_str_eq(str(job, "policy"), "greedylr");
    ck_assert_str_eq(str(job, "status"), "running");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "last_step")));
    ck_assert_int_eq((int)num(job, "reports"), 0);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(job, "config");
    ck_assert_int_eq((int)num(config, "patience"), 3);
    ck_assert(num(config, "factor") == 0.95); /* defaults filled in */
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(job, "state");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(state, "best")));
    ck_assert_int_eq((int)num(state, "reset_left"), 500);
    ck_assert(strlen(str(job, "created_at")) == 24);
    cJSON_Delete(job);

    /* The same request again (from another rank, say): 200 and the job. */
    job = httpc_expect(&client, "PUT", "/v1/jobs/put-1", body, 200);
    ck_assert_str_eq(str(job, "id"), "put-1");
    cJSON_Delete(job);
    /* Spelling out a default is the same configuration. */
    job = httpc_expect(&client, "PUT", "/v1/jobs/put-1",
                       "{\"lr\":0.1,\"config\":{\"patience\":3,\"factor\":0.95},"
                       "\"tags\":{\"team\":\"a\"}}",
                       200);
    cJSON_Delete(job);
    expect_problem("PUT", "/v1/jobs/put-1", "application/json",
                   "{\"lr\":0.1,\"config\":{\"patience\":4},\"tags\":{\"team\":\"a\"}}", 409,
                   "put-1");
    expect_problem("PUT", "/v1/jobs/put-1", "application/json", "{\"lr\":0.2}", 409, "put-1");
}
END_TEST

START_TEST(post_makes_an_id_and_a_location)
{
    struct httpc_response r;
    httpc_json(&client, "POST", "/v1/jobs", "{\"policy\":\"plateau\",\"lr\":[0.1,0.01]}", &r);
    ck_assert_int_eq(r.status, 201);
    char location[256];
    ck_assert_ptr_nonnull(httpc_header(&r, "Location", location, sizeof(location)));
    cJSON *job = httpc_body_json(&r);
    httpc_response_free(&r);
    char expected[256];
    snprintf(expected, sizeof(expected), "/v1/jobs/%s", str(job, "id"));
    ck_assert_str_eq(location, expected);
    ck_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(job, "lr")));
    cJSON_Delete(job);
    job = httpc_expect(&client, "GET", location, NULL, 200);
    ck_assert_str_eq(str(job, "policy"), "plateau");
    cJSON_Delete(job);
}
END_TEST

START_TEST(validation_messages_reach_the_client)
{
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json",
                   "{\"lr\":0.1,\"config\":{\"patince\":3}}", 422, "patince");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{\"lr\":3e-4}", 422, "min_lr");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{\"lr\":-1}", 422, "lr");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{}", 422, "lr");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{\"lr\":0.1,\"policy\":\"fast\"}",
                   422, "fast");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{\"lr\":0.1,\"colour\":1}", 422,
                   "unknown field \"colour\" in the job");
    /* A near miss of a field, like one of a config key, gets a suggestion. */
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{\"lr\":0.1,\"polcy\":\"auto\"}",
                   422, "\"polcy\" in the job (did you mean \"policy\"?)");
    expect_problem("POST", "/v1/jobs/bad-1/reports", "application/json", "{\"stpe\":0,\"loss\":1}",
                   422, "(did you mean \"step\"?)");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{\"lr\":0.1,\"tags\":[1]}", 422,
                   "tags");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "{\"lr\":0.1,\"tags\":{\"k\":1}}",
                   422, "tags.k");
    expect_problem("PUT", "/v1/jobs/bad%21id", "application/json", "{\"lr\":0.1}", 422, "id");
    expect_problem("PUT", "/v1/jobs/bad-1", "application/json", "[1,2]", 422, "object");
    expect_problem("GET", "/v1/jobs/bad-1", NULL, NULL, 404, "bad-1");
}
END_TEST

START_TEST(protocol_errors_have_their_statuses)
{
    expect_problem("PUT", "/v1/jobs/proto-1", "application/json", "{\"lr\":0.1", 400, "JSON");
    expect_problem("PUT", "/v1/jobs/proto-1", "application/json", "{\"lr\":0.1} x", 400, "JSON");
    expect_problem("PUT", "/v1/jobs/proto-1", "application/json", "", 400, "empty");
    expect_problem("PUT", "/v1/jobs/proto-1", "text/plain", "{\"lr\":0.1}", 415, "JSON");
    expect_problem("GET", "/v2/jobs", NULL, NULL, 404, "route");
    expect_problem("GET", "/v1/jobs/x/other", NULL, NULL, 404, "route");

    struct httpc_response r;
    ck_assert_int_eq(httpc_request(&client, "DELETE", "/v1/jobs", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 405);
    char allow[64];
    ck_assert_str_eq(httpc_header(&r, "Allow", allow, sizeof(allow)), "GET, HEAD, POST");
    httpc_response_free(&r);
    ck_assert_int_eq(httpc_request(&client, "GET", "/v1/jobs/x/reports", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(httpc_header(&r, "Allow", allow, sizeof(allow)), "POST");
    httpc_response_free(&r);

    /* A body over 1 MiB is refused without being stored. */
    size_t size = 1024 * 1024 + 100;
    char *big = malloc(size + 1);
    memset(big, ' ', size);
    memcpy(big, "{\"lr\":0.1,", 10);
    big[size - 1] = '}';
    big[size] = '\0';
    expect_problem("PUT", "/v1/jobs/proto-big", "application/json", big, 413, "bytes");
    free(big);
    httpc_close(&client);
    expect_problem("GET", "/v1/jobs/proto-big", NULL, NULL, 404, "proto-big");
}
END_TEST

/* A body of tags whose one value nests arrays so that the body is depth levels deep. */
static char *nested_body(int depth)
{
    size_t size = 64 + 2 * (size_t)depth;
    char *body = malloc(size);
    ck_assert_ptr_nonnull(body);
    int len = snprintf(body, size, "{\"lr\":0.1,\"tags\":{\"k\":");
    for (int i = 0; i < depth - 2; i++)
        body[len++] = '[';
    for (int i = 0; i < depth - 2; i++)
        body[len++] = ']';
    snprintf(body + len, size - (size_t)len, "}}");
    return body;
}

START_TEST(nesting_is_bounded)
{
    /* At the limit the body is read, and the tags are refused for what they are. */
    char *body = nested_body(REQ_JSON_DEPTH_MAX);
    expect_problem("PUT", "/v1/jobs/deep-1", "application/json", body, 422, "tags.k");
    free(body);
    /* One level deeper is malformed, and the detail says why. */
    char detail[64];
    snprintf(detail, sizeof(detail), "deeper than %d levels", REQ_JSON_DEPTH_MAX);
    body = nested_body(REQ_JSON_DEPTH_MAX + 1);
    expect_problem("PUT", "/v1/jobs/deep-1", "application/json", body, 400, detail);
    free(body);
    /* So is a body of nothing but brackets, as deep as the body limit lets it be. */
    size_t size = 1000 * 1000;
    body = malloc(size + 1);
    ck_assert_ptr_nonnull(body);
    memset(body, '[', size);
    body[size] = '\0';
    expect_problem("POST", "/v1/jobs/deep-1/reports", "application/json", body, 400, detail);
    free(body);
    /* Brackets inside strings are text, not nesting. */
    body = malloc(size + 64);
    ck_assert_ptr_nonnull(body);
    int len = snprintf(body, size + 64, "{\"lr\":0.1,\"tags\":{\"k\":\"");
    memset(body + len, '{', 300); /* over SVC_TAG_VALUE_MAX, so still refused */
    snprintf(body + len + 300, size + 64 - (size_t)len - 300, "\"}}");
    expect_problem("PUT", "/v1/jobs/deep-1", "application/json", body, 422, "tags.k");
    free(body);
    cJSON *health = httpc_expect(&client, "GET", "/healthz", NULL, 200);
    cJSON_Delete(health);
}
END_TEST

START_TEST(patch_finishes_and_retags)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/patch-1", "{\"lr\":0.1}", 201));
    cJSON *job = httpc_expect(&client, "PATCH", "/v1/jobs/patch-1",
                              "{\"tags\":{\"run\":\"b\",\"team\":\"x\"}}", 200);
    ck_assert_str_eq(str(cJSON_GetObjectItemCaseSensitive(job, "tags"), "run"), "b");
    cJSON_Delete(job);
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/patch-1/reports", "{\"step\":0,\"loss\":1}", 200));
    job = httpc_expect(&client, "PATCH", "/v1/jobs/patch-1", "{\"status\":\"finished\"}", 200);
    ck_assert_str_eq(str(job, "status"), "finished");
    cJSON_Delete(job);
    expect_problem("POST", "/v1/jobs/patch-1/reports", "application/json",
                   "{\"step\":1,\"loss\":1}", 409, "finished");
    /* A retry of a report made before it finished is still answered. */
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/patch-1/reports", "{\"step\":0,\"loss\":1}", 200));
    expect_problem("PATCH", "/v1/jobs/patch-1", "application/json", "{\"status\":\"running\"}", 422,
                   "status");
    expect_problem("PATCH", "/v1/jobs/patch-1", "application/json", "{}", 422, "status");
    expect_problem("PATCH", "/v1/jobs/patch-missing", "application/json",
                   "{\"status\":\"finished\"}", 404, "patch-missing");
}
END_TEST

START_TEST(delete_removes_job_and_history)
{
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/del-1", "{\"lr\":0.1}", 201));
    cJSON_Delete(
        httpc_expect(&client, "POST", "/v1/jobs/del-1/reports", "{\"step\":0,\"loss\":1}", 200));
    ck_assert_ptr_null(httpc_expect(&client, "DELETE", "/v1/jobs/del-1", NULL, 204));
    expect_problem("GET", "/v1/jobs/del-1", NULL, NULL, 404, "del-1");
    expect_problem("GET", "/v1/jobs/del-1/history", NULL, NULL, 404, "del-1");
    expect_problem("DELETE", "/v1/jobs/del-1", NULL, NULL, 404, "del-1");
    /* The id is free again, and the new job starts from nothing. */
    cJSON *job = httpc_expect(&client, "PUT", "/v1/jobs/del-1", "{\"lr\":0.2}", 201);
    ck_assert_int_eq((int)num(job, "reports"), 0);
    cJSON_Delete(job);
    cJSON *history = httpc_expect(&client, "GET", "/v1/jobs/del-1/history", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(history, "points")), 0);
    cJSON_Delete(history);
}
END_TEST

/* Creates jobs list-<prefix>-0..n-1. */
static void create_jobs(struct httpc *c, const char *prefix, int n, const char *tags)
{
    for (int i = 0; i < n; i++) {
        char path[96], body[128];
        snprintf(path, sizeof(path), "/v1/jobs/%s-%d", prefix, i);
        snprintf(body, sizeof(body), "{\"lr\":0.1,\"tags\":%s}", tags);
        cJSON_Delete(httpc_expect(c, "PUT", path, body, 201));
    }
}

START_TEST(pagination_sees_every_job_once_while_jobs_are_created)
{
    enum { BEFORE = 40, PAGE = 7 };
    create_jobs(&client, "walk", BEFORE, "{\"suite\":\"walk\"}");
    pid_t writer = fork();
    ck_assert_int_ge(writer, 0);
    if (writer == 0) {
        struct httpc other;
        httpc_init(&other, server.port);
        create_jobs(&other, "walk-new", 60, "{\"suite\":\"walk\"}");
        httpc_close(&other);
        _exit(0);
    }
    int seen_before[BEFORE] = {0};
    int seen_total = 0;
    char token[64] = "";
    for (int page = 0; page < 1000; page++) {
        char path[160];
        snprintf(path, sizeof(path), "/v1/jobs?page_size=%d&tag=suite:walk%s%s", PAGE,
                 token[0] ? "&page_token=" : "", token);
        cJSON *list = httpc_expect(&client, "GET", path, NULL, 200);
        const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(list, "jobs");
        ck_assert_int_le(cJSON_GetArraySize(jobs), PAGE);
        const cJSON *job;
        cJSON_ArrayForEach(job, jobs)
        {
            int i;
            const char *id = str(job, "id");
            if (sscanf(id, "walk-%d", &i) == 1 && strncmp(id, "walk-new", 8) != 0) {
                ck_assert_msg(seen_before[i] == 0, "%s seen twice", id);
                seen_before[i] = 1;
            }
            seen_total++;
        }
        bool done = !httpc_next_page(list, token, sizeof(token));
        cJSON_Delete(list);
        if (done)
            break;
    }
    int status;
    waitpid(writer, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < BEFORE; i++)
        ck_assert_msg(seen_before[i] == 1, "walk-%d never listed", i);
    ck_assert_int_le(seen_total, BEFORE + 60);
}
END_TEST

START_TEST(list_filters_by_status_and_tag)
{
    create_jobs(&client, "filter", 3, "{\"suite\":\"filter\"}");
    cJSON_Delete(
        httpc_expect(&client, "PATCH", "/v1/jobs/filter-1", "{\"status\":\"finished\"}", 200));
    cJSON *list =
        httpc_expect(&client, "GET", "/v1/jobs?tag=suite:filter&status=finished", NULL, 200);
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(list, "jobs");
    ck_assert_int_eq(cJSON_GetArraySize(jobs), 1);
    ck_assert_str_eq(str(cJSON_GetArrayItem(jobs, 0), "id"), "filter-1");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(list, "next_page_token")));
    cJSON_Delete(list);
    list = httpc_expect(&client, "GET", "/v1/jobs?tag=suite:filter&status=running", NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(list, "jobs")), 2);
    cJSON_Delete(list);
    expect_problem("GET", "/v1/jobs?page_size=0", NULL, NULL, 422, "page_size");
    expect_problem("GET", "/v1/jobs?page_size=1001", NULL, NULL, 422, "page_size");
    expect_problem("GET", "/v1/jobs?status=done", NULL, NULL, 422, "status");
    expect_problem("GET", "/v1/jobs?tag=nocolon", NULL, NULL, 422, "tag");
    expect_problem("GET", "/v1/jobs?page_token=zzz", NULL, NULL, 422, "page_token");
    expect_problem("GET", "/v1/jobs?page_token=j%2B5", NULL, NULL, 422, "page_token");
    expect_problem("GET", "/v1/jobs?page_token=j99999999999999999999", NULL, NULL, 422,
                   "page_token");
}
END_TEST

START_TEST(json_media_types_are_recognised)
{
    const char *accepted[] = {"application/json", "Application/JSON; charset=UTF-8",
                              "application/merge-patch+json", " application/json ; x=1"};
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/jobs/media-%zu", i);
        struct httpc_response r;
        ck_assert_int_eq(httpc_request(&client, "PUT", path, accepted[i], "{\"lr\":0.1}", 10, &r),
                         0);
        ck_assert_msg(r.status == 201, "%s: %d", accepted[i], r.status);
        httpc_response_free(&r);
    }
    const char *refused[] = {"application/jsonfoo", "text/plain; x=+json", "text/json",
                             "application/x-www-form-urlencoded"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        expect_problem("PUT", "/v1/jobs/media-x", refused[i], "{\"lr\":0.1}", 415, "JSON");
}
END_TEST

START_TEST(long_ids_are_invalid_values)
{
    char path[256] = "/v1/jobs/";
    memset(path + 9, 'a', 129);
    path[9 + 129] = '\0';
    expect_problem("PUT", path, "application/json", "{\"lr\":0.1}", 422, "id");
    expect_problem("GET", path, NULL, NULL, 404, "does not exist");
}
END_TEST

START_TEST(repeated_create_after_retagging_is_the_same_job)
{
    const char *body = "{\"lr\":0.1,\"tags\":{\"a\":\"1\"}}";
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/retag-1", body, 201));
    cJSON_Delete(
        httpc_expect(&client, "PATCH", "/v1/jobs/retag-1", "{\"tags\":{\"a\":\"2\"}}", 200));
    cJSON *job = httpc_expect(&client, "PUT", "/v1/jobs/retag-1", body, 200);
    ck_assert_str_eq(str(cJSON_GetObjectItemCaseSensitive(job, "tags"), "a"), "2");
    cJSON_Delete(job);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_jobs");
    TCase *tc = tcase_create("jobs");
    apitest_fixtures(tc, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, health_answers_ok);
    tcase_add_test(tc, put_creates_then_repeats_then_conflicts);
    tcase_add_test(tc, post_makes_an_id_and_a_location);
    tcase_add_test(tc, validation_messages_reach_the_client);
    tcase_add_test(tc, protocol_errors_have_their_statuses);
    tcase_add_test(tc, nesting_is_bounded);
    tcase_add_test(tc, patch_finishes_and_retags);
    tcase_add_test(tc, delete_removes_job_and_history);
    tcase_add_test(tc, pagination_sees_every_job_once_while_jobs_are_created);
    tcase_add_test(tc, list_filters_by_status_and_tag);
    tcase_add_test(tc, json_media_types_are_recognised);
    tcase_add_test(tc, long_ids_are_invalid_values);
    tcase_add_test(tc, repeated_create_after_retagging_is_the_same_job);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
