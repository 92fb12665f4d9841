/*
 * Lock-free metrics and their Prometheus text (see metrics.h). Every counter is a C11
 * atomic in static storage, so that counting never takes a lock or allocates; only naming
 * a route (at start-up) and rendering (at a scrape) do more.
 */
#include "base/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/jsonx.h"
#include "config.h"

/* Distinct status codes counted per route and method; more are counted as "other". */
#define METRICS_STATUS_SLOTS 16

/* Upper bounds of the request latency buckets, in seconds (long polls wait up to 60 s). */
static const double request_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
#define REQUEST_BUCKETS (sizeof(request_bounds) / sizeof(request_bounds[0]))

/* Upper bounds of the commit latency buckets, in seconds. */
static const double commit_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                       0.01,   0.025,   0.05,   0.1,   0.25,   1};
#define COMMIT_BUCKETS (sizeof(commit_bounds) / sizeof(commit_bounds[0]))

/* Upper bounds of the group-commit batch size buckets, in reports. */
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
#define BATCH_BUCKETS (sizeof(batch_bounds) / sizeof(batch_bounds[0]))

static const char *const method_names[METRICS_METHODS] = {"GET",   "HEAD",   "POST", "PUT",
                                                          "PATCH", "DELETE", "OTHER"};

/* A status code and its count; code holds status + 1, so that 0 marks a free slot. */
struct status_slot {
    atomic_uint code;
    atomic_uint_fast64_t count;
};

/*
 * A histogram: counts per bucket (not cumulative; the last is +Inf) and the sum of the
 * observed values in integer units (nanoseconds, or reports), so that adding is one
 * atomic operation.
 */
struct histogram {
    atomic_uint_fast64_t buckets[REQUEST_BUCKETS + 1];
    atomic_uint_fast64_t sum_units;
};

struct route_metrics {
    struct status_slot statuses[METRICS_METHODS][METRICS_STATUS_SLOTS];
    atomic_uint_fast64_t other_status[METRICS_METHODS];
    struct histogram latency;
};

static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static char route_labels[METRICS_ROUTES_MAX][METRICS_ROUTE_LABEL_MAX + 1];
static atomic_int route_count;
static struct route_metrics routes[METRICS_ROUTES_MAX];
static struct histogram commit_latency;
static struct histogram commit_batch;
static atomic_uint_fast64_t commits;

int metrics_route(const char *label)
{
    if (strlen(label) > METRICS_ROUTE_LABEL_MAX)
        return -1;
    pthread_mutex_lock(&names_lock);
    int n = atomic_load(&route_count);
    int found = -1;
    for (int i = 0; i < n && found < 0; i++)
        if (strcmp(route_labels[i], label) == 0)
            found = i;
    if (found < 0 && n < METRICS_ROUTES_MAX) {
        snprintf(route_labels[n], sizeof(route_labels[n]), "%s", label);
        /* Published after the label is written: a scrape reads the count first. */
        atomic_store(&route_count, n + 1);
        found = n;
    }
    pthread_mutex_unlock(&names_lock);
    return found;
}

enum metrics_method metrics_method(const char *name)
{
    for (int i = 0; i < METRICS_OTHER; i++)
        if (strcmp(name, method_names[i]) == 0)
            return (enum metrics_method)i;
    return METRICS_OTHER;
}

/* Index of the first bound at or above value, or count for +Inf. */
static size_t bucket_of(const double *bounds, size_t count, double value)
{
    size_t i = 0;
    while (i < count && value > bounds[i])
        i++;
    return i;
}

