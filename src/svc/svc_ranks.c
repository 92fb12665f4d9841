/* Each rank's own loss (see svc.h): pages of the losses the ranks of a job reported. */

#include "base/jsonx.h"
#include "svc/svc_int.h"

static bool rank_one(void *ctx, const struct store_rank_row *r)
{
    struct svc_page *page = ctx;
    cJSON *p = page->count < page->wanted ? cJSON_CreateObject() : NULL;
    bool ok = p && jsonx_add_integer(p, "step", r->step) && jsonx_add_integer(p, "rank", r->rank) &&
              svc_json_add(p, "loss", jsonx_number(r->loss)) &&
              (!r->late || cJSON_AddTrueToObject(p, "late"));
    if (p && !ok) {
        cJSON_Delete(p);
        p = NULL;
    }
    return svc_page_add(page, r->step, r->rank, p);
}

int svc_ranks(struct svc *svc, const char *id, const struct svc_history_query *q, cJSON **out,
              char *err)
{
    *out = NULL;
    if (q->max_points > 0)
        return glr_fail(err, GLR_EINVAL, "max_points does not apply to the ranks' losses");
    struct svc_history_key key;
    int64_t from_step, from_rank;
    struct svc_page page;
    int rc = svc_page_open(svc, id, q, &key, &from_step, &from_rank, &page, err);
    if (rc)
        return rc;
    rc = store_rank_loss_scan(svc->store, key.seq, from_step, from_rank, q->to_step,
                              q->page_size + 1, rank_one, &page, err);
    return svc_page_finish(&page, rc, true, out);
}
