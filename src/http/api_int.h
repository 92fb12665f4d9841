/*
 * The internals of the HTTP layer, shared by its files and by no one else: the server, one
 * request and how it waits, the route table, and the functions each file gives the others.
 * api.h is the layer's interface; nothing here is part of it.
 */
#ifndef GLR_API_INT_H
#define GLR_API_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "http/api.h"
#include "http/auth.h"
#include "http/ratelimit.h"
#include "http/req.h"
#include "svc/svc.h"

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
    HTTP_URI_TOO_LONG = 414,
    HTTP_UNSUPPORTED_MEDIA_TYPE = 415,
    HTTP_UNPROCESSABLE = 422,
    HTTP_TOO_MANY_REQUESTS = 429,
    HTTP_INTERNAL_ERROR = 500,
    HTTP_UNAVAILABLE = 503,
    HTTP_INSUFFICIENT_STORAGE = 507,
};

/* The Content-Type of a plain-text answer. */
#define API_TEXT_TYPE "text/plain; charset=utf-8"

/* Longest method name kept for the request log. */
#define API_METHOD_MAX 16
/*
 * Longest path segment taken as a job id or token name: longer than any valid one, so
 * that the service can say what is wrong with it (422 on create, 404 elsewhere).
 */
#define API_ID_SEGMENT_MAX 1024
/* What logs and metrics call a request whose path no route has. */
#define API_ROUTE_UNMATCHED "unmatched"
/* Rows of the route table (api_route.c checks it at compile time). */
#define API_ROUTE_ROWS 24
/* Longest Allow header: every method of one path, "GET, HEAD, PUT, PATCH, DELETE". */
#define API_ALLOW_MAX 64
/* Longest path of the dashboard's directory. */
#define API_STATIC_DIR_MAX 4096
/* Longest name of a dashboard file (one path segment); longer ones are 404. */
#define API_STATIC_NAME_MAX 64
/* Largest dashboard file served, in bytes; a larger one is 404. */
#define API_STATIC_FILE_MAX (16 * 1024 * 1024)
/* Longest --cors-origin, "https://host:port". */
#define API_ORIGIN_MAX 256

struct api;
struct request;

/* What serves one route and method: parse, validate, call the service, answer. */
typedef enum MHD_Result api_handler(struct api *api, struct MHD_Connection *conn,
                                    struct request *req);
/*
 * Work of a request done on the thread of long requests (api_defer.c): returns a status,
 * err its message; an answer to send goes in req->deferred_answer.
 */
typedef int api_deferred_fn(struct api *api, struct request *req, char *err);

/*
 * One row of the route table: a path template and a method, whether it takes a body, who
 * may, and who serves.
 */
struct api_route {
    const char *template; /* "/v1/jobs/{id}": a {...} segment is captured; also the label */
    const char *method;   /* "GET" serves HEAD too */
    bool takes_body;      /* false: a request that declares a body is refused unread */
    bool answers_text;    /* answers text/plain when asked (req_wants_text), for shell scripts */
    enum auth_role role;  /* the least role that may */
    api_handler *handler;
};

/* The route table, in the order metrics list the routes (api_route.c). */
extern const struct api_route api_routes[];

/* What the route table says of one request, decided once on its first call. */
struct api_match {
    const struct api_route *path;    /* first row of the path's template; NULL: no such path */
    const struct api_route *route;   /* the row of the path and method; NULL: not served */
    char id[API_ID_SEGMENT_MAX + 1]; /* the {...} segment of the URL, "" when none */
};

/*
 * The open connections (api_conn.c). Lock order: lock, then a request's wait_lock, then
 * libmicrohttpd's own; the service is never called with lock held.
 */
struct api_conn;
struct pollfd;
struct api_conns {
    pthread_mutex_t lock;    /* guards the list and count, and each api_conn's fields */
    pthread_cond_t wake;     /* monotonic: the watcher's sleep, cut short to stop */
    pthread_cond_t unpinned; /* the watcher let go of the requests it was cancelling */
    struct api_conn *head;   /* lock: every connection libmicrohttpd started */
    size_t count;            /* lock: connections in the list */
    atomic_uint open;        /* connections started and not closed (the list and more) */
    unsigned max;            /* fixed: connections open at once; more are closed at once */
    int64_t request_ms;      /* fixed: how long a request may take to arrive */
    bool stopping;           /* lock */
    bool started;            /* fixed after api_conns_start() */
    pthread_t watcher;
    struct pollfd *polls;     /* the watcher's own, cap entries */
    struct api_conn **pinned; /* the watcher's own, cap entries */
    size_t cap;
};

/*
 * The lanes of long requests (api_defer.c), each a thread and its queue: rewinds at the
 * daemon's priority, and learning in the background, at a lower one.
 */
