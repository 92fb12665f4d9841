/*
 * Cross-origin requests (see api_int.h): a request a browser sends from a page of another
 * origin is refused, unless the operator named that origin (--cors-origin); that origin's
 * requests get the CORS headers, and its preflights (OPTIONS) are answered here.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/api_int.h"

/* How long a browser may keep a preflight's answer, in seconds. */
#define API_CORS_MAX_AGE_S "600"

int api_origin_set(struct api *api, const char *origin, char *err)
{
    api->cors_origin[0] = '\0';
    if (!origin)
        return GLR_OK;
    size_t len = strlen(origin);
    const char *host = strstr(origin, "://");
    bool scheme_ok =
        host && (strncmp(origin, "http://", 7) == 0 || strncmp(origin, "https://", 8) == 0);
    /* An origin is scheme://host[:port]: no path, no trailing slash, no space. */
    if (len == 0 || len > API_ORIGIN_MAX || !scheme_ok || host[3] == '\0' ||
        strpbrk(host + 3, "/?# \t\r\n,") != NULL)
        return glr_fail(err, GLR_EINVAL,
                        "the CORS origin must be scheme://host[:port] (http or https, no path), "
                        "at most %d bytes",
                        API_ORIGIN_MAX);
    memcpy(api->cors_origin, origin, len + 1);
    return GLR_OK;
}

/* True when origin is this server's own: the scheme it serves and the Host asked for. */
static bool same_origin(const struct api *api, struct MHD_Connection *conn, const char *origin)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *scheme = api->tls ? "https://" : "http://";
    size_t n = strlen(scheme);
    return host && strncmp(origin, scheme, n) == 0 && strcasecmp(origin + n, host) == 0;
}

/* Answers the preflight of the named origin: which methods and headers it may send. */
static enum MHD_Result answer_preflight(struct MHD_Connection *conn, struct request *req)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    char allow[API_ALLOW_MAX + 1] = "";
    if (req->match.path)
        api_route_allow(req->match.path, allow);
    MHD_add_response_header(response, "Access-Control-Allow-Origin", req->cors_origin);
    MHD_add_response_header(response, "Access-Control-Allow-Methods", allow);
    MHD_add_response_header(response, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, Accept");
    MHD_add_response_header(response, "Access-Control-Max-Age", API_CORS_MAX_AGE_S);
    MHD_add_response_header(response, "Vary", "Origin");
    enum MHD_Result result = MHD_queue_response(conn, HTTP_NO_CONTENT, response);
    MHD_destroy_response(response);
    req->answered = result == MHD_YES;
    req->status = HTTP_NO_CONTENT;
    return result;
}

bool api_origin_admit(struct api *api, struct MHD_Connection *conn, struct request *req,
                      enum MHD_Result *result)
{
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!origin)
        return true; /* not sent by a browser's cross-origin request */
    if (api->cors_origin[0] && strcmp(origin, api->cors_origin) == 0) {
        req->cors_origin = api->cors_origin;
        if (strcmp(req->method, "OPTIONS") == 0 && req->match.path) {
            *result = answer_preflight(conn, req);
            return false;
        }
        return true;
    }
    if (same_origin(api, conn, origin))
        return true;
    char detail[GLR_ERR_MAX + API_ORIGIN_MAX];
    snprintf(detail, sizeof(detail),
             "a request from origin %.256s is refused: greedylrd --cors-origin ORIGIN lets one "
             "other origin in",
             origin);
    *result = api_answer_problem(conn, req, HTTP_FORBIDDEN, "cross-origin",
                                 "Cross-origin request refused", detail, NULL, 1);
    return false;
}
