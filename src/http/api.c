/*
 * The HTTP layer (see api.h), on libmicrohttpd with an internal thread pool: starting
 * and stopping the server, and the life of one request: matched against the route table
 * once, admitted (token, then rate) before its body is read, its body collected up to
 * API_BODY_MAX, then dispatched to the route's handler (api_route.c).
 */
#include "http/api.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/jsonx.h"
#include "base/log.h"
#include "base/metrics.h"
#include "http/api_int.h"

/* ---- request parsing ------------------------------------------------------------------- */

struct req_body api_body_of(struct MHD_Connection *conn, const struct request *req)
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

struct req_query api_query_of(struct MHD_Connection *conn)
{
    return (struct req_query){.get = query_value, .ctx = conn};
}

/* ---- one request ------------------------------------------------------------------------ */

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
    return api_answer_problem(conn, req, HTTP_CONTENT_TOO_LARGE, "too-large", "Content too large",
                              detail, NULL, 1);
}

/*
 * True when the request says a body follows: a Content-Length above 0, or any
 * Transfer-Encoding (a chunked body, whose size is not said).
 */
static bool declares_body(struct MHD_Connection *conn)
{
    const char *length =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtoull(length, NULL, 10) > 0)
        return true;
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) !=
           NULL;
}

/* A body sent to a route that takes none: 413, before a byte of it is read. */
static enum MHD_Result answer_no_body(struct MHD_Connection *conn, struct request *req)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "%.16s %s takes no request body", req->method,
             api_route_label(&req->match));
    return api_answer_problem(conn, req, HTTP_CONTENT_TOO_LARGE, "too-large", "Content too large",
                              detail, NULL, 1);
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
                  enum MHD_Result *result)
{
    enum auth_role role = api_route_role(&req->match);
    if (role == AUTH_NONE)
        return true;
    char who[AUTH_NAME_MAX + 1] = "";
    if (api->auth) {
        char err[GLR_ERR_MAX] = "";
        const char *authorization =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        int rc = auth_check(api->auth, authorization, role, who, err);
        if (rc) {
            *result = api_answer_status(conn, req, rc, err);
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
            *result = api_answer_problem(conn, req, HTTP_TOO_MANY_REQUESTS, "rate-limited",
                                         "Too many requests", detail, NULL, retry_after);
            return false;
        }
    }
    return true;
}

/* The value of a hex digit, or -1. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes the %HH escapes of a path or of a query's name or value, in place, as
 * libmicrohttpd would, except %00: decoded, a NUL would end the text early, and
 * "/v1/jobs/victim%00/anything" would act on job "victim" (a proxy that filters by path is
 * then bypassed). It stays as written, and on_request refuses a path that holds it.
 */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *out = s;
    for (const char *in = s; *in; in++) {
        int hi, lo;
        if (in[0] == '%' && (hi = hex_value(in[1])) >= 0 && (lo = hex_value(in[2])) >= 0 &&
            (hi || lo)) {
            *out++ = (char)(hi * 16 + lo);
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

/* The Content-Length headers of a request: how many, and whether they all agree. */
struct lengths {
    int count;
    bool differ;
    const char *first;
};

static enum MHD_Result count_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct lengths *l = cls;
    if (!key || strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) != 0)
        return MHD_YES;
    if (l->count++ == 0)
        l->first = value;
    else if (!value || !l->first || strcmp(value, l->first) != 0)
        l->differ = true;
    return MHD_YES;
}

/*
 * What makes a request's head unreadable, or NULL: HTTP/1.1 requires Host (RFC 9112), and
 * two Content-Length headers that differ leave the body's end in doubt, which a proxy in
 * front may read otherwise (request smuggling).
 */
static const char *malformed_head(struct MHD_Connection *conn, const char *version)
{
    if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
        !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))
        return "an HTTP/1.1 request needs a Host header";
    struct lengths l = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_length, &l);
    if (l.differ)
        return "the request has Content-Length headers that differ";
    return NULL;
}

/* Answers a request whose query on_uri cut off, saying which bound it passed. */
static enum MHD_Result answer_query_too_long(struct MHD_Connection *conn, struct request *req)
{
    char detail[128];
    if (req->cut_params > API_QUERY_PARAMS_MAX)
        snprintf(detail, sizeof(detail), "the query has %zu parameters; at most %d are read",
                 req->cut_params, API_QUERY_PARAMS_MAX);
    else
        snprintf(detail, sizeof(detail), "the query is %zu bytes long; at most %d are read",
                 req->cut_bytes, API_QUERY_BYTES_MAX);
    return api_answer_problem(conn, req, HTTP_URI_TOO_LONG, "uri-too-long", "URI too long", detail,
                              NULL, 1);
}