enum api_defer_lane { API_DEFER_LONG, API_DEFER_BACKGROUND, API_DEFER_LANES };
struct request;
struct api;
struct api_defer {
    pthread_mutex_t lock;         /* guards the queue and stopping */
    pthread_cond_t wake;          /* work queued, or stopping */
    struct request *head, **tail; /* lock: queued requests, oldest first */
    bool stopping;                /* lock */
    bool started;                 /* fixed after api_defer_start() */
    struct api *api;              /* fixed: whose */
    int nice;                     /* fixed: the thread's nice value */
    pthread_t thread;
};

struct api {
    struct svc *svc;
    struct api_conns conns;
    struct api_defer defer[API_DEFER_LANES];
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_int in_flight;            /* requests begun and not yet completed */
    int metric_rows[API_ROUTE_ROWS]; /* metrics_route() of each row's template */
    int metric_unmatched;            /* metrics_route() of a path that no row has */
    struct auth *auth;               /* NULL: no token is asked for */
    struct ratelimit *limit;         /* NULL: no rate limit */
    double rate;
    bool tls;                                /* fixed: served over HTTPS */
    int static_fd;                           /* fixed: the dashboard's directory; -1: none */
    char static_dir[API_STATIC_DIR_MAX + 1]; /* fixed: its path, for messages */
    char cors_origin[API_ORIGIN_MAX + 1];    /* fixed: the origin let in; "": none */
};

/* Where a request that waits for other ranks (or for a decision) stands. */
enum wait_state {
    WAIT_NONE,      /* not waiting */
    WAIT_PENDING,   /* registered with the service, connection not suspended yet */
    WAIT_SUSPENDED, /* connection suspended until the service answers */
    WAIT_DONE,      /* the service answered: reply with what it said */
};

/*
 * One request being received: its route, its body (bounded by API_BODY_MAX), and, when
 * its answer comes later, how it waits.
 *
 * Waiting (api_jobs.c): the service calls waiter.done exactly once, on any thread, holding
 * none of its locks (svc.h). waiter_done() relies on no more than that it is not called
 * under wait_lock: it takes only wait_lock, never calls the service, and calls
 * MHD_resume_connection() after releasing it; resuming only flags the connection and
 * wakes libmicrohttpd's polling thread (it never waits for a handler). Lock order:
 * wait_lock, then libmicrohttpd's own (MHD_suspend_connection() is called with wait_lock
 * held).
 */
struct request {
    bool begun; /* on_request has set it up (see on_uri) */
    /* The parameters and bytes of a query on_uri cut off, to answer 414; else 0. */
    size_t cut_params;
    size_t cut_bytes;
    struct timespec start;
    char method[API_METHOD_MAX + 1];
    char *body;
    size_t len;
    size_t cap;
    bool too_big;
    size_t dropped; /* bytes of a too big body read and dropped */
    bool answered;  /* an answer is queued */
    bool text;      /* answer in plain text, problems included (api_route.answers_text) */
    unsigned status;
    const char *cors_origin; /* the api's named origin, which sent it; NULL: none */

    struct api_conn *link; /* the connection's entry (api_conn.c); NULL: not watched */
    atomic_bool gone;      /* the client hung up while the request waited: close, not answer */

    struct svc_waiter waiter; /* waiter_done() finds the request from it (offsetof) */
    struct MHD_Connection *conn;
    pthread_mutex_t wait_lock; /* guards wait_state and the wait_ fields below */
    enum wait_state wait_state;
    bool lookup; /* an lr lookup, else a report */
    int wait_status;
    /* Work done off the server thread (api_defer.c); NULL: none. wait_lock, set once. */
    api_deferred_fn *deferred;
    struct request *deferred_next; /* the defer queue's lock */
    int64_t deferred_step;         /* the work's argument (a rewind's to_step) */
    cJSON *deferred_answer;        /* what the work answers (owned; freed with the request) */
    bool deferred_created;         /* the work made something: 201, not 200 */
    struct api_batch *batch;       /* a batch of reports (api_batch.c); owned, NULL: none */

    /*
     * The large fields, last: a new request is zeroed only up to here (on_request),
     * since each of these is written before it is read, and zeroing two kilobytes per
     * request was a tenth of the memset a report costs.
     */
    struct svc_report_result wait_result; /* read only when wait_status is GLR_OK */
    char wait_err[GLR_ERR_MAX];           /* written with wait_status */
    struct api_match match; /* set on the first call: admission, dispatch, log, metrics */
};

