/* Each rank's own loss (see svc.h): pages of the losses the ranks of a job reported. */
#include <stdio.h>

#include "base/jsonx.h"
#include "svc/svc_int.h"

struct ranks_ctx {
    cJSON *points;
    int64_t wanted;
    int64_t count;
    bool more;
    int64_t next_step; /* the cursor of the next page, when there is one */
    int64_t next_rank;
    int rc;
    char *err;
};

static bool rank_one(void *ctx_, const struct store_rank_row *r)
{
    struct ranks_ctx *ctx = ctx_;
    if (ctx->count == ctx->wanted) {
        ctx->more = true;
        ctx->next_step = r->step;
        ctx->next_rank = r->rank;
        return false;
    }
    cJSON *p = cJSON_CreateObject();
    bool ok = p && jsonx_add_integer(p, "step", r->step) && jsonx_add_integer(p, "rank", r->rank) &&
              svc_json_add(p, "loss", jsonx_number(r->loss)) &&
              (!r->late || cJSON_AddTrueToObject(p, "late"));
    if (!ok || !cJSON_AddItemToArray(ctx->points, p)) {
        cJSON_Delete(p);
        ctx->rc = glr_fail(ctx->err, GLR_ENOMEM, "out of memory");
        return false;
    }
    ctx->count++;
    return true;
}

int svc_ranks(struct svc *svc, const char *id, const struct svc_history_query *q, cJSON **out,
              char *err)
{
    *out = NULL;
    if (q->max_points > 0)
        return glr_fail(err, GLR_EINVAL, "max_points does not apply to the ranks' losses");
    int64_t from_step = q->from_step, from_rank = 0;
    int rc = svc_history_token_parse(q->page_token, &from_step, &from_rank, err);
    if (rc)
        return rc;
    struct svc_history_key key;
    if ((rc = svc_history_key(svc, id, &key, err)))
        return rc;
    cJSON *answer = cJSON_CreateObject();
    cJSON *points = NULL;
    if (!answer || !cJSON_AddStringToObject(answer, "job", id) ||
        !(points = cJSON_AddArrayToObject(answer, "points"))) {
        cJSON_Delete(answer);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    struct ranks_ctx ctx = {.points = points, .wanted = q->page_size, .err = err};
    rc = store_rank_loss_scan(svc->store, key.seq, from_step, from_rank, q->to_step,
                              q->page_size + 1, rank_one, &ctx, err);
    if (!rc)
        rc = ctx.rc;
    char text[64];
    snprintf(text, sizeof(text), "h%lld.%lld", (long long)ctx.next_step, (long long)ctx.next_rank);
    cJSON *token = ctx.more ? cJSON_CreateString(text) : cJSON_CreateNull();
    if (!rc && !svc_json_add(answer, "next_page_token", token))
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    else if (rc)
        cJSON_Delete(token);
    if (rc) {
        cJSON_Delete(answer);
        return rc;
    }
    *out = answer;
    return GLR_OK;
}