/*
 * Called by libmicrohttpd with the raw request target, before it parses the query into
 * the connection's memory; what it returns becomes the request's *con_cls. Each parameter
 * parsed takes room there, and a query of a few hundred used it all, after which not even
 * an error fitted. So a query of more than API_QUERY_PARAMS_MAX parameters or
 * API_QUERY_BYTES_MAX bytes is emptied here, before it is parsed: the target lies in
 * libmicrohttpd's read buffer, which it writes itself (it ends the path at the '?' next),
 * and a NUL after the '?' leaves it no parameter. The request begins with what was wrong,
 * for on_request to answer 414. (A raw NUL byte in the request line, which libmicrohttpd
 * 0.9.75 lets through, hides what follows it from this count.)
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    const char *query = uri ? strchr(uri, '?') : NULL;
    if (!query)
        return NULL;
    size_t params = 1, bytes = 0;
    for (const char *p = query + 1; *p; p++, bytes++)
        params += *p == '&';
    if (params <= API_QUERY_PARAMS_MAX && bytes <= API_QUERY_BYTES_MAX)
        return NULL;
    *(char *)(uintptr_t)(query + 1) = '\0';
    struct request *req = calloc(1, sizeof(*req));
    if (!req) /* the query is cut all the same: the request just sees none */
        return NULL;
    req->cut_params = params;
    req->cut_bytes = bytes;
    return req;
}

/*
 * The first call of a request, once its line and headers are in: refuses what is
 * malformed, admits, and refuses a body that will not be read. Anything answered here
 * is answered before a byte of the body is read.
 */
