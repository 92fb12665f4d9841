/*
 * The HTTP layer (see api.h), on libmicrohttpd with an internal epoll thread pool. Each
 * handler reads as: parse, validate, call the service, answer. Status codes of the
 * service become HTTP statuses in one table (problem_for_status).
 */
#include "http/api.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <math.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/jsonx.h"
#include "base/log.h"
#include "base/metrics.h"
#include "http/ratelimit.h"
#include "http/req.h"

/*
 * The HTTP statuses greedylrd answers, by number: libmicrohttpd renamed several between
 * the versions we support (422 and 413 among them).
 */
enum http_status {
    HTTP_OK = 200,
    HTTP_CREATED = 201,
    HTTP_NO_CONTENT = 204,
    HTTP_BAD_REQUEST = 400,
    HTTP_UNAUTHORIZED = 401,
    HTTP_FORBIDDEN = 403,
    HTTP_NOT_FOUND = 404,
    HTTP_METHOD_NOT_ALLOWED = 405,
    HTTP_CONFLICT = 409,
    HTTP_CONTENT_TOO_LARGE = 413,
    HTTP_UNSUPPORTED_MEDIA_TYPE = 415,
    HTTP_UNPROCESSABLE = 422,
    HTTP_TOO_MANY_REQUESTS = 429,
    HTTP_INTERNAL_ERROR = 500,
    HTTP_UNAVAILABLE = 503,
};

/* The routes; ROUTE_NONE is any path that matches none of them. */
enum route {
    ROUTE_NONE,
    ROUTE_HEALTH,
    ROUTE_READY,
    ROUTE_METRICS,
    ROUTE_JOBS,
    ROUTE_JOB,
    ROUTE_REPORTS,
    ROUTE_HISTORY,
    ROUTE_REWIND,
    ROUTE_LR,
    ROUTE_TOKENS,
    ROUTE_TOKEN,
    ROUTE_COUNT
};

/* What logs and metrics call each route: its template, never a concrete job id. */
static const char *const route_templates[ROUTE_COUNT] = {
    [ROUTE_NONE] = "unmatched",
    [ROUTE_HEALTH] = "/healthz",
    [ROUTE_READY] = "/readyz",
    [ROUTE_METRICS] = "/metrics",
    [ROUTE_JOBS] = "/v1/jobs",
    [ROUTE_JOB] = "/v1/jobs/{id}",
    [ROUTE_REPORTS] = "/v1/jobs/{id}/reports",
    [ROUTE_HISTORY] = "/v1/jobs/{id}/history",
    [ROUTE_REWIND] = "/v1/jobs/{id}/rewind",
    [ROUTE_LR] = "/v1/jobs/{id}/lr",
    [ROUTE_TOKENS] = "/v1/tokens",
    [ROUTE_TOKEN] = "/v1/tokens/{name}",
};

/* Longest method name kept for the request log. */
#define API_METHOD_MAX 16

struct api {
    struct svc *svc;
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_int in_flight;           /* requests begun and not yet completed */
    int metric_routes[ROUTE_COUNT]; /* metrics_route() of each route */
    struct auth *auth;              /* NULL: no token is asked for */
    struct ratelimit *limit;        /* NULL: no rate limit */
    double rate;
};

/* Where a request that waits for other ranks (or for a decision) stands. */
enum wait_state {
    WAIT_NONE,      /* not waiting */
    WAIT_PENDING,   /* registered with the service, connection not suspended yet */
    WAIT_SUSPENDED, /* connection suspended until the service answers */
    WAIT_DONE,      /* the service answered: reply with what it said */
};

/* One request being received: its body, bounded by API_BODY_MAX. */
struct request {
    struct timespec start;
    enum route route; /* for the request log and metrics */
    char method[API_METHOD_MAX + 1];
    char *body;
    size_t len;
    size_t cap;
    bool too_big;
    size_t dropped; /* bytes of a too big body read and dropped */
    bool answered;
    unsigned status;

    /* A request whose answer comes later (svc_waiter.done runs on any thread). */
    struct svc_waiter waiter; /* waiter_done() finds the request from it (offsetof) */
    struct MHD_Connection *conn;
    pthread_mutex_t wait_lock;
    enum wait_state wait_state;
    bool lookup; /* an lr lookup, else a report */
    int wait_status;
    struct svc_report_result wait_result;
    char wait_err[GLR_ERR_MAX];
    char job_id[STORE_ID_MAX + 1];
};

/* The HTTP answer of each service status. */
struct problem_kind {
    int status;
    unsigned http;
    const char *slug;
    const char *title;
};

