/*
 * Answers of the HTTP layer (see api_int.h): one function builds and queues every
 * response with its headers, and one table turns a service status into an HTTP status
 * and an RFC 9457 problem.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/jsonx.h"
#include "base/log.h"
#include "http/api_int.h"

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
    {GLR_EQUOTA, HTTP_INSUFFICIENT_STORAGE, "quota", "Quota reached"},
    {GLR_EAUTH, HTTP_UNAUTHORIZED, "unauthorized", "Unauthorized"},
    {GLR_EDENIED, HTTP_FORBIDDEN, "forbidden", "Forbidden"},
    {GLR_ECORRUPT, HTTP_INTERNAL_ERROR, "storage", "Stored data is damaged"},
    {GLR_EIO, HTTP_INTERNAL_ERROR, "storage", "Storage failed"},
};

#define PROBLEM_KINDS (sizeof(problem_kinds) / sizeof(problem_kinds[0]))

/* The kind of status; a status the table does not list is a storage failure (the last). */
static const struct problem_kind *problem_for_status(int status)
{
    for (size_t i = 0; i < PROBLEM_KINDS; i++)
        if (problem_kinds[i].status == status)
            return &problem_kinds[i];
    return &problem_kinds[PROBLEM_KINDS - 1];
}

/* The response of a, without headers; NULL when libmicrohttpd has no memory for one. */
static struct MHD_Response *response_of(const struct api_answer *a)
{
    if (a->file) /* the response owns fd from here, and closes it */
        return MHD_create_response_from_fd64(a->size, a->fd);
    if (a->reader)
        return MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, a->reader,
                                                 a->reader_cls, a->reader_free);
    if (a->text)
        return MHD_create_response_from_buffer(strlen(a->text), a->text, MHD_RESPMEM_MUST_FREE);
    return MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
}

enum MHD_Result api_answer(struct MHD_Connection *conn, struct request *req,
                           const struct api_answer *a)
{
    struct MHD_Response *response = response_of(a);
    if (!response) {
        /* Without a response nobody else will release the body. */
        if (a->reader && a->reader_free)
            a->reader_free(a->reader_cls);
        if (a->file)
            close(a->fd);
        free(a->text);
        return MHD_NO;
    }
    if (a->type)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    if (a->location)
        MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, a->location);
    if (a->allow)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, a->allow);
    if (a->retry_after_s) {
        char seconds[16];
        snprintf(seconds, sizeof(seconds), "%u", a->retry_after_s);
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    if (a->encoding)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_ENCODING, a->encoding);
    if (a->page) {
        MHD_add_response_header(response, "Content-Security-Policy", api_static_policy());
        MHD_add_response_header(response, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
        MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(response, "Referrer-Policy", "no-referrer");
    }
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    if (req->cors_origin) {
        MHD_add_response_header(response, "Access-Control-Allow-Origin", req->cors_origin);
        MHD_add_response_header(response, "Access-Control-Expose-Headers",
                                "Location, Retry-After, WWW-Authenticate");
        MHD_add_response_header(response, MHD_HTTP_HEADER_VARY, "Origin");
    }
    if (a->status == HTTP_UNAUTHORIZED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"greedylr\"");
    enum MHD_Result result = MHD_queue_response(conn, a->status, response);
    MHD_destroy_response(response);
    /*
     * Only a queued answer counts: libmicrohttpd 0.9.75 refuses one before the whole body
     * is read, and the request must then be answered again at its end (see on_request).
     */
    req->answered = result == MHD_YES;
    req->status = a->status;
    return result;
}

/* Prints tree (which it deletes) with a final newline, for curl users; NULL: no memory. */
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

enum MHD_Result api_answer_json(struct MHD_Connection *conn, struct request *req, unsigned status,
                                cJSON *tree, const char *location)
{
    char *text = print_line(tree);
    if (!text)
        return MHD_NO;
    struct api_answer a = {
        .status = status, .type = "application/json", .text = text, .location = location};
    return api_answer(conn, req, &a);
}

/* A problem as one line of text, for a request that asked for text: "409 Conflict: ...". */
static char *problem_line(unsigned status, const char *title, const char *detail)
{
    int len = snprintf(NULL, 0, "%u %s: %s\n", status, title, detail);
    char *line = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (line)
        snprintf(line, (size_t)len + 1, "%u %s: %s\n", status, title, detail);
    return line;
}

/* {"type", "title", "status", "detail"}: a problem+json object; NULL when out of memory. */
static cJSON *problem_json(unsigned status, const char *slug, const char *title, const char *detail)
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
        return NULL;
    }
    return problem;
}

cJSON *api_problem_of_status(int rc, const char *err, unsigned *http)
{
    const struct problem_kind *kind = problem_for_status(rc);
    *http = kind->http;
    return problem_json(kind->http, kind->slug, kind->title, err);
}

enum MHD_Result api_answer_problem(struct MHD_Connection *conn, struct request *req,
                                   unsigned status, const char *slug, const char *title,
                                   const char *detail, const char *allow, unsigned retry_after_s)
{
    bool comes_back = status == HTTP_TOO_MANY_REQUESTS || status == HTTP_UNAVAILABLE;
    if (req->text) {
        struct api_answer a = {
            .status = status,
            .type = API_TEXT_TYPE,
            .text = problem_line(status, title, detail),
            .allow = allow,
            .retry_after_s = comes_back ? (retry_after_s ? retry_after_s : 1) : 0,
        };
        return a.text ? api_answer(conn, req, &a) : MHD_NO;
    }
    char *text = print_line(problem_json(status, slug, title, detail));
    if (!text)
        return MHD_NO;
    struct api_answer a = {
        .status = status,
        .type = "application/problem+json",
        .text = text,
        .allow = allow,
        .retry_after_s = comes_back ? (retry_after_s ? retry_after_s : 1) : 0,
    };
    return api_answer(conn, req, &a);
}

enum MHD_Result api_answer_status(struct MHD_Connection *conn, struct request *req, int rc,
                                  const char *err)
{
    const struct problem_kind *kind = problem_for_status(rc);
    if (kind->http >= 500)
        log_error("%s", err);
    return api_answer_problem(conn, req, kind->http, kind->slug, kind->title, err, NULL, 1);
}

enum MHD_Result api_answer_no_content(struct MHD_Connection *conn, struct request *req,
                                      unsigned retry_after_s)
{
    struct api_answer a = {.status = HTTP_NO_CONTENT, .retry_after_s = retry_after_s};
    return api_answer(conn, req, &a);
}
