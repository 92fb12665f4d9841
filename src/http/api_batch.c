/*
 * POST /v1/reports: a batch of reports, of any jobs, answered with one result per report
 * once every one has its result (see api_int.h).
 *
 * Each report goes to the service as a report of its own (svc_report), with a waiter of
 * its own, so each is as idempotent as a single report and each new decision is answered
 * only once it is committed. The batch counts the reports still waiting: one more than
 * there are while they are being sent, so that the last answer, whichever thread gives
 * it, completes the request exactly once (api_wait_complete), and the connection waits
 * suspended meanwhile, as a single report's does.
 *
 * When its client goes away, the reports that still wait (for the other ranks of their
 * step) are given up as a single report's would be (api_batch_cancel), so that retries of
 * a lost batch do not pile waiters up on its jobs.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "base/log.h"
#include "http/api_int.h"

/* One report of a batch: what the client sent, and its result. */
struct batch_item {
    struct svc_waiter waiter; /* item_done() finds the item from it (offsetof) */
    struct api_batch *batch;
    struct req_batch_item parsed; /* its status and err become the result's */
    struct svc_report_result result;
};

struct api_batch {
    struct request *req;
    atomic_size_t waiting; /* reports without a result, plus one while they are sent */
    size_t count;
    struct batch_item items[];
};

void api_batch_cancel(struct api *api, struct request *req)
{
    struct api_batch *batch = req->batch;
    /* A job's id is set before its report is sent and never changes: it is safe to read. */
    for (size_t i = 0; i < batch->count; i++)
        if (batch->items[i].parsed.job[0])
            svc_cancel_waiter(api->svc, batch->items[i].parsed.job, &batch->items[i].waiter);
}

void api_batch_free(struct api_batch *batch)
{
    free(batch);
}

/* One report fewer to wait for; the last completes the request. */
static void one_done(struct api_batch *batch)
{
    if (atomic_fetch_sub(&batch->waiting, 1) == 1)
        api_wait_complete(batch->req, GLR_OK, NULL, NULL);
}

/* The service's answer to one report that waited (on any thread, holding none of its locks). */
static void item_done(struct svc_waiter *waiter, int status, const struct svc_report_result *result,
                      const char *err)
{
    struct batch_item *item =
        (struct batch_item *)(void *)((char *)waiter - offsetof(struct batch_item, waiter));
    item->parsed.status = status;
    if (status == GLR_OK && result)
        item->result = *result;
    snprintf(item->parsed.err, sizeof(item->parsed.err), "%s", err ? err : "");
    one_done(item->batch);
}

/* One result: the decision as a single report answers it, or {"job", "step", "problem"}. */
static cJSON *item_json(const struct batch_item *item, unsigned *http)
{
    *http = HTTP_OK;
    const struct req_batch_item *p = &item->parsed;
    if (p->status == GLR_OK)
        return api_decision_json(p->job, &item->result);
    cJSON *o = cJSON_CreateObject();
    cJSON *job = p->job[0] ? cJSON_CreateString(p->job) : cJSON_CreateNull();
    cJSON *step = p->has_step ? jsonx_number((double)p->in.step) : cJSON_CreateNull();
    cJSON *problem = api_problem_of_status(p->status, p->err, http);
    cJSON *parts[3] = {job, step, problem};
    static const char *const keys[3] = {"job", "step", "problem"};
    bool ok = o != NULL;
    for (size_t i = 0; i < 3; i++) {
        if (ok && parts[i] && cJSON_AddItemToObject(o, keys[i], parts[i]))
            continue;
        ok = false;
        cJSON_Delete(parts[i]);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

enum MHD_Result api_answer_batch(struct MHD_Connection *conn, struct request *req)
{
    struct api_batch *batch = req->batch;
    cJSON *answer = cJSON_CreateObject();
    cJSON *results = answer ? cJSON_AddArrayToObject(answer, "results") : NULL;
    size_t faults = 0; /* reports that failed on the server's side (5xx) */
    size_t first_fault = 0;
    for (size_t i = 0; results && i < batch->count; i++) {
        unsigned http;
        cJSON *item = item_json(&batch->items[i], &http);
        if (http >= 500 && faults++ == 0)
            first_fault = i;
        if (!item || !cJSON_AddItemToArray(results, item)) {
            cJSON_Delete(item);
            results = NULL;
        }
    }
    /* One line for the batch, as a single report's fault is one line. */
    if (faults > 0)
        log_error("%zu of %zu reports of a batch failed; reports[%zu]: %s", faults, batch->count,
                  first_fault, batch->items[first_fault].parsed.err);
    if (!results) {
        cJSON_Delete(answer);
        return api_answer_status(conn, req, GLR_ENOMEM, "out of memory");
    }
    return api_answer_json(conn, req, HTTP_OK, answer, NULL);
}

/* POST /v1/reports {"reports": [{"job", "step", "loss", "rank", "lr_cap"}, ...]}. */
enum MHD_Result api_post_reports(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_body body = api_body_of(conn, req);
    struct req_batch_item *parsed = NULL;
    size_t count = 0;
    int rc = req_parse_batch(&body, &parsed, &count, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    struct api_batch *batch = malloc(sizeof(*batch) + count * sizeof(batch->items[0]));
    if (!batch) {
        free(parsed);
        return api_answer_status(conn, req, GLR_ENOMEM, "out of memory");
    }
    batch->req = req;
    batch->count = count;
    atomic_init(&batch->waiting, count + 1);
    for (size_t i = 0; i < count; i++) {
        batch->items[i].batch = batch;
        batch->items[i].waiter.done = item_done;
        batch->items[i].parsed = parsed[i];
    }
    free(parsed);
    req->batch = batch;
    api_wait_begin(req, conn);
    for (size_t i = 0; i < count; i++) {
        struct batch_item *item = &batch->items[i];
        struct req_batch_item *p = &item->parsed;
        if (p->status == GLR_OK) {
            char fault[GLR_ERR_MAX] = "";
            int status = svc_report(api->svc, p->job, &p->in, &item->waiter, &item->result, fault);
            if (status == GLR_EWAIT)
                continue; /* item_done() counts it */
            p->status = status;
            snprintf(p->err, sizeof(p->err), "%s", fault);
        }
        one_done(batch);
    }
    one_done(batch); /* the one held while the reports were sent */
    return api_wait_suspend(conn, req);
}