static const struct problem_kind problem_kinds[] = {
    {GLR_EINVAL, HTTP_UNPROCESSABLE, "invalid-value", "Invalid value"},
    {GLR_EMALFORMED, HTTP_BAD_REQUEST, "malformed-json", "Malformed JSON"},
    {GLR_EMEDIA, HTTP_UNSUPPORTED_MEDIA_TYPE, "media-type", "Unsupported media type"},
    {GLR_ENOTFOUND, HTTP_NOT_FOUND, "not-found", "Not found"},
    {GLR_ECONFLICT, HTTP_CONFLICT, "conflict", "Conflict"},
    {GLR_ESTATE, HTTP_CONFLICT, "conflict", "Conflict"},
    {GLR_ETOOBIG, HTTP_CONTENT_TOO_LARGE, "too-large", "Content too large"},
    {GLR_ELIMIT, HTTP_TOO_MANY_REQUESTS, "too-many-waiting", "Too many requests"},
    {GLR_EAGAIN, HTTP_NOT_FOUND, "not-yet", "Not decided yet"},
    {GLR_EBUSY, HTTP_UNAVAILABLE, "busy", "Service unavailable"},
    {GLR_ENOMEM, HTTP_UNAVAILABLE, "busy", "Service unavailable"},
    {GLR_EAUTH, HTTP_UNAUTHORIZED, "unauthorized", "Unauthorized"},
    {GLR_EDENIED, HTTP_FORBIDDEN, "forbidden", "Forbidden"},
    {GLR_ECORRUPT, HTTP_INTERNAL_ERROR, "storage", "Stored data is damaged"},
    {GLR_EIO, HTTP_INTERNAL_ERROR, "storage", "Storage failed"},
};

static const struct problem_kind *problem_for_status(int status)
{
    for (size_t i = 0; i < sizeof(problem_kinds) / sizeof(problem_kinds[0]); i++)
        if (problem_kinds[i].status == status)
            return &problem_kinds[i];
    return &problem_kinds[sizeof(problem_kinds) / sizeof(problem_kinds[0]) - 1]; /* EIO */
}

/* ---- answers -------------------------------------------------------------------------- */

/* Queues text (malloc'd, ownership passes to libmicrohttpd) with a content type. */
static enum MHD_Result answer_text(struct MHD_Connection *conn, struct request *req,
                                   unsigned status, char *text, const char *type,
                                   const char *location)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (location)
        MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, location);
    enum MHD_Result result = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    req->answered = true;
    req->status = status;
    return result;
}

/* Prints tree (which it deletes) with a final newline, for curl users. */
static char *print_line(cJSON *tree)
{
    char *text = tree ? cJSON_PrintUnformatted(tree) : NULL;
    cJSON_Delete(tree);
    if (!text)
        return NULL;
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    return line;
}

static enum MHD_Result answer_json(struct MHD_Connection *conn, struct request *req,
                                   unsigned status, cJSON *tree, const char *location)
{
    char *text = print_line(tree);
    if (!text)
        return MHD_NO;
    return answer_text(conn, req, status, text, "application/json", location);
}

/*
 * An RFC 9457 problem: type, title, status and a detail that names what was wrong. A 429
 * or 503 says when to come back (Retry-After: retry_after_s, at least 1); a 401 names the
 * scheme it wants (WWW-Authenticate).
 */
static enum MHD_Result answer_problem_retry(struct MHD_Connection *conn, struct request *req,
                                            unsigned status, const char *slug, const char *title,
                                            const char *detail, const char *allow,
                                            unsigned retry_after_s)
{
    cJSON *problem = cJSON_CreateObject();
    char type[96];
    snprintf(type, sizeof(type), "urn:greedylr:problem:%s", slug);
    /* A detail may quote what the client sent, or be cut inside a character. */
    char clean_detail[JSONX_UTF8_REPAIRED_MAX(GLR_ERR_MAX)];
    jsonx_utf8_repair(detail, clean_detail, sizeof(clean_detail));
    if (!problem || !cJSON_AddStringToObject(problem, "type", type) ||
        !cJSON_AddStringToObject(problem, "title", title) ||
        !cJSON_AddNumberToObject(problem, "status", status) ||
        !cJSON_AddStringToObject(problem, "detail", clean_detail)) {
        cJSON_Delete(problem);
        return MHD_NO;
    }
    char *text = print_line(problem);
    if (!text)
        return MHD_NO;
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
    if (allow)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == HTTP_TOO_MANY_REQUESTS || status == HTTP_UNAVAILABLE) {
        char seconds[16];
        snprintf(seconds, sizeof(seconds), "%u", retry_after_s ? retry_after_s : 1);
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    if (status == HTTP_UNAUTHORIZED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"greedylr\"");
    enum MHD_Result result = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    req->answered = result == MHD_YES;
    req->status = status;
    return result;
}

static enum MHD_Result answer_problem(struct MHD_Connection *conn, struct request *req,
                                      unsigned status, const char *slug, const char *title,
                                      const char *detail, const char *allow)
{
    return answer_problem_retry(conn, req, status, slug, title, detail, allow, 1);
}

/* Answers a failed service call: rc picks the status, err is the detail. */
/* Answers 204 with no body, and Retry-After when retry_after is not NULL. */
static enum MHD_Result answer_no_content(struct MHD_Connection *conn, struct request *req,
                                         const char *retry_after)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    if (retry_after)
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    enum MHD_Result result = MHD_queue_response(conn, HTTP_NO_CONTENT, response);
    MHD_destroy_response(response);
    req->answered = true;
    req->status = HTTP_NO_CONTENT;
    return result;
}

static enum MHD_Result answer_status(struct MHD_Connection *conn, struct request *req, int rc,
                                     const char *err)
{
    const struct problem_kind *kind = problem_for_status(rc);
    if (kind->http >= 500)
        log_error("%s", err);
    return answer_problem(conn, req, kind->http, kind->slug, kind->title, err, NULL);
}

/* ---- request parsing ------------------------------------------------------------------- */