/* What an answer carries; api_answer() builds the response from it and queues it. */
struct api_answer {
    unsigned status;
    const char *type;       /* Content-Type; NULL for an answer without a body */
    char *text;             /* the body (malloc'd; api_answer() frees it); NULL: none */
    const char *location;   /* Location; NULL: none */
    const char *allow;      /* Allow; NULL: none */
    unsigned retry_after_s; /* Retry-After in seconds; 0: none */
    /* A body streamed in chunks instead of text (reader_free(reader_cls) runs always). */
    MHD_ContentReaderCallback reader;
    MHD_ContentReaderFreeCallback reader_free;
    void *reader_cls;
    /* A body read from a file instead (api_answer() closes fd whatever happens). */
    bool file;
    int fd;
    uint64_t size;
    const char *encoding; /* Content-Encoding; NULL: none */
    bool page;            /* a dashboard file: with its Content-Security-Policy */
};

/* api.c */

/* The body of req with its Content-Type, for the parsers of req.h. */
struct req_body api_body_of(struct MHD_Connection *conn, const struct request *req);
/* The query string of conn, for the parsers of req.h. */
struct req_query api_query_of(struct MHD_Connection *conn);

/* api_defer.c */

/* Starts the threads of long requests. Returns GLR_OK or GLR_ENOMEM. */
int api_defer_start(struct api *api, char *err);
/*
 * Finishes the work begun, answers what is queued 503 without doing it, and stops the
 * thread; before MHD_stop_daemon(), which must find no connection suspended.
 */
void api_defer_stop(struct api *api);
/*
 * Has fn do req's work on the thread of lane, and suspends req's connection until it is
 * done (then it answers what fn said, through api_answer_waited()).
 */
enum MHD_Result api_defer(struct api *api, struct MHD_Connection *conn, struct request *req,
                          enum api_defer_lane lane, api_deferred_fn *fn);

/* api_conn.c */

/* How often the watcher looks at the connections, in milliseconds. */
#define API_WATCH_MS 100
/*
 * Connections libmicrohttpd may hold per thread beyond --max-connections: at its own
 * limit it stops accepting, and new clients would wait in the listen queue instead of
 * being closed at once by api_conn_accept().
 */
#define API_CONNECTIONS_SPARE 8

/*
 * Starts the watcher: every API_WATCH_MS it shuts down a connection whose request has
 * not arrived whole within request_timeout_s (from its accept, or from the end of the
 * previous request on it), and gives up the waits of suspended requests whose client hung
 * up (svc_cancel_waiter()), so that their connections close. max is the most connections
 * open at once. Returns GLR_OK or GLR_ENOMEM.
 */
int api_conns_start(struct api *api, unsigned max, unsigned request_timeout_s, char *err);
/* Stops the watcher; before MHD_stop_daemon(). */
void api_conns_stop(struct api *api);
/* Frees what api_conns_start() made; after MHD_stop_daemon(). */
void api_conns_destroy(struct api *api);
/* libmicrohttpd's accept policy (MHD_AcceptPolicyCallback): none past conns.max. */
enum MHD_Result api_conn_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION: a connection started or closed. */
void api_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);
/* A new request on conn: req->link is set, and the watcher may look at req. */
void api_conn_begin(struct api *api, struct MHD_Connection *conn, struct request *req);
/* The request has arrived whole (or is answered): its deadline no longer applies. */
void api_conn_arrived(struct request *req);
/* The request is over (before it is freed); the next one on the connection gets a deadline. */
void api_conn_end(struct api *api, struct request *req);

/* api_route.c */

/* Matches url and method against the route table into m (every field set). */
void api_route_match(const char *url, const char *method, struct api_match *m);
/*
 * The least role a matched request needs: none for a path no route has (everyone gets
 * its 404), the row's role, and admin for a method the path does not serve, so that a
 * method added without its row is closed rather than open.
 */
enum auth_role api_route_role(const struct api_match *m);
/*
 * True when the matched route reads a request body; false for the routes that take none,
 * a path no route has and a method the path does not serve.
 */
bool api_route_takes_body(const struct api_match *m);
/* The route's template for logs and metrics: API_ROUTE_UNMATCHED for a path no route has. */
const char *api_route_label(const struct api_match *m);
/* The methods path serves, as an Allow header: "GET, HEAD, POST". */
void api_route_allow(const struct api_route *path, char out[API_ALLOW_MAX + 1]);
/* Answers req by its matched route: the handler, 404 (no such path) or 405 (with Allow). */
enum MHD_Result api_route_dispatch(struct api *api, struct MHD_Connection *conn,
                                   struct request *req);

/* api_answer.c */

/*
 * Builds the response a describes, adds its headers (and WWW-Authenticate to a 401),
 * queues it, and records in req that it is answered. a->text (or a->reader_cls, through
 * a->reader_free) is released whatever happens. Returns libmicrohttpd's result.
 */