static void observe(struct histogram *h, const double *bounds, size_t count, double value,
                    double units)
{
    if (!(value >= 0))
        value = 0;
    atomic_fetch_add_explicit(&h->buckets[bucket_of(bounds, count, value)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_units, (uint_fast64_t)(value * units + 0.5),
                              memory_order_relaxed);
}

/* Counts status in the slot that holds it, claiming a free slot for a new code. */
static void count_status(struct route_metrics *r, enum metrics_method method, unsigned status)
{
    struct status_slot *slots = r->statuses[method];
    unsigned want = status + 1;
    for (int i = 0; i < METRICS_STATUS_SLOTS; i++) {
        unsigned code = atomic_load(&slots[i].code);
        if (code == 0) {
            unsigned expected = 0;
            /* A lost race leaves the winner's code in expected: it may be ours. */
            if (atomic_compare_exchange_strong(&slots[i].code, &expected, want))
                code = want;
            else
                code = expected;
        }
        if (code == want) {
            atomic_fetch_add_explicit(&slots[i].count, 1, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&r->other_status[method], 1, memory_order_relaxed);
}

void metrics_observe_request(int route, enum metrics_method method, unsigned status, double seconds)
{
    if (route < 0 || route >= atomic_load(&route_count) || method >= METRICS_METHODS)
        return;
    struct route_metrics *r = &routes[route];
    count_status(r, method, status);
    observe(&r->latency, request_bounds, REQUEST_BUCKETS, seconds, 1e9);
}

void metrics_observe_commit(double seconds, unsigned batch_size)
{
    atomic_fetch_add_explicit(&commits, 1, memory_order_relaxed);
    observe(&commit_latency, commit_bounds, COMMIT_BUCKETS, seconds, 1e9);
    observe(&commit_batch, batch_bounds, BATCH_BUCKETS, (double)batch_size, 1);
}

/* ---- rendering ------------------------------------------------------------------------- */

/* The text being rendered, bounded by METRICS_TEXT_MAX; failed is sticky. */
struct text {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        if (cap > METRICS_TEXT_MAX) {
            t->failed = true;
            return;
        }
        char *data = realloc(t->data, cap);
        if (!data) {
            t->failed = true;
            return;
        }
        t->data = data;
        t->cap = cap;
    }
}

/* Writes a label value with \, " and newline escaped, as the format asks. */
static void put_label(struct text *t, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            put(t, "\\\\");
        else if (*p == '"')
            put(t, "\\\"");
        else if (*p == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *p);
    }
}

static void put_header(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A number in its shortest form that reads back exactly ("10", "0.0025", "1.5e-07"). */
static void put_number(struct text *t, double value)
{
    if (isnan(value))
        put(t, "NaN");
    else if (isinf(value))
        put(t, value > 0 ? "+Inf" : "-Inf");
    else
        put(t, "%s", jsonx_text(value).s);
}

/*
 * Writes the samples of one histogram; label is "" or `name="value",` (with the comma)
 * put before le. Cumulative counts and _count are computed from one reading of the
 * buckets, so that a scrape is self-consistent even while other threads count.
 */
static void put_histogram(struct text *t, const char *name, const char *route,
                          const struct histogram *h, const double *bounds, size_t count,
                          double units)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= count; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        put(t, "%s_bucket{", name);
        if (route) {
            put(t, "route=\"");
            put_label(t, route);
            put(t, "\",");
        }
        put(t, "le=\"");
        if (i < count)
            put_number(t, bounds[i]);
        else
            put(t, "+Inf");
        put(t, "\"} %llu\n", (unsigned long long)cumulative);
    }
    double sum = (double)atomic_load_explicit(&h->sum_units, memory_order_relaxed) / units;
    const char *open = route ? "{route=\"" : "";
    const char *close = route ? "\"}" : "";
    put(t, "%s_sum%s", name, open);
    if (route)
        put_label(t, route);
    put(t, "%s ", close);
    put_number(t, sum);
    put(t, "\n");
    put(t, "%s_count%s", name, open);
    if (route)
        put_label(t, route);
    put(t, "%s %llu\n", close, (unsigned long long)cumulative);
}

