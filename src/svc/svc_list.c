/*
 * Listing jobs (see svc.h): one page in creation order, filtered by status and a tag. A
 * job in memory is described from memory; any other from the row the scan read (its
 * state, and the replay of the few reports after it, as loading does) without bringing
 * it into memory, so that a listing does not push busy jobs out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc/svc_int.h"

/* The rows of one page, copied out of the scan: they are described after it. */
struct list_ctx {
    struct store_job *rows;
    int64_t count;
    int64_t wanted;
    bool more;
    bool out_of_memory;
};

/* A copy of row whose strings are its own (store_job_clear() frees them). */
static bool copy_row(const struct store_job *row, struct store_job *out)
{
    *out = *row;
    out->policy = strdup(row->policy);
    out->initial_lr = strdup(row->initial_lr);
    out->config = strdup(row->config);
    out->tags = strdup(row->tags);
    out->state = strdup(row->state);
    out->tuned = row->tuned ? strdup(row->tuned) : NULL;
    return out->policy && out->initial_lr && out->config && out->tags && out->state &&
           (!row->tuned || out->tuned);
}

static bool list_one(void *ctx_, const struct store_job *row)
{
    struct list_ctx *ctx = ctx_;
    if (ctx->count == ctx->wanted) {
        ctx->more = true; /* the extra row only says that another page exists */
        return false;
    }
    if (!copy_row(row, &ctx->rows[ctx->count++])) {
        ctx->out_of_memory = true;
        return false;
    }
    return true;
}

/*
 * Describes the job of row. The scan is over by now: a replay takes a reader connection
 * of its own.
 */
static int describe_listed(struct svc *svc, const struct store_job *row, cJSON **out, char *err)
{
    if (svc_jobs_resident(&svc->jobs, row->id))
        return svc_job_get(svc, row->id, out, err);
    struct svc_job *job = NULL;
    int rc = svc_job_from_row(svc, row, &job, err);
    if (!rc)
        rc = svc_describe_job(job, out, err);
    svc_job_free(job);
    return rc;
}

/* Page tokens are opaque to clients; inside, "j" and the last seq of the page before. */
int svc_list_token_parse(const char *token, int64_t *after, char *err)
{
    *after = 0;
    if (!token)
        return GLR_OK;
    const char *p = token;
    int64_t v;
    if (*p++ != 'j' || !svc_parse_decimal(&p, &v) || *p != '\0')
        return glr_fail(err, GLR_EINVAL, "page_token is not one this server gave");
    *after = v;
    return GLR_OK;
}

int svc_job_list(struct svc *svc, const struct svc_list_query *query, cJSON **out, char *err)
{
    *out = NULL;
    int64_t after;
    int rc = svc_list_token_parse(query->page_token, &after, err);
    if (rc)
        return rc;
    cJSON *answer = cJSON_CreateObject();
    cJSON *jobs = cJSON_AddArrayToObject(answer, "jobs");
    struct list_ctx ctx = {.rows = calloc((size_t)query->page_size, sizeof(*ctx.rows)),
                           .wanted = query->page_size};
    if (!answer || !jobs || !ctx.rows) {
        cJSON_Delete(answer);
        free(ctx.rows);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    rc = store_job_scan(svc->store, after, query->page_size + 1, query->status, query->tag_key,
                        query->tag_value, query->family, list_one, &ctx, err);
    if (!rc && ctx.out_of_memory)
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    for (int64_t i = 0; !rc && i < ctx.count; i++) {
        cJSON *job = NULL;
        rc = describe_listed(svc, &ctx.rows[i], &job, err);
        if (rc == GLR_ENOTFOUND) {
            rc = GLR_OK; /* deleted since the scan */
            continue;
        }
        if (!rc && !cJSON_AddItemToArray(jobs, job)) {
            cJSON_Delete(job);
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
        }
    }
    if (!rc) {
        char token[32];
        snprintf(token, sizeof(token), "j%lld",
                 (long long)(ctx.count ? ctx.rows[ctx.count - 1].seq : 0));
        if (!svc_json_add(answer, "next_page_token",
                          ctx.more ? cJSON_CreateString(token) : cJSON_CreateNull()))
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < ctx.count; i++)
        store_job_clear(&ctx.rows[i]);
    free(ctx.rows);
    if (rc) {
        cJSON_Delete(answer);
        return rc;
    }
    *out = answer;
    return GLR_OK;
}