enum MHD_Result api_answer(struct MHD_Connection *conn, struct request *req,
                           const struct api_answer *a);
/* Answers tree (deleted here) as one line of JSON; location is NULL or a Location. */
enum MHD_Result api_answer_json(struct MHD_Connection *conn, struct request *req, unsigned status,
                                cJSON *tree, const char *location);
/*
 * An RFC 9457 problem: type (from slug), title, status and a detail that names what was
 * wrong; allow is NULL or an Allow header. A 429 or 503 says when to come back
 * (Retry-After: retry_after_s, at least 1).
 */
enum MHD_Result api_answer_problem(struct MHD_Connection *conn, struct request *req,
                                   unsigned status, const char *slug, const char *title,
                                   const char *detail, const char *allow, unsigned retry_after_s);
/* Answers a failed call: rc picks the status from the one table, err is the detail. */
enum MHD_Result api_answer_status(struct MHD_Connection *conn, struct request *req, int rc,
                                  const char *err);
/* Answers 204 with no body, and Retry-After when retry_after_s is not 0. */
enum MHD_Result api_answer_no_content(struct MHD_Connection *conn, struct request *req,
                                      unsigned retry_after_s);

/* api_jobs.c */

api_handler api_list_jobs;
api_handler api_post_job;
api_handler api_put_job;
api_handler api_get_job;
api_handler api_patch_job;
api_handler api_delete_job;
api_handler api_post_report;
api_handler api_get_history;
api_handler api_get_ranks;
api_handler api_post_rewind;
api_handler api_get_lr;
/* The answer of a report or an lr lookup: {"job","step","lr","event"} and what else applies. */
cJSON *api_decision_json(const char *id, const struct svc_report_result *r);
/* A problem+json object for a status of the service and its message; *http its status. */
cJSON *api_problem_of_status(int rc, const char *err, unsigned *http);
/* Marks req as waiting for the service (WAIT_PENDING) before it is called. */
void api_wait_begin(struct request *req, struct MHD_Connection *conn);
/* Answers a request whose wait is over (wait_state WAIT_DONE) with what the service said. */
enum MHD_Result api_answer_waited(struct MHD_Connection *conn, struct request *req);
/*
 * Completes a waiting request (wait_state WAIT_PENDING or WAIT_SUSPENDED) with status, a
 * result (NULL: none) and err, and resumes its connection if it is suspended; from any
 * thread, with wait_lock not held. req may be freed at once after: it is not touched.
 */
void api_wait_complete(struct request *req, int status, const struct svc_report_result *result,
                       const char *err);
/*
 * Suspends req's connection until api_wait_complete(), unless that came already (then it
 * answers at once).
 */
enum MHD_Result api_wait_suspend(struct MHD_Connection *conn, struct request *req);

/* api_batch.c */

api_handler api_post_reports;
/* The answer of a batch whose every report has its result. */
enum MHD_Result api_answer_batch(struct MHD_Connection *conn, struct request *req);
/*
 * Gives up the reports of req's batch that still wait, as the watcher gives up a single
 * report whose client went away: each is answered GLR_EBUSY, and the last completes req.
 * From any thread holding no lock of the service.
 */
void api_batch_cancel(struct api *api, struct request *req);
/* Frees a batch; NULL is accepted. */
void api_batch_free(struct api_batch *batch);

/* api_families.c */

api_handler api_list_families;
api_handler api_get_family;
api_handler api_learn_family;

/* api_tokens.c */

api_handler api_list_tokens;
api_handler api_create_token;
api_handler api_revoke_token;

/* api_static.c */

/*
 * Opens dir (NULL: none) as the dashboard's directory. A directory that does not open is
 * GLR_EINVAL, unless optional: then the dashboard's routes answer 404 saying so.
 */
int api_static_open(struct api *api, const char *dir, bool optional, char *err);
/* Closes what api_static_open() opened. */
void api_static_close(struct api *api);
/* The Content-Security-Policy of the dashboard's files. */
const char *api_static_policy(void);
api_handler api_get_dashboard;
api_handler api_get_asset;
api_handler api_get_openapi;

/* api_origin.c */

/* Keeps origin (NULL: none) as the one other origin let in; GLR_EINVAL if it is not one. */
int api_origin_set(struct api *api, const char *origin, char *err);
/*
 * Refuses (403) a request whose Origin is neither this server's nor the one named, and
 * answers the named origin's preflights; for the named origin, req->cors_origin is set so
 * that the answer carries the CORS headers. Returns true to go on; else *result is set.
 */
bool api_origin_admit(struct api *api, struct MHD_Connection *conn, struct request *req,
                      enum MHD_Result *result);

/* api_ops.c */

api_handler api_get_health;
api_handler api_get_ready;
api_handler api_get_metrics;

#endif
