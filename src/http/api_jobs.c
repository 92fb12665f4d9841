/*
 * The job routes (see api_int.h): create, read, change and delete jobs, reports and lr
 * lookups (and how their requests wait for an answer), rewinds, and history in JSON or
 * streamed as CSV.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "http/api_int.h"

/* PUT /v1/jobs/{id} (id given) and POST /v1/jobs (id NULL): 201 when made, 200 when there. */
static enum MHD_Result create_job(struct api *api, struct MHD_Connection *conn, struct request *req,
                                  const char *id)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = api_body_of(conn, req);
    struct req_create parsed;
    int rc = req_parse_create(&body, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    parsed.create.id = id;
    bool created = false;
    cJSON *job = NULL;
    enum MHD_Result result;
    rc = svc_job_create(api->svc, &parsed.create, &created, &job, err);
    if (rc) {
        result = api_answer_status(conn, req, rc, err);
    } else {
        char location[STORE_ID_MAX + 16];
        const cJSON *job_id = cJSON_GetObjectItemCaseSensitive(job, "id");
        snprintf(location, sizeof(location), "/v1/jobs/%s", job_id->valuestring);
        result = api_answer_json(conn, req, created ? HTTP_CREATED : HTTP_OK, job,
                                 created ? location : NULL);
    }
    req_create_clear(&parsed);
    return result;
}

enum MHD_Result api_post_job(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    return create_job(api, conn, req, NULL);
}

enum MHD_Result api_put_job(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    return create_job(api, conn, req, req->match.id);
}