static enum MHD_Result on_head(struct api *api, struct MHD_Connection *conn, const char *url,
                               const char *version, struct request *req)
{
    if (req->cut_params)
        return answer_query_too_long(conn, req);
    if (req->match.route && req->match.route->answers_text) {
        /* Decided first, so that every problem of the request comes in the form asked for. */
        char err[GLR_ERR_MAX];
        const char *format = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
        const char *accept =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        if (req_parse_answer_format(format, accept, &req->text, err))
            return api_answer_status(conn, req, GLR_EINVAL, err);
    }
    if (strstr(url, "%00")) /* left encoded by unescape(): a NUL has no place in a path */
        return api_answer_problem(conn, req, HTTP_BAD_REQUEST, "malformed-path", "Malformed path",
                                  "the path holds an encoded NUL (%00)", NULL, 1);
    /*
     * "." and ".." are dot segments (RFC 3986), which a client or proxy may resolve
     * before sending: /v1/jobs/.. is /v1/ there, and no job or token can be named so.
     */
    const char *id = req->match.id;
    if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
        char detail[128];
        snprintf(detail, sizeof(detail),
                 "\"%.2s\" is a dot segment of a path, not a job id or token name", id);
        return api_answer_problem(conn, req, HTTP_BAD_REQUEST, "malformed-path", "Malformed path",
                                  detail, NULL, 1);
    }
    const char *malformed = malformed_head(conn, version);
    if (malformed)
        return api_answer_problem(conn, req, HTTP_BAD_REQUEST, "malformed-request",
                                  "Malformed request", malformed, NULL, 1);
    enum MHD_Result refused;
    if (!api_origin_admit(api, conn, req, &refused))
        return refused;
    if (!admit(api, conn, req, &refused))
        return refused;
    /*
     * A body nobody will read is not read: a route that takes none refuses it, and a
     * path or method no route serves is answered now. Else the routes that need no
     * token would let anyone make the daemon keep a body of API_BODY_MAX per connection.
     */
    if (declares_body(conn) && !api_route_takes_body(&req->match))
        return req->match.route ? answer_no_body(conn, req) : api_route_dispatch(api, conn, req);
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct api *api = cls;
    struct request *req = *con_cls;
    if (!req || !req->begun) {
        if (!req) { /* else on_uri made it, zeroed */
            req = malloc(sizeof(*req));
            if (!req)
                return MHD_NO;
            memset(req, 0, offsetof(struct request, wait_result)); /* see struct request */
        }
        req->begun = true;
        atomic_init(&req->gone, false);
        clock_gettime(CLOCK_MONOTONIC, &req->start);
        /* The one match of this request: every later step reads it from req. */
        api_route_match(url, method, &req->match);
        snprintf(req->method, sizeof(req->method), "%s", method);
        pthread_mutex_init(&req->wait_lock, NULL);
        *con_cls = req;
        atomic_fetch_add(&api->in_flight, 1);
        api_conn_begin(api, conn, req);
        enum MHD_Result result = on_head(api, conn, url, version, req);
        if (req->answered)
            api_conn_arrived(req);
        return result;
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
    api_conn_arrived(req);
    if (atomic_load(&req->gone)) /* resumed after its client hung up: nobody to answer */
        return MHD_NO;
    if (req->wait_state == WAIT_DONE && !req->answered) /* resumed: the answer is here */
        return api_answer_waited(conn, req);
    if (req->answered || req->wait_state != WAIT_NONE)
        return MHD_YES;
    if (req->too_big)
        return answer_too_big(conn, req);
    /* JSON text is UTF-8; a body that is not would be stored and echoed as broken JSON. */
    size_t bad = jsonx_utf8_check(req->body ? req->body : "", req->len);
    if (bad < req->len) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the request body is not valid UTF-8 (at byte %zu)", bad);
        return api_answer_problem(conn, req, HTTP_BAD_REQUEST, "malformed-json", "Malformed JSON",
                                  detail, NULL, 1);
    }
    return api_route_dispatch(api, conn, req);
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
    if (!req->begun) { /* made by on_uri for a request that ended before it began */
        free(req);
        *con_cls = NULL;
        return;
    }
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds =
        (double)(end.tv_sec - req->start.tv_sec) + (double)(end.tv_nsec - req->start.tv_nsec) / 1e9;
    /* An answer queued but not sent whole (the client went away) still counts as given. */
    unsigned status = req->answered ? req->status : 0;
    const struct api_route *path = req->match.path;
    int metric = path ? api->metric_rows[path - api_routes] : api->metric_unmatched;
    metrics_observe_request(metric, metrics_method(req->method), status, seconds);
    log_request(req->method, api_route_label(&req->match), status, seconds);
    api_conn_end(api, req);
    atomic_fetch_sub(&api->in_flight, 1);
    pthread_mutex_destroy(&req->wait_lock);
    cJSON_Delete(req->deferred_answer); /* done, but never answered */
    api_batch_free(req->batch);
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
                        "each server thread needs room for one at least",
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
    int rc;
    api->svc = svc;
    /* Registered in the order /metrics lists them: unmatched, then the table's paths. */
    api->metric_unmatched = metrics_route(API_ROUTE_UNMATCHED);
    for (size_t r = 0; r < API_ROUTE_ROWS; r++)
        api->metric_rows[r] = metrics_route(api_routes[r].template);
    api->auth = options->auth;
    api->rate = options->rate;
    api->tls = tls;
    if ((rc = api_origin_set(api, options->cors_origin, err)) ||
        (rc = api_static_open(api, options->dashboard_dir, options->dashboard_optional, err))) {
        free(api);
        return rc;
    }
    if (options->rate > 0 && !(api->limit = ratelimit_create(options->rate))) {
        api_static_close(api);
        free(api);
        return glr_fail(err, GLR_EINVAL, "the rate limit must be above 0 and at most %g/s",
                        RATELIMIT_RATE_MAX);
    }
    unsigned request_s =
        options->request_timeout_s ? options->request_timeout_s : API_REQUEST_TIMEOUT_S;
    rc = api_conns_start(api, connections, request_s, err);
    if (!rc && (rc = api_defer_start(api, err)))
        api_conns_stop(api);
    if (rc) {
        api_conns_destroy(api);
        ratelimit_free(api->limit);
        api_static_close(api);
        free(api);
        return rc;
    }
    /* The options that depend on the command line; libmicrohttpd copies what it keeps. */
    struct MHD_OptionItem extra[10];
    size_t n = 0;
    /*
     * The limit is ours (api_conn_accept() closes a connection past it at once):
     * libmicrohttpd, at its own, would stop accepting and leave clients in the backlog.
     */
    extra[n++] = (struct MHD_OptionItem){
        MHD_OPTION_CONNECTION_LIMIT, connections + API_CONNECTIONS_SPARE * options->threads, NULL};
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
    api->daemon = MHD_start_daemon(
        flags, options->port, api_conn_accept, api, on_request, api, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, api, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, NULL, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
        MHD_OPTION_NOTIFY_CONNECTION, api_conn_notify, api, MHD_OPTION_ARRAY, extra,
        MHD_OPTION_END);
    if (!api->daemon) {
        api_defer_stop(api);
        api_conns_stop(api);
        api_conns_destroy(api);
        ratelimit_free(api->limit);
        api_static_close(api);
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
    api_defer_stop(api); /* the rewind under way ends; the queued ones are answered 503 */
    for (int waited = 0; atomic_load(&api->in_flight) > 0 && waited < API_DRAIN_MS; waited += 10) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    api_conns_stop(api);
    MHD_stop_daemon(api->daemon);
    api_conns_destroy(api);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    ratelimit_free(api->limit);
    api_static_close(api);
    free(api);
}
