/*
 * Metrics in the Prometheus text format: counters and histograms that any thread updates
 * without a lock (C11 atomics), rendered as text when /metrics is scraped. The module is a
 * leaf: it knows no HTTP, SQL or job; callers name their routes once and then count by
 * index, and pass the gauges they own (waiting requests, jobs) when rendering.
 */
#ifndef GLR_METRICS_H
#define GLR_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Most route labels that can be named (metrics_route()). */
#define METRICS_ROUTES_MAX 32
/* Longest route label, in bytes. */
#define METRICS_ROUTE_LABEL_MAX 64
/* Largest text a scrape renders, in bytes; rendering stops with an error beyond it. */
#define METRICS_TEXT_MAX (1024 * 1024)

/* The methods counted by name; every other method is counted as "OTHER". */
enum metrics_method {
    METRICS_GET,
    METRICS_HEAD,
    METRICS_POST,
    METRICS_PUT,
    METRICS_PATCH,
    METRICS_DELETE,
    METRICS_OTHER,
    METRICS_METHODS
};

/*
 * Names a route label (a route template such as "/v1/jobs/{id}", never a concrete path)
 * and returns its index for metrics_observe_request(); naming the same label again gives
 * the same index. Returns -1 when METRICS_ROUTES_MAX labels exist or label is too long.
 * Thread-safe, but meant for start-up.
 */
int metrics_route(const char *label);

/* The counting slot of an HTTP method name. */
enum metrics_method metrics_method(const char *name);

/*
 * Counts one finished request: by route index, method and status (0 for a request that
 * ended without an answer), and its duration in the latency histogram of its route.
 * A route index that metrics_route() did not return is ignored. Lock-free.
 */
void metrics_observe_request(int route, enum metrics_method method, unsigned status,
                             double seconds);

/*
 * Counts one committed write transaction of reports: how long the commit took and how many
 * reports it carried (the size of a group commit). Lock-free.
 */
void metrics_observe_commit(double seconds, unsigned batch_size);

/* What the caller owns and knows at scrape time; negative values are left out. */
struct metrics_gauges {
    int64_t requests_in_flight; /* HTTP requests begun and not completed */
    int64_t waiting_requests;   /* requests waiting for other ranks or a decision */
    int64_t waiting_jobs;       /* jobs with a step being gathered or requests waiting */
    int64_t jobs_running;       /* jobs in the database, by status */
    int64_t jobs_finished;
    int64_t jobs_in_memory; /* jobs loaded in the service */
};

/*
 * Renders every metric in the Prometheus text exposition format (version 0.0.4), with
 * # HELP and # TYPE lines. On success *out is a NUL-terminated text the caller frees and
 * *len its length. Returns 0, or -1 when out of memory or over METRICS_TEXT_MAX.
 */
int metrics_render(const struct metrics_gauges *gauges, char **out, size_t *len);

/* The content type of the rendered text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
