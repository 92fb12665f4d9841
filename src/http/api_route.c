/*
 * The routes of the API (see api_int.h): one table of path template, method, least role
 * and handler, and the matcher that reads a request's URL against it once. Admission,
 * dispatch, the request log, metrics and the 405 answer all read the same row.
 */
#include <stdio.h>
#include <string.h>

#include "http/api_int.h"

/*
 * One row per route and method, a path's rows together, GET first where there is one
 * (the Allow header lists them in this order), whether it takes a request body, and whether
 * it may answer in plain text. Metrics list the paths in the order they first appear here,
 * so a new path goes after the others.
 */
const struct api_route api_routes[] = {
    {"/healthz", "GET", false, false, AUTH_NONE, api_get_health},
    {"/readyz", "GET", false, false, AUTH_NONE, api_get_ready},
    {"/metrics", "GET", false, false, AUTH_READER, api_get_metrics},
    {"/v1/jobs", "GET", false, false, AUTH_READER, api_list_jobs},
    {"/v1/jobs", "POST", true, false, AUTH_WRITER, api_post_job},
    {"/v1/jobs/{id}", "GET", false, false, AUTH_READER, api_get_job},
    {"/v1/jobs/{id}", "PUT", true, false, AUTH_WRITER, api_put_job},
    {"/v1/jobs/{id}", "PATCH", true, false, AUTH_WRITER, api_patch_job},
    {"/v1/jobs/{id}", "DELETE", false, false, AUTH_ADMIN, api_delete_job},
    {"/v1/jobs/{id}/reports", "POST", true, true, AUTH_WRITER, api_post_report},
    {"/v1/jobs/{id}/history", "GET", false, false, AUTH_READER, api_get_history},
    {"/v1/jobs/{id}/rewind", "POST", true, false, AUTH_WRITER, api_post_rewind},
    {"/v1/jobs/{id}/lr", "GET", false, true, AUTH_READER, api_get_lr},
    {"/v1/tokens", "GET", false, false, AUTH_ADMIN, api_list_tokens},
    {"/v1/tokens", "POST", true, false, AUTH_ADMIN, api_create_token},
    {"/v1/tokens/{name}", "DELETE", false, false, AUTH_ADMIN, api_revoke_token},
    {"/v1/families", "GET", false, false, AUTH_READER, api_list_families},
    {"/v1/families/{name}", "GET", false, false, AUTH_READER, api_get_family},
    /* The dashboard's files and the API description: no datum, no token. */
    {"/", "GET", false, false, AUTH_NONE, api_get_dashboard},
    {"/ui/{name}", "GET", false, false, AUTH_NONE, api_get_asset},
    {"/v1/openapi.yaml", "GET", false, false, AUTH_NONE, api_get_openapi},
    {"/v1/jobs/{id}/ranks", "GET", false, false, AUTH_READER, api_get_ranks},
    {"/v1/families/{name}/learn", "POST", false, false, AUTH_ADMIN, api_learn_family},
    {"/v1/reports", "POST", true, false, AUTH_WRITER, api_post_reports},
};

_Static_assert(sizeof(api_routes) / sizeof(api_routes[0]) == API_ROUTE_ROWS,
               "API_ROUTE_ROWS must count the rows of api_routes");

/*
 * True when url is a path of template; id receives its {...} segment (if any), which must
 * be 1 to API_ID_SEGMENT_MAX bytes without a slash. The collections under /v1/ (a template
 * without a parameter) take a trailing slash too, as they always have; other paths match
 * only as written.
 */
static bool path_matches(const char *template, const char *url, char id[API_ID_SEGMENT_MAX + 1])
{
    const char *t = template;
    const char *u = url;
    bool has_param = false;
    while (*t) {
        if (*t != '{') {
            if (*t++ != *u++)
                return false;
            continue;
        }
        size_t len = strcspn(u, "/");
        if (len == 0 || len > API_ID_SEGMENT_MAX)
            return false;
        memcpy(id, u, len);
        id[len] = '\0';
        has_param = true;
        u += len;
        const char *close = strchr(t, '}');
        t = close ? close + 1 : t + strlen(t);
    }
    if (*u == '\0')
        return true;
    return !has_param && strncmp(template, "/v1/", 4) == 0 && strcmp(u, "/") == 0;
}

/* The row of path's template for method (HEAD as GET); NULL when it has none. */
static const struct api_route *route_for(const struct api_route *path, const char *method)
{
    if (strcmp(method, "HEAD") == 0)
        method = "GET";
    for (size_t i = (size_t)(path - api_routes); i < API_ROUTE_ROWS; i++)
        if (strcmp(api_routes[i].template, path->template) == 0 &&
            strcmp(api_routes[i].method, method) == 0)
            return &api_routes[i];
    return NULL;
}

void api_route_match(const char *url, const char *method, struct api_match *m)
{
    m->path = NULL;
    m->route = NULL;
    m->id[0] = '\0';
    char id[API_ID_SEGMENT_MAX + 1] = "";
    for (size_t i = 0; i < API_ROUTE_ROWS && !m->path; i++) {
        /* A path's later rows have the same template: it was tried at its first. */
        if (i > 0 && strcmp(api_routes[i].template, api_routes[i - 1].template) == 0)
            continue;
        if (path_matches(api_routes[i].template, url, id))
            m->path = &api_routes[i];
    }
    if (!m->path)
        return;
    snprintf(m->id, sizeof(m->id), "%s", id);
    m->route = route_for(m->path, method);
}

bool api_route_takes_body(const struct api_match *m)
{
    return m->route && m->route->takes_body;
}

enum auth_role api_route_role(const struct api_match *m)
{
    if (!m->path)
        return AUTH_NONE;
    return m->route ? m->route->role : AUTH_ADMIN;
}

const char *api_route_label(const struct api_match *m)
{
    return m->path ? m->path->template : API_ROUTE_UNMATCHED;
}

void api_route_allow(const struct api_route *path, char out[API_ALLOW_MAX + 1])
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = (size_t)(path - api_routes); i < API_ROUTE_ROWS; i++) {
        const struct api_route *r = &api_routes[i];
        if (strcmp(r->template, path->template) != 0)
            continue;
        bool get = strcmp(r->method, "GET") == 0;
        int n = snprintf(out + len, API_ALLOW_MAX + 1 - len, "%s%s%s", len ? ", " : "", r->method,
                         get ? ", HEAD" : "");
        if (n < 0 || (size_t)n > API_ALLOW_MAX - len)
            break; /* cannot happen with the methods above; a cut list is still an answer */
        len += (size_t)n;
    }
}

enum MHD_Result api_route_dispatch(struct api *api, struct MHD_Connection *conn,
                                   struct request *req)
{
    const struct api_match *m = &req->match;
    if (m->route)
        return m->route->handler(api, conn, req);
    if (!m->path)
        return api_answer_problem(conn, req, HTTP_NOT_FOUND, "no-route", "Not found",
                                  "no such route; the API is under /v1/jobs", NULL, 1);
    char allow[API_ALLOW_MAX + 1];
    api_route_allow(m->path, allow);
    char detail[96 + API_ALLOW_MAX];
    snprintf(detail, sizeof(detail), "%.16s is not allowed here; allowed: %s", req->method, allow);
    return api_answer_problem(conn, req, HTTP_METHOD_NOT_ALLOWED, "method", "Method not allowed",
                              detail, allow, 1);
}