enum MHD_Result api_get_job(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    cJSON *job = NULL;
    int rc = svc_job_get(api->svc, req->match.id, &job, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_json(conn, req, HTTP_OK, job, NULL);
}

/* PATCH /v1/jobs/{id} {"finished": true, "tags": {...}}. */
enum MHD_Result api_patch_job(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = api_body_of(conn, req);
    struct req_patch parsed;
    int rc = req_parse_patch(&body, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    bool finished = true;
    cJSON *job = NULL;
    rc = svc_job_patch(api->svc, req->match.id, parsed.finish ? &finished : NULL, parsed.outcome,
                       parsed.tags, &job, err);
    req_patch_clear(&parsed);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_json(conn, req, HTTP_OK, job, NULL);
}

enum MHD_Result api_delete_job(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    int rc = svc_job_delete(api->svc, req->match.id, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_no_content(conn, req, 0);
}

/* GET /v1/jobs: a page of jobs, filtered by the query string. */
enum MHD_Result api_list_jobs(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_query query = api_query_of(conn);
    struct req_list parsed;
    int rc = req_parse_list(&query, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    cJSON *page = NULL;
    rc = svc_job_list(api->svc, &parsed.q, &page, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_json(conn, req, HTTP_OK, page, NULL);
}

/* ---- reports and lr lookups, and how they wait ------------------------------------------ */

cJSON *api_decision_json(const char *id, const struct svc_report_result *r)
{
    cJSON *answer = cJSON_CreateObject();
    cJSON *lr = jsonx_lr(r->lrs, r->groups, r->lr_is_array);
    if (!answer || !lr || !cJSON_AddStringToObject(answer, "job", id) ||
        !jsonx_add_integer(answer, "step", r->step) || !cJSON_AddItemToObject(answer, "lr", lr) ||
        !cJSON_AddStringToObject(answer, "event", glr_event_name(r->event)) ||
        (r->ranks > 1 && !jsonx_add_integer(answer, "ranks", r->ranks)) ||
        (r->replayed && !cJSON_AddTrueToObject(answer, "replayed")) ||
        (r->late && !cJSON_AddTrueToObject(answer, "late"))) {
        cJSON_Delete(answer);
        return NULL;
    }
    return answer;
}

/* A decision as text: its learning rates, one per parameter group, spaced, and a newline. */
static char *decision_text(const struct svc_report_result *r)
{
    char *text = malloc(r->groups * (JSONX_DOUBLE_MAX + 1) + 1);
    if (!text)
        return NULL;
    size_t len = 0;
    for (size_t i = 0; i < r->groups; i++) {
        if (i > 0)
            text[len++] = ' ';
        len += jsonx_format_double(r->lrs[i], text + len);
    }
    text[len++] = '\n';
    text[len] = '\0';
    return text;
}

/* Answers a report or lookup: the decision, 204 for "not decided yet", or a problem. */
static enum MHD_Result answer_decision(struct MHD_Connection *conn, struct request *req, int rc,
                                       const struct svc_report_result *r, const char *err)
{
    if (rc == GLR_OK && req->text) {
        struct api_answer a = {.status = HTTP_OK, .type = API_TEXT_TYPE, .text = decision_text(r)};
        return a.text ? api_answer(conn, req, &a) : MHD_NO;
    }
    if (rc == GLR_OK)
        return api_answer_json(conn, req, HTTP_OK, api_decision_json(req->match.id, r), NULL);
    if (rc == GLR_EAGAIN && req->lookup)
        return api_answer_no_content(conn, req, 1);
    return api_answer_status(conn, req, rc, err);
}

enum MHD_Result api_answer_waited(struct MHD_Connection *conn, struct request *req)
{
    if (req->batch)
        return api_answer_batch(conn, req);
    if (!req->deferred)
        return answer_decision(conn, req, req->wait_status, &req->wait_result, req->wait_err);
    if (req->wait_status != GLR_OK)
        return api_answer_status(conn, req, req->wait_status, req->wait_err);
    cJSON *answer = req->deferred_answer;
    req->deferred_answer = NULL; /* api_answer_json() deletes it */
    return api_answer_json(conn, req, req->deferred_created ? HTTP_CREATED : HTTP_OK, answer, NULL);
}

/*
 * Called by the service, on any thread, when a waiting request has its answer; with or
 * without a lock of the service held (see struct request in api_int.h for why either is
 * safe).
 */
static void waiter_done(struct svc_waiter *waiter, int status,
                        const struct svc_report_result *result, const char *err)
{
    api_wait_complete((struct request *)(void *)((char *)waiter - offsetof(struct request, waiter)),
                      status, result, err);
}

void api_wait_complete(struct request *req, int status, const struct svc_report_result *result,
                       const char *err)
{
    pthread_mutex_lock(&req->wait_lock);
    req->wait_status = status;
    if (result)
        req->wait_result = *result;
    snprintf(req->wait_err, sizeof(req->wait_err), "%s", err ? err : "");
    bool suspended = req->wait_state == WAIT_SUSPENDED;
    struct MHD_Connection *conn = req->conn;
    req->wait_state = WAIT_DONE;
    pthread_mutex_unlock(&req->wait_lock);
    /*
     * libmicrohttpd then calls on_request again for this connection, which answers, and
     * may free req at once on another thread: req is not touched after this.
     */
    if (suspended)
        MHD_resume_connection(conn);
}

void api_wait_begin(struct request *req, struct MHD_Connection *conn)
{
    req->conn = conn;
    req->wait_state = WAIT_PENDING;
}

/* Prepares req to be a waiter before calling the service. */
static void start_waiting(struct request *req, struct MHD_Connection *conn, bool lookup)
{
    api_wait_begin(req, conn);
    req->lookup = lookup;
    req->waiter.done = waiter_done;
}

/*
 * The service will answer later: suspend the connection, so that no server thread is
 * held, unless the answer came already (another thread may have decided meanwhile).
 */
enum MHD_Result api_wait_suspend(struct MHD_Connection *conn, struct request *req)
{
    pthread_mutex_lock(&req->wait_lock);
    bool done = req->wait_state == WAIT_DONE;
    if (!done) {
        MHD_suspend_connection(conn);
        req->wait_state = WAIT_SUSPENDED;
    }
    pthread_mutex_unlock(&req->wait_lock);
    if (done)
        return api_answer_waited(conn, req);
    return MHD_YES;
}

/* POST /v1/jobs/{id}/reports {"step", "loss", "rank", "lr_cap"}: the step's decision. */
enum MHD_Result api_post_report(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = api_body_of(conn, req);
    struct svc_report_input parsed;
    int rc = req_parse_report(&body, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    struct svc_report_result r;
    start_waiting(req, conn, false);
    rc = svc_report(api->svc, req->match.id, &parsed, &req->waiter, &r, err);
    if (rc == GLR_EWAIT)
        return api_wait_suspend(conn, req);
    return answer_decision(conn, req, rc, &r, err);
}

/* GET /v1/jobs/{id}/lr?step=S&wait_ms=W: the decision of a step, waiting for it if asked. */
enum MHD_Result api_get_lr(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_query query = api_query_of(conn);
    struct req_lr parsed;
    int rc = req_parse_lr(&query, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    struct svc_report_result r;
    start_waiting(req, conn, true);
    rc = svc_lr(api->svc, req->match.id, parsed.step, parsed.wait_ms, &req->waiter, &r, err);
    if (rc == GLR_EWAIT)
        return api_wait_suspend(conn, req);
    return answer_decision(conn, req, rc, &r, err);
}

/* ---- rewind and history --------------------------------------------------------------- */

/* The rewind itself, on the thread of long requests: it may replay and delete for seconds. */
static int rewind_deferred(struct api *api, struct request *req, char *err)
{
    return svc_rewind(api->svc, req->match.id, req->deferred_step, &req->deferred_answer, err);
}

/*
 * POST /v1/jobs/{id}/rewind {"to_step"}: the job as it was after that step. Parsed here,
 * done off the server thread.
 */
enum MHD_Result api_post_rewind(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = api_body_of(conn, req);
    struct req_rewind parsed;
    int rc = req_parse_rewind(&body, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    req->deferred_step = parsed.to_step;
    return api_defer(api, conn, req, API_DEFER_LONG, rewind_deferred);
}

/* Streams a CSV export through libmicrohttpd's chunked callback response. */
static ssize_t csv_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    ssize_t n = svc_csv_read(cls, buf, max);
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void csv_free(void *cls)
{
    svc_csv_close(cls);
}

/* GET /v1/jobs/{id}/history: a page of decisions in JSON, or all of a range as CSV. */
enum MHD_Result api_get_history(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_query query = api_query_of(conn);
    struct req_history parsed;
    int rc = req_parse_history(&query, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    const struct svc_history_query *q = &parsed.q;
    if (parsed.csv) {
        struct svc_csv *csv = NULL;
        rc = svc_csv_open(api->svc, req->match.id, q->from_step, q->to_step, &csv, err);
        if (rc)
            return api_answer_status(conn, req, rc, err);
        struct api_answer a = {
            .status = HTTP_OK,
            .type = "text/csv",
            .reader = csv_reader,
            .reader_free = csv_free,
            .reader_cls = csv,
        };
        return api_answer(conn, req, &a);
    }
    cJSON *history = NULL;
    rc = svc_history(api->svc, req->match.id, q, &history, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_json(conn, req, HTTP_OK, history, NULL);
}

/* GET /v1/jobs/{id}/ranks: a page of each rank's own loss, in (step, rank) order. */
enum MHD_Result api_get_ranks(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX];
    struct req_query query = api_query_of(conn);
    struct req_history parsed;
    int rc = req_parse_history(&query, &parsed, err);
    if (!rc && parsed.csv)
        rc = glr_fail(err, GLR_EINVAL, "format=csv does not apply to the ranks' losses");
    if (rc)
        return api_answer_status(conn, req, rc, err);
    cJSON *ranks = NULL;
    rc = svc_ranks(api->svc, req->match.id, &parsed.q, &ranks, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_json(conn, req, HTTP_OK, ranks, NULL);
}