static void put_requests(struct text *t, int nroutes)
{
    put_header(t, "greedylr_http_requests_total", "counter",
               "HTTP requests answered, by route template, method and status code "
               "(status 0: the client went away before an answer).");
    for (int r = 0; r < nroutes; r++) {
        for (int m = 0; m < METRICS_METHODS; m++) {
            for (int i = 0; i < METRICS_STATUS_SLOTS; i++) {
                const struct status_slot *slot = &routes[r].statuses[m][i];
                unsigned code = atomic_load(&slot->code);
                if (code == 0)
                    break;
                put(t, "greedylr_http_requests_total{route=\"");
                put_label(t, route_labels[r]);
                put(t, "\",method=\"%s\",status=\"%u\"} %llu\n", method_names[m], code - 1,
                    (unsigned long long)atomic_load(&slot->count));
            }
            uint64_t other = atomic_load(&routes[r].other_status[m]);
            if (other) {
                put(t, "greedylr_http_requests_total{route=\"");
                put_label(t, route_labels[r]);
                put(t, "\",method=\"%s\",status=\"other\"} %llu\n", method_names[m],
                    (unsigned long long)other);
            }
        }
    }
    put_header(t, "greedylr_http_request_duration_seconds", "histogram",
               "Time from the start of a request to its completion, long polls included.");
    for (int r = 0; r < nroutes; r++)
        put_histogram(t, "greedylr_http_request_duration_seconds", route_labels[r],
                      &routes[r].latency, request_bounds, REQUEST_BUCKETS, 1e9);
}

static void put_gauge(struct text *t, const char *name, const char *help, int64_t value)
{
    if (value < 0)
        return;
    put_header(t, name, "gauge", help);
    put(t, "%s %lld\n", name, (long long)value);
}

int metrics_render(const struct metrics_gauges *g, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    struct text t = {.cap = 16 * 1024};
    t.data = malloc(t.cap);
    if (!t.data)
        return -1;
    t.data[0] = '\0';

    put_header(&t, "greedylr_build_info", "gauge", "Always 1; the version is a label.");
    put(&t, "greedylr_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
    put_requests(&t, atomic_load(&route_count));
    put_gauge(&t, "greedylr_http_requests_in_flight", "HTTP requests begun and not completed.",
              g->requests_in_flight);
    put_gauge(&t, "greedylr_waiting_requests",
              "Requests waiting for the other ranks of a step or for a decision.",
              g->waiting_requests);
    put_gauge(&t, "greedylr_waiting_jobs", "Jobs with a step being gathered or requests waiting.",
              g->waiting_jobs);
    if (g->jobs_running >= 0 && g->jobs_finished >= 0) {
        put_header(&t, "greedylr_jobs", "gauge", "Jobs in the database, by status.");
        put(&t, "greedylr_jobs{status=\"running\"} %lld\n", (long long)g->jobs_running);
        put(&t, "greedylr_jobs{status=\"finished\"} %lld\n", (long long)g->jobs_finished);
    }
    put_gauge(&t, "greedylr_jobs_in_memory", "Jobs loaded in the service's memory.",
              g->jobs_in_memory);

    put_header(&t, "greedylr_store_commits_total", "counter",
               "Write transactions that committed reports.");
    put(&t, "greedylr_store_commits_total %llu\n", (unsigned long long)atomic_load(&commits));
    put_header(&t, "greedylr_store_commit_duration_seconds", "histogram",
               "Time to write and commit one transaction of reports.");
    put_histogram(&t, "greedylr_store_commit_duration_seconds", NULL, &commit_latency,
                  commit_bounds, COMMIT_BUCKETS, 1e9);
    put_header(&t, "greedylr_store_commit_batch_size", "histogram",
               "Reports committed per transaction; its _sum counts every committed report.");
    put_histogram(&t, "greedylr_store_commit_batch_size", NULL, &commit_batch, batch_bounds,
                  BATCH_BUCKETS, 1);

    if (t.failed) {
        free(t.data);
        return -1;
    }
    *out = t.data;
    *len = t.len;
    return 0;
}