/* The body of req with its Content-Type, for the parsers of req.h. */
static struct req_body body_of(struct MHD_Connection *conn, const struct request *req)
{
    return (struct req_body){
        .type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .text = req->body,
        .len = req->len,
    };
}

static const char *query_value(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

/* The query string of conn, for the parsers of req.h. */
static struct req_query query_of(struct MHD_Connection *conn)
{
    return (struct req_query){.get = query_value, .ctx = conn};
}

/* ---- handlers ----------------------------------------------------------------------------- */

static enum MHD_Result get_health(struct MHD_Connection *conn, struct request *req)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ok");
    return answer_json(conn, req, HTTP_OK, body, NULL);
}

/* GET /readyz: 200 when the service can take reports now, else 503 saying why. */
static enum MHD_Result get_ready(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    int rc = svc_ready(api->svc, err);
    if (rc) {
        log_warn("not ready: %s", err);
        return answer_problem(conn, req, HTTP_UNAVAILABLE, "not-ready", "Not ready", err, NULL);
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ready");
    return answer_json(conn, req, HTTP_OK, body, NULL);
}

/* GET /metrics: the Prometheus text format. */
static enum MHD_Result get_metrics(struct api *api, struct MHD_Connection *conn,
                                   struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct svc_stats stats;
    int rc = svc_stats(api->svc, &stats, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    struct metrics_gauges gauges = {
        .requests_in_flight = atomic_load(&api->in_flight),
        .waiting_requests = stats.waiting_requests,
        .waiting_jobs = stats.waiting_jobs,
        .jobs_running = stats.jobs_running,
        .jobs_finished = stats.jobs_finished,
        .jobs_in_memory = stats.jobs_in_memory,
    };
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(&gauges, &text, &len) != 0)
        return answer_status(conn, req, GLR_ENOMEM, "metrics: out of memory");
    return answer_text(conn, req, HTTP_OK, text, METRICS_CONTENT_TYPE, NULL);
}

/* PUT /v1/jobs/{id} (id given) and POST /v1/jobs (id NULL). */
static enum MHD_Result create_job(struct api *api, struct MHD_Connection *conn, struct request *req,
                                  const char *id)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = body_of(conn, req);
    struct req_create parsed;
    int rc = req_parse_create(&body, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    parsed.create.id = id;
    bool created = false;
    cJSON *job = NULL;
    enum MHD_Result result;
    rc = svc_job_create(api->svc, &parsed.create, &created, &job, err);
    if (rc) {
        result = answer_status(conn, req, rc, err);
    } else {
        char location[STORE_ID_MAX + 16];
        const cJSON *job_id = cJSON_GetObjectItemCaseSensitive(job, "id");
        snprintf(location, sizeof(location), "/v1/jobs/%s", job_id->valuestring);
        result = answer_json(conn, req, created ? HTTP_CREATED : HTTP_OK, job,
                             created ? location : NULL);
    }
    req_create_clear(&parsed);
    return result;
}

static enum MHD_Result get_job(struct api *api, struct MHD_Connection *conn, struct request *req,
                               const char *id)
{
    char err[GLR_ERR_MAX] = "";
    cJSON *job = NULL;
    int rc = svc_job_get(api->svc, id, &job, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    return answer_json(conn, req, HTTP_OK, job, NULL);
}

static enum MHD_Result patch_job(struct api *api, struct MHD_Connection *conn, struct request *req,
                                 const char *id)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = body_of(conn, req);
    struct req_patch parsed;
    int rc = req_parse_patch(&body, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    bool finished = true;
    cJSON *job = NULL;
    rc = svc_job_patch(api->svc, id, parsed.finish ? &finished : NULL, parsed.tags, &job, err);
    req_patch_clear(&parsed);
    return rc ? answer_status(conn, req, rc, err) : answer_json(conn, req, HTTP_OK, job, NULL);
}

static enum MHD_Result delete_job(struct api *api, struct MHD_Connection *conn, struct request *req,
                                  const char *id)
{
    char err[GLR_ERR_MAX] = "";
    int rc = svc_job_delete(api->svc, id, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    return answer_no_content(conn, req, NULL);
}

static enum MHD_Result list_jobs(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_query query = query_of(conn);
    struct req_list parsed;
    int rc = req_parse_list(&query, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    cJSON *page = NULL;
    rc = svc_job_list(api->svc, &parsed.q, &page, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    return answer_json(conn, req, HTTP_OK, page, NULL);
}

/* The answer of a report or an lr lookup: {"job","step","lr","event"} and what else applies. */
static cJSON *decision_json(const char *id, const struct svc_report_result *r)
{
    cJSON *answer = cJSON_CreateObject();
    cJSON *lr = r->lr_is_array ? jsonx_number_array(r->lrs, r->groups) : jsonx_number(r->lrs[0]);
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

/* Answers a report or lookup: the decision, 204 for "not decided yet", or a problem. */
static enum MHD_Result answer_decision(struct MHD_Connection *conn, struct request *req, int rc,
                                       const struct svc_report_result *r, const char *err)
{
    if (rc == GLR_OK)
        return answer_json(conn, req, HTTP_OK, decision_json(req->job_id, r), NULL);
    if (rc == GLR_EAGAIN && req->lookup) {
        return answer_no_content(conn, req, "1");
    }
    return answer_status(conn, req, rc, err);
}

/* Called by the service, on any thread, when a waiting request has its answer. */
static void waiter_done(struct svc_waiter *waiter, int status,
                        const struct svc_report_result *result, const char *err)
{
    struct request *req =
        (struct request *)(void *)((char *)waiter - offsetof(struct request, waiter));
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

/* Prepares req to be a waiter before calling the service. */
static void start_waiting(struct request *req, struct MHD_Connection *conn, const char *id,
                          bool lookup)
{
    req->conn = conn;
    req->lookup = lookup;
    req->waiter.done = waiter_done;
    req->wait_state = WAIT_PENDING;
    snprintf(req->job_id, sizeof(req->job_id), "%s", id);
}

/*
 * The service will answer later: suspend the connection, so that no server thread is
 * held, unless the answer came already (another thread may have decided meanwhile).
 */
static enum MHD_Result wait_for_answer(struct MHD_Connection *conn, struct request *req)
{
    pthread_mutex_lock(&req->wait_lock);
    bool done = req->wait_state == WAIT_DONE;
    if (!done) {
        MHD_suspend_connection(conn);
        req->wait_state = WAIT_SUSPENDED;
    }
    pthread_mutex_unlock(&req->wait_lock);
    if (done)
        return answer_decision(conn, req, req->wait_status, &req->wait_result, req->wait_err);
    return MHD_YES;
}

static enum MHD_Result post_report(struct api *api, struct MHD_Connection *conn,
                                   struct request *req, const char *id)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = body_of(conn, req);
    struct req_report parsed;
    int rc = req_parse_report(&body, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    struct svc_report_result r;
    start_waiting(req, conn, id, false);
    rc = svc_report(api->svc, id, parsed.step, parsed.rank, parsed.loss, parsed.lr_cap,
                    &req->waiter, &r, err);
    if (rc == GLR_EWAIT)
        return wait_for_answer(conn, req);
    return answer_decision(conn, req, rc, &r, err);
}

/* GET /v1/jobs/{id}/lr?step=S&wait_ms=W: the decision of a step, waiting for it if asked. */
static enum MHD_Result get_lr(struct api *api, struct MHD_Connection *conn, struct request *req,
                              const char *id)
{
    char err[GLR_ERR_MAX] = "";
    struct req_query query = query_of(conn);
    struct req_lr parsed;
    int rc = req_parse_lr(&query, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    struct svc_report_result r;
    start_waiting(req, conn, id, true);
    rc = svc_lr(api->svc, id, parsed.step, parsed.wait_ms, &req->waiter, &r, err);
    if (rc == GLR_EWAIT)
        return wait_for_answer(conn, req);
    return answer_decision(conn, req, rc, &r, err);
}

static enum MHD_Result post_rewind(struct api *api, struct MHD_Connection *conn,
                                   struct request *req, const char *id)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = body_of(conn, req);
    struct req_rewind parsed;
    int rc = req_parse_rewind(&body, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    cJSON *job = NULL;
    rc = svc_rewind(api->svc, id, parsed.to_step, &job, err);
    return rc ? answer_status(conn, req, rc, err) : answer_json(conn, req, HTTP_OK, job, NULL);
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

static enum MHD_Result get_history(struct api *api, struct MHD_Connection *conn,
                                   struct request *req, const char *id)
{
    enum MHD_Result result;
    char err[GLR_ERR_MAX] = "";
    struct req_query query = query_of(conn);
    struct req_history parsed;
    int rc = req_parse_history(&query, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    const struct svc_history_query *q = &parsed.q;
    if (parsed.csv) {
        struct svc_csv *csv = NULL;
        rc = svc_csv_open(api->svc, id, q->from_step, q->to_step, &csv, err);
        if (rc)
            return answer_status(conn, req, rc, err);
        struct MHD_Response *response = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 64 * 1024, csv_reader, csv, csv_free);
        if (!response) {
            svc_csv_close(csv);
            return MHD_NO;
        }
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/csv");
        result = MHD_queue_response(conn, HTTP_OK, response);
        MHD_destroy_response(response);
        req->answered = true;
        req->status = HTTP_OK;
        return result;
    }
    cJSON *history = NULL;
    rc = svc_history(api->svc, id, q, &history, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    return answer_json(conn, req, HTTP_OK, history, NULL);
}

/* ---- tokens ----------------------------------------------------------------------------- */

/* Adds "created_at" (RFC 3339, UTC, milliseconds) for Unix milliseconds ms. */
static bool add_created_at(cJSON *object, int64_t ms)
{
    char text[GLR_TIME_TEXT_MAX];
    glr_clock_format(ms, text);
    return cJSON_AddStringToObject(object, "created_at", text) != NULL;
}

static bool list_token(void *ctx, const struct store_token *token)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(ctx, o) || !cJSON_AddStringToObject(o, "name", token->name) ||
        !cJSON_AddStringToObject(o, "role", token->role) || !add_created_at(o, token->created_ms))
        return false;
    return true;
}

/* GET /v1/tokens: every token's name, role and creation time (never the token). */
static enum MHD_Result list_tokens(struct api *api, struct MHD_Connection *conn,
                                   struct request *req)
{
    cJSON *page = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(page, "tokens");
    char err[GLR_ERR_MAX] = "";
    int rc = tokens ? store_token_scan(svc_store(api->svc), list_token, tokens, err)
                    : glr_fail(err, GLR_ENOMEM, "out of memory");
    if (rc) {
        cJSON_Delete(page);
        return answer_status(conn, req, rc, err);
    }
    return answer_json(conn, req, HTTP_OK, page, NULL);
}

/* The daemon's table of tokens follows a change made through the API at once. */
static void reload_tokens(struct api *api)
{
    char err[GLR_ERR_MAX] = "";
    if (api->auth && auth_reload(api->auth, err) != GLR_OK)
        log_error("reloading the API tokens: %s", err);
}

/* POST /v1/tokens {"role", "name"}: a new token, shown in this answer only. */
static enum MHD_Result create_token(struct api *api, struct MHD_Connection *conn,
                                    struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = body_of(conn, req);
    struct req_token parsed;
    int rc = req_parse_token(&body, &parsed, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    enum auth_role role = parsed.role;
    char token[AUTH_TOKEN_LEN + 1];
    char name[AUTH_NAME_MAX + 1];
    rc = auth_token_create(svc_store(api->svc), parsed.name, role, token, name, err);
    req_token_clear(&parsed);
    if (rc)
        return answer_status(conn, req, rc, err);
    reload_tokens(api);
    log_info("token %s (%s) created", name, auth_role_name(role));
    cJSON *answer = cJSON_CreateObject();
    cJSON_AddStringToObject(answer, "name", name);
    cJSON_AddStringToObject(answer, "role", auth_role_name(role));
    cJSON_AddStringToObject(answer, "token", token);
    memset(token, 0, sizeof(token));
    char location[AUTH_NAME_MAX + 16];
    snprintf(location, sizeof(location), "/v1/tokens/%s", name);
    return answer_json(conn, req, HTTP_CREATED, answer, location);
}

/* DELETE /v1/tokens/{name}: revoked at once. */
static enum MHD_Result revoke_token(struct api *api, struct MHD_Connection *conn,
                                    struct request *req, const char *name)
{
    char err[GLR_ERR_MAX] = "";
    int rc = store_token_delete(svc_store(api->svc), name, err);
    if (rc)
        return answer_status(conn, req, rc, err);
    reload_tokens(api);
    log_info("token %.64s revoked", name);
    return answer_no_content(conn, req, NULL);
}

/* ---- routing ---------------------------------------------------------------------------- */

static const char *const route_allow[] = {
    [ROUTE_NONE] = "",
    [ROUTE_HEALTH] = "GET, HEAD",
    [ROUTE_READY] = "GET, HEAD",
    [ROUTE_METRICS] = "GET, HEAD",
    [ROUTE_JOBS] = "GET, HEAD, POST",
    [ROUTE_JOB] = "GET, HEAD, PUT, PATCH, DELETE",
    [ROUTE_REPORTS] = "POST",
    [ROUTE_HISTORY] = "GET, HEAD",
    [ROUTE_REWIND] = "POST",
    [ROUTE_LR] = "GET, HEAD",
    [ROUTE_TOKENS] = "GET, HEAD, POST",
    [ROUTE_TOKEN] = "DELETE",
};

/*
 * The least role each route and method needs (HEAD as GET). A pair not listed needs
 * admin, so that a route added without a line here is closed rather than open.
 */
static const struct route_role {
    enum route route;
    const char *method;
    enum auth_role role;
} route_roles[] = {
    {ROUTE_NONE, "*", AUTH_NONE}, /* 404 for everyone */
    {ROUTE_HEALTH, "GET", AUTH_NONE},    {ROUTE_READY, "GET", AUTH_NONE},
    {ROUTE_METRICS, "GET", AUTH_READER}, {ROUTE_JOBS, "GET", AUTH_READER},
    {ROUTE_JOBS, "POST", AUTH_WRITER},   {ROUTE_JOB, "GET", AUTH_READER},
    {ROUTE_JOB, "PUT", AUTH_WRITER},     {ROUTE_JOB, "PATCH", AUTH_WRITER},
    {ROUTE_JOB, "DELETE", AUTH_ADMIN},   {ROUTE_REPORTS, "POST", AUTH_WRITER},
    {ROUTE_HISTORY, "GET", AUTH_READER}, {ROUTE_REWIND, "POST", AUTH_WRITER},
    {ROUTE_LR, "GET", AUTH_READER},      {ROUTE_TOKENS, "*", AUTH_ADMIN},
    {ROUTE_TOKEN, "*", AUTH_ADMIN},
};

static enum auth_role role_needed(enum route route, const char *method)
{
    if (strcmp(method, "HEAD") == 0)
        method = "GET";
    for (size_t i = 0; i < sizeof(route_roles) / sizeof(route_roles[0]); i++)
        if (route_roles[i].route == route &&
            (strcmp(route_roles[i].method, "*") == 0 || strcmp(route_roles[i].method, method) == 0))
            return route_roles[i].role;
    return AUTH_ADMIN;
}

/*
 * Longest path segment taken as a job id: longer than any valid id, so that the service
 * can say what is wrong with it (422 on create, 404 elsewhere).
 */
#define API_ID_SEGMENT_MAX 1024

/* Matches url to a route; id receives the job id of job routes. */
static enum route match_route(const char *url, char id[API_ID_SEGMENT_MAX + 1])
{
    if (strcmp(url, "/healthz") == 0)
        return ROUTE_HEALTH;
    if (strcmp(url, "/readyz") == 0)
        return ROUTE_READY;
    if (strcmp(url, "/metrics") == 0)
        return ROUTE_METRICS;
    if (strcmp(url, "/v1/jobs") == 0 || strcmp(url, "/v1/jobs/") == 0)
        return ROUTE_JOBS;
    if (strcmp(url, "/v1/tokens") == 0 || strcmp(url, "/v1/tokens/") == 0)
        return ROUTE_TOKENS;
    const char *token_prefix = "/v1/tokens/";
    size_t token_len = strlen(token_prefix);
    if (strncmp(url, token_prefix, token_len) == 0 && !strchr(url + token_len, '/') &&
        strlen(url + token_len) <= API_ID_SEGMENT_MAX) {
        snprintf(id, API_ID_SEGMENT_MAX + 1, "%s", url + token_len);
        return ROUTE_TOKEN;
    }
    const char *prefix = "/v1/jobs/";
    if (strncmp(url, prefix, strlen(prefix)) != 0)
        return ROUTE_NONE;
    const char *start = url + strlen(prefix);
    const char *slash = strchr(start, '/');
    size_t len = slash ? (size_t)(slash - start) : strlen(start);
    if (len == 0 || len > API_ID_SEGMENT_MAX)
        return ROUTE_NONE;
    memcpy(id, start, len);
    id[len] = '\0';
    if (!slash)
        return ROUTE_JOB;
    if (strcmp(slash, "/reports") == 0)
        return ROUTE_REPORTS;
    if (strcmp(slash, "/history") == 0)
        return ROUTE_HISTORY;
    if (strcmp(slash, "/rewind") == 0)
        return ROUTE_REWIND;
    if (strcmp(slash, "/lr") == 0)
        return ROUTE_LR;
    return ROUTE_NONE;
}

static bool is(const char *method, const char *name)
{
    return strcmp(method, name) == 0;
}

static enum MHD_Result dispatch(struct api *api, struct MHD_Connection *conn, struct request *req,
                                const char *url, const char *method)
{
    char id[API_ID_SEGMENT_MAX + 1] = "";
    enum route route = match_route(url, id);
    bool get = is(method, "GET") || is(method, "HEAD");
    switch (route) {
    case ROUTE_NONE:
        return answer_problem(conn, req, HTTP_NOT_FOUND, "no-route", "Not found",
                              "no such route; the API is under /v1/jobs", NULL);
    case ROUTE_HEALTH:
        if (get)
            return get_health(conn, req);
        break;
    case ROUTE_READY:
        if (get)
            return get_ready(api, conn, req);
        break;
    case ROUTE_METRICS:
        if (get)
            return get_metrics(api, conn, req);
        break;
    case ROUTE_COUNT:
        break;
    case ROUTE_JOBS:
        if (get)
            return list_jobs(api, conn, req);
        if (is(method, "POST"))
            return create_job(api, conn, req, NULL);
        break;
    case ROUTE_JOB:
        if (get)
            return get_job(api, conn, req, id);
        if (is(method, "PUT"))
            return create_job(api, conn, req, id);
        if (is(method, "PATCH"))
            return patch_job(api, conn, req, id);
        if (is(method, "DELETE"))
            return delete_job(api, conn, req, id);
        break;
    case ROUTE_REPORTS:
        if (is(method, "POST"))
            return post_report(api, conn, req, id);
        break;
    case ROUTE_HISTORY:
        if (get)
            return get_history(api, conn, req, id);
        break;
    case ROUTE_REWIND:
        if (is(method, "POST"))
            return post_rewind(api, conn, req, id);
        break;
    case ROUTE_LR:
        if (get)
            return get_lr(api, conn, req, id);
        break;
    case ROUTE_TOKENS:
        if (get)
            return list_tokens(api, conn, req);
        if (is(method, "POST"))
            return create_token(api, conn, req);
        break;
    case ROUTE_TOKEN:
        if (is(method, "DELETE"))
            return revoke_token(api, conn, req, id);
        break;
    }
    char detail[96];
    snprintf(detail, sizeof(detail), "%.16s is not allowed here; allowed: %s", method,
             route_allow[route]);
    return answer_problem(conn, req, HTTP_METHOD_NOT_ALLOWED, "method", "Method not allowed",
                          detail, route_allow[route]);
}

/* Appends a chunk of the body, refusing to grow past API_BODY_MAX. */
static bool append_body(struct request *req, const char *data, size_t size)
{
    if (req->len + size > API_BODY_MAX)
        return false;
    if (req->len + size + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 4096;
        while (cap < req->len + size + 1)
            cap *= 2;
        if (cap > API_BODY_MAX + 1)
            cap = API_BODY_MAX + 1;
        char *body = realloc(req->body, cap);
        if (!body)
            return false;
        req->body = body;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, size);
    req->len += size;
    req->body[req->len] = '\0';
    return true;
}

static enum MHD_Result answer_too_big(struct MHD_Connection *conn, struct request *req)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "the request body is larger than %d bytes", API_BODY_MAX);
    return answer_problem(conn, req, HTTP_CONTENT_TOO_LARGE, "too-large", "Content too large",
                          detail, NULL);
}

/* The client's address as text, for rate limits without tokens and for logs. */
static void client_address(struct MHD_Connection *conn, char *out, size_t size)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, size, "?");
    if (!info || !info->client_addr)
        return;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)size);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)size);
}

/*
 * Who gets in, decided from the request line and headers before any body is read: the
 * token must allow what the route needs (401, 403), then the token (or, without tokens,
 * the client's address) must be under its rate (429). Returns true to go on; otherwise
 * the answer is queued and *result set.
 */
static bool admit(struct api *api, struct MHD_Connection *conn, struct request *req,
                  const char *url, const char *method, enum MHD_Result *result)
{
    char id[API_ID_SEGMENT_MAX + 1];
    enum auth_role role = role_needed(match_route(url, id), method);
    if (role == AUTH_NONE)
        return true;
    char who[AUTH_NAME_MAX + 1] = "";
    if (api->auth) {
        char err[GLR_ERR_MAX] = "";
        const char *authorization =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        int rc = auth_check(api->auth, authorization, role, who, err);
        if (rc) {
            *result = answer_status(conn, req, rc, err);
            return false;
        }
    }
    unsigned retry_after = 1;
    if (api->limit) {
        char address[INET6_ADDRSTRLEN + 1];
        if (!who[0])
            client_address(conn, address, sizeof(address));
        if (!ratelimit_take(api->limit, who[0] ? who : address, &retry_after)) {
            char detail[GLR_ERR_MAX];
            snprintf(detail, sizeof(detail),
                     "%s %s is over its rate of %g requests per second; retry in %u s",
                     who[0] ? "token" : "client", who[0] ? who : address, api->rate, retry_after);
            *result = answer_problem_retry(conn, req, HTTP_TOO_MANY_REQUESTS, "rate-limited",
                                           "Too many requests", detail, NULL, retry_after);
            return false;
        }
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct api *api = cls;
    struct request *req = *con_cls;
    (void)version;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &req->start);
        char id[API_ID_SEGMENT_MAX + 1];
        req->route = match_route(url, id);
        snprintf(req->method, sizeof(req->method), "%s", method);
        pthread_mutex_init(&req->wait_lock, NULL);
        *con_cls = req;
        atomic_fetch_add(&api->in_flight, 1);
        enum MHD_Result refused;
        if (!admit(api, conn, req, url, method, &refused))
            return refused;
        /*
         * The first call only sets up: an answer queued now makes libmicrohttpd close the
         * connection. That is what a declared body over the limit deserves, rather than
         * reading it all. A chunked one is cut short as soon as it passes the limit (see
         * the upload below).
         */
        const char *length =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > API_BODY_MAX)
            return answer_too_big(conn, req);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t size = *upload_data_size;
        *upload_data_size = 0;
        if (req->answered)
            return MHD_YES; /* answered early; libmicrohttpd drops the rest */
        if (!req->too_big && !append_body(req, upload_data, size)) {
            req->too_big = true;
            free(req->body);
            req->body = NULL;
            req->len = req->cap = 0;
            /*
             * Newer libmicrohttpd answers now and drops the rest of the body; 0.9.75
             * refuses an answer before the whole request is read.
             */
            if (answer_too_big(conn, req) == MHD_YES)
                return MHD_YES;
        }
        if (req->too_big) {
            /* Read on only so far, to answer 413; a body far past the limit is cut off. */
            req->dropped += size;
            if (req->dropped > API_BODY_DISCARD_MAX) {
                log_info("a request body passed %d bytes by more than %d: connection closed",
                         API_BODY_MAX, API_BODY_DISCARD_MAX);
                return MHD_NO;
            }
        }
        return MHD_YES;
    }
    if (req->wait_state == WAIT_DONE && !req->answered) /* resumed: the answer is here */
        return answer_decision(conn, req, req->wait_status, &req->wait_result, req->wait_err);
    if (req->answered || req->wait_state != WAIT_NONE)
        return MHD_YES;
    if (req->too_big)
        return answer_too_big(conn, req);
    /* JSON text is UTF-8; a body that is not would be stored and echoed as broken JSON. */
    size_t bad = jsonx_utf8_check(req->body ? req->body : "", req->len);
    if (bad < req->len) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the request body is not valid UTF-8 (at byte %zu)", bad);
        return answer_problem(conn, req, HTTP_BAD_REQUEST, "malformed-json", "Malformed JSON",
                              detail, NULL);
    }
    return dispatch(api, conn, req, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    struct api *api = cls;
    (void)conn;
    (void)code;
    struct request *req = *con_cls;
    if (!req)
        return;
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds =
        (double)(end.tv_sec - req->start.tv_sec) + (double)(end.tv_nsec - req->start.tv_nsec) / 1e9;
    /* An answer queued but not sent whole (the client went away) still counts as given. */
    unsigned status = req->answered ? req->status : 0;
    metrics_observe_request(api->metric_routes[req->route], metrics_method(req->method), status,
                            seconds);
    log_request(req->method, route_templates[req->route], status, seconds);
    atomic_fetch_sub(&api->in_flight, 1);
    pthread_mutex_destroy(&req->wait_lock);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

/* libmicrohttpd's own messages; fmt is its format, which the attribute lets the compiler trust. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t len = strlen(line);
    while (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    log_warn("http: %s", line);
}

int api_start(struct svc *svc, const struct api_options *options, struct api **out, char *err)
{
    *out = NULL;
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    /*
     * poll(), not epoll: libmicrohttpd 0.9.75 registers a connection edge-triggered and
     * reads it once, so a client that sent a partial request and hung up while still in
     * the listen queue is noticed only at the idle timeout; a flood of those holds every
     * connection slot. poll() reports the hang-up, and measured no slower here.
     */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG |
                         MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, options->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(options->port);
    } else if (inet_pton(AF_INET6, options->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(options->port);
        flags |= MHD_USE_IPv6;
    } else {
        return glr_fail(err, GLR_EINVAL, "listen address %.64s is not a numeric IP address",
                        options->host);
    }
    if (options->threads < 1 || options->threads > API_THREADS_MAX)
        return glr_fail(err, GLR_EINVAL, "threads must be from 1 to %d", API_THREADS_MAX);
    size_t memory =
        options->connection_memory ? options->connection_memory : API_CONNECTION_MEMORY_DEFAULT;
    if (memory < API_CONNECTION_MEMORY_MIN || memory > API_CONNECTION_MEMORY_MAX)
        return glr_fail(err, GLR_EINVAL, "connection memory must be from %d to %d bytes",
                        API_CONNECTION_MEMORY_MIN, API_CONNECTION_MEMORY_MAX);
    unsigned connections =
        options->max_connections ? options->max_connections : API_CONNECTIONS_DEFAULT;
    if (connections < options->threads)
        return glr_fail(err, GLR_EINVAL,
                        "max connections (%u) must be at least the number of threads (%u): "
                        "each thread takes an equal share",
                        connections, options->threads);
    bool tls = options->tls_cert != NULL;
    if (tls && !options->tls_key)
        return glr_fail(err, GLR_EINVAL, "a TLS certificate needs its key");
    if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return glr_fail(err, GLR_EINVAL,
                        "this libmicrohttpd was built without TLS: serve plain HTTP behind a "
                        "TLS proxy, or use a libmicrohttpd built with GnuTLS");

    struct api *api = calloc(1, sizeof(*api));
    if (!api)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    api->svc = svc;
    for (int r = 0; r < ROUTE_COUNT; r++)
        api->metric_routes[r] = metrics_route(route_templates[r]);
    api->auth = options->auth;
    api->rate = options->rate;
    if (options->rate > 0 && !(api->limit = ratelimit_create(options->rate))) {
        free(api);
        return glr_fail(err, GLR_EINVAL, "the rate limit must be above 0 and at most %g/s",
                        RATELIMIT_RATE_MAX);
    }
    /* The options that depend on the command line; libmicrohttpd copies what it keeps. */
    struct MHD_OptionItem extra[10];
    size_t n = 0;
    extra[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, connections, NULL};
    extra[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                         options->max_connections_per_ip, NULL};
    extra[n++] = (struct MHD_OptionItem){
        MHD_OPTION_CONNECTION_TIMEOUT,
        options->idle_timeout_s ? options->idle_timeout_s : API_IDLE_TIMEOUT_S, NULL};
    extra[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)memory, NULL};
    /* One thread is the polling thread itself: libmicrohttpd warns about a pool of one. */
    if (options->threads > 1)
        extra[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, options->threads, NULL};
    if (tls) {
        flags |= MHD_USE_TLS;
        extra[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                             (void *)(uintptr_t)options->tls_cert};
        extra[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
                                             (void *)(uintptr_t)options->tls_key};
        extra[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                             (void *)(uintptr_t)API_TLS_PRIORITIES};
    }
    extra[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    /* The logger goes first, so that messages about the other options reach it too. */
    api->daemon = MHD_start_daemon(flags, options->port, NULL, NULL, on_request, api,
                                   MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api,
                                   MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED,
                                   on_completed, api, MHD_OPTION_ARRAY, extra, MHD_OPTION_END);
    if (!api->daemon) {
        ratelimit_free(api->limit);
        free(api);
        if (tls)
            return glr_fail(err, GLR_EIO,
                            "cannot serve HTTPS on %s:%u: the address is in use or not allowed, "
                            "or the certificate and key were refused (see the log above)",
                            options->host, options->port);
        return glr_fail(err, GLR_EIO, "cannot listen on %s:%u (in use, or not allowed?)",
                        options->host, options->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->daemon, MHD_DAEMON_INFO_BIND_PORT);
    api->port = info ? info->port : options->port;
    *out = api;
    return GLR_OK;
}

uint16_t api_port(const struct api *api)
{
    return api->port;
}

void api_stop(struct api *api)
{
    if (!api)
        return;
    /*
     * Stop accepting first, then let the requests in flight be answered (a report
     * committed but never answered would only be retried), then close every connection.
     */
    MHD_socket listener = MHD_quiesce_daemon(api->daemon);
    /* A suspended connection left at MHD_stop_daemon is a crash: answer them all first. */
    svc_cancel_waiters(api->svc);
    for (int waited = 0; atomic_load(&api->in_flight) > 0 && waited < API_DRAIN_MS; waited += 10) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    MHD_stop_daemon(api->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    ratelimit_free(api->limit);
    free(api);
}
