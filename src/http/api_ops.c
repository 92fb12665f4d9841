/*
 * The operator's routes (see api_int.h): liveness, readiness, and the numbers that
 * /metrics shows in the Prometheus text format.
 */
#include "base/log.h"
#include "base/metrics.h"
#include "http/api_int.h"

/* GET /healthz: 200 while the process serves at all. */
enum MHD_Result api_get_health(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    (void)api;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ok");
    return api_answer_json(conn, req, HTTP_OK, body, NULL);
}

/* GET /readyz: 200 when the service can take reports now, else 503 saying why. */
enum MHD_Result api_get_ready(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    int rc = svc_ready(api->svc, err);
    if (rc) {
        log_warn("not ready: %s", err);
        return api_answer_problem(conn, req, HTTP_UNAVAILABLE, "not-ready", "Not ready", err, NULL,
                                  1);
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "status", "ready");
    return api_answer_json(conn, req, HTTP_OK, body, NULL);
}

/* GET /metrics: the Prometheus text format. */
enum MHD_Result api_get_metrics(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct svc_stats stats;
    int rc = svc_stats(api->svc, &stats, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
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
        return api_answer_status(conn, req, GLR_ENOMEM, "metrics: out of memory");
    struct api_answer a = {.status = HTTP_OK, .type = METRICS_CONTENT_TYPE, .text = text};
    return api_answer(conn, req, &a);
}
