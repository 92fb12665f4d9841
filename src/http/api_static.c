/*
 * The dashboard's static files (see api_int.h): HTML, CSS and JavaScript read from one
 * directory, opened once at start, and the API description. Names are single path
 * segments of a few safe characters opened relative to that directory without following
 * links, so no request reaches a file outside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http/api_int.h"

/*
 * What the dashboard's pages may load: their own scripts, styles and images, and data
 * from this origin only; no inline script or style, no plugin, no framing.
 */
#define API_STATIC_CSP                                                                             \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "                   \
    "frame-ancestors 'none'"

/* The file types served, by ending; a file of another ending is not served (404). */
static const struct {
    const char *ending;
    const char *type;
} static_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".ico", "image/x-icon"},
    {".yaml", "application/yaml; charset=utf-8"},
    {".json", "application/json"},
};

int api_static_open(struct api *api, const char *dir, bool optional, char *err)
{
    api->static_fd = -1;
    if (!dir)
        return GLR_OK;
    if (strlen(dir) > API_STATIC_DIR_MAX)
        return glr_fail(err, GLR_EINVAL, "the dashboard directory's path is longer than %d bytes",
                        API_STATIC_DIR_MAX);
    snprintf(api->static_dir, sizeof(api->static_dir), "%s", dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && !optional)
        return glr_fail(err, GLR_EINVAL, "dashboard directory %s: %s", dir, strerror(errno));
    api->static_fd = fd;
    return GLR_OK;
}

void api_static_close(struct api *api)
{
    if (api->static_fd >= 0)
        close(api->static_fd);
    api->static_fd = -1;
}

/* The Content-Type of name by its ending; NULL for a type not served. */
static const char *type_of(const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof(static_types) / sizeof(static_types[0]); i++) {
        size_t n = strlen(static_types[i].ending);
        if (len > n && strcmp(name + len - n, static_types[i].ending) == 0)
            return static_types[i].type;
    }
    return NULL;
}

/*
 * True when name is a file name the dashboard may have: 1 to API_STATIC_NAME_MAX bytes of
 * A-Z a-z 0-9 . _ -, not starting with a dot (no "..", no hidden file, no slash).
 */
static bool name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > API_STATIC_NAME_MAX || name[0] == '.')
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

/* Opens name in the directory if it is a regular file of at most API_STATIC_FILE_MAX; or -1. */
static int open_regular(int dir_fd, const char *name, uint64_t *size)
{
    /* O_NOFOLLOW: a link placed in the directory is not followed out of it. */
    int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > API_STATIC_FILE_MAX) {
        close(fd);
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

static enum MHD_Result answer_missing(struct api *api, struct MHD_Connection *conn,
                                      struct request *req, const char *name)
{
    char detail[GLR_ERR_MAX];
    if (api->static_fd < 0)
        snprintf(detail, sizeof(detail),
                 "the dashboard is not installed in %.160s (greedylrd --dashboard-dir DIR)",
                 api->static_dir[0] ? api->static_dir : "any directory");
    else
        snprintf(detail, sizeof(detail), "the dashboard has no file %.128s", name);
    return api_answer_problem(conn, req, HTTP_NOT_FOUND, "no-file", "Not found", detail, NULL, 1);
}

/*
 * Answers the file name of the dashboard's directory: its gzip-compressed copy (name.gz)
 * when the client takes gzip and there is one, else the file itself.
 */
static enum MHD_Result answer_file(struct api *api, struct MHD_Connection *conn,
                                   struct request *req, const char *name)
{
    const char *type = type_of(name);
    if (api->static_fd < 0 || !name_ok(name) || !type)
        return answer_missing(api, conn, req, name);
    const char *accept =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    uint64_t size = 0;
    int fd = -1;
    bool gzip = false;
    if (req_accepts_gzip(accept)) {
        char packed[API_STATIC_NAME_MAX + 4];
        snprintf(packed, sizeof(packed), "%s.gz", name);
        fd = open_regular(api->static_fd, packed, &size);
        gzip = fd >= 0;
    }
    if (fd < 0)
        fd = open_regular(api->static_fd, name, &size);
    if (fd < 0)
        return answer_missing(api, conn, req, name);
    struct api_answer a = {
        .status = HTTP_OK,
        .type = type,
        .file = true,
        .fd = fd,
        .size = size,
        .encoding = gzip ? "gzip" : NULL,
        .page = true,
    };
    return api_answer(conn, req, &a);
}

/* GET /: the dashboard's page. */
enum MHD_Result api_get_dashboard(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    return answer_file(api, conn, req, "index.html");
}

/* GET /ui/{name}: a script, style sheet or image of the dashboard. */
enum MHD_Result api_get_asset(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    return answer_file(api, conn, req, req->match.id);
}

/* GET /v1/openapi.yaml: the API description, installed beside the dashboard. */
enum MHD_Result api_get_openapi(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    return answer_file(api, conn, req, "openapi.yaml");
}

const char *api_static_policy(void)
{
    return API_STATIC_CSP;
}
