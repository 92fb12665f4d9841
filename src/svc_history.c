/* History (see svc.h): pages in step order, downsampling that keeps the shape, and CSV. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "svc_int.h"

/* ---- history -------------------------------------------------------------------------- */

/* The job's key and shape, read under its lock, for queries that then run without it. */
struct job_key {
    int64_t seq;
    bool lr_is_array;
    size_t groups;
};

static int job_key(struct svc *svc, const char *id, struct job_key *key, char *err)
{
    struct job *job;
    int rc = job_lock(svc, id, &job, err);
    if (rc)
        return rc;
    key->seq = job->seq;
    key->lr_is_array = glr_sched_lr_is_array(job->sched);
    key->groups = glr_sched_groups(job->sched);
    job_unlock(svc, job);
    return GLR_OK;
}

static cJSON *lrs_json(const double *lrs, size_t groups, bool as_array)
{
    return as_array ? jsonx_number_array(lrs, groups) : jsonx_number(lrs[0]);
}

static bool same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

static cJSON *point_json(const struct store_report *r, bool lr_is_array)
{
    cJSON *p = cJSON_CreateObject();
    bool ok = p && jsonx_add_integer(p, "step", r->step) &&
              add_item(p, "loss", jsonx_number(r->loss)) &&
              add_item(p, "lr", lrs_json(r->lrs, r->groups, lr_is_array)) &&
              cJSON_AddStringToObject(p, "event", glr_event_name(r->event));
    /* The metric is shown only where the policy judged something else than the loss. */
    if (ok && !same_bits(r->metric, r->loss) && !(isnan(r->metric) && isnan(r->loss)))
        ok = add_item(p, "metric", jsonx_number(r->metric));
    if (ok && r->ranks > 1)
        ok = jsonx_add_integer(p, "ranks", r->ranks);
    if (!ok) {
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

struct page_ctx {
    cJSON *points;
    bool lr_is_array;
    int64_t wanted;
    int64_t count;
    bool more;
    int64_t next_step; /* the cursor of the next page, when there is one */
    int64_t next_rank;
    int rc;
    char *err;
};

static bool page_one(void *ctx_, const struct store_report *r)
{
    struct page_ctx *ctx = ctx_;
    if (ctx->count == ctx->wanted) {
        ctx->more = true;
        ctx->next_step = r->step;
        ctx->next_rank = r->rank;
        return false;
    }
    cJSON *point = point_json(r, ctx->lr_is_array);
    if (!point || !cJSON_AddItemToArray(ctx->points, point)) {
        cJSON_Delete(point);
        ctx->rc = glr_fail(ctx->err, GLR_ENOMEM, "out of memory");
        return false;
    }
    ctx->count++;
    return true;
}

/*
 * History page tokens: "h" STEP "." RANK, the first row of the next page. Read digit by
 * digit: sscanf's %lld has no defined result for a number out of range.
 */
int svc_history_token_parse(const char *token, int64_t *step, int64_t *rank, char *err)
{
    if (!token)
        return GLR_OK;
    const char *p = token;
    int64_t s, r;
    if (*p++ != 'h' || !parse_decimal(&p, &s) || *p++ != '.' || !parse_decimal(&p, &r) ||
        *p != '\0')
        return glr_fail(err, GLR_EINVAL, "page_token is not one this server gave");
    *step = s;
    *rank = r;
    return GLR_OK;
}

/* ---- downsampling ---------------------------------------------------------------------- */

/* First pass: how many rows, and how many of them changed the learning rate. */
struct count_ctx {
    int64_t rows;
    int64_t changes;
    double prev[GLR_MAX_GROUPS];
};

static bool lr_changed(const double *prev, const struct store_report *r, int64_t index)
{
    if (index == 0)
        return false;
    for (size_t g = 0; g < r->groups; g++)
        if (!same_bits(prev[g], r->lrs[g]))
            return true;
    return false;
}

static bool count_one(void *ctx_, const struct store_report *r)
{
    struct count_ctx *ctx = ctx_;
    if (lr_changed(ctx->prev, r, ctx->rows))
        ctx->changes++;
    memcpy(ctx->prev, r->lrs, r->groups * sizeof(double));
    ctx->rows++;
    return true;
}

/* A chosen row and its position in the range. */
struct pick {
    int64_t index;
    struct store_report report;
};

/* Second pass: each bucket's lowest and highest loss, and the lr changes that fit. */
struct sample_ctx {
    int64_t rows;
    int64_t buckets;
    int64_t changes;      /* lr changes in the range */
    int64_t change_keep;  /* how many of them fit */
    int64_t index;        /* of the current row */
    int64_t change_index; /* of the current change */
    int64_t bucket;       /* of the current row */
    bool have_low, have_high;
    struct pick low, high;
    double prev[GLR_MAX_GROUPS];
    struct pick *picks;
    size_t npicks;
    size_t cap;
};

static void sample_add(struct sample_ctx *ctx, const struct pick *pick)
{
    if (ctx->npicks < ctx->cap)
        ctx->picks[ctx->npicks++] = *pick;
}

static void bucket_flush(struct sample_ctx *ctx)
{
    if (ctx->have_low)
        sample_add(ctx, &ctx->low);
    if (ctx->have_high && ctx->high.index != ctx->low.index)
        sample_add(ctx, &ctx->high);
    ctx->have_low = ctx->have_high = false;
}

static bool sample_one(void *ctx_, const struct store_report *r)
{
    struct sample_ctx *ctx = ctx_;
    int64_t index = ctx->index++;
    int64_t bucket = index * ctx->buckets / ctx->rows;
    if (bucket != ctx->bucket) {
        bucket_flush(ctx);
        ctx->bucket = bucket;
    }
    /* Rows are copied only when picked: a row is large, and most rows are not. */
    if (lr_changed(ctx->prev, r, index)) {
        /* Keep change_keep of the changes, spread evenly over all of them. */
        int64_t c = ctx->change_index++;
        if (ctx->change_keep > 0 &&
            c * ctx->change_keep / ctx->changes != (c + 1) * ctx->change_keep / ctx->changes &&
            ctx->npicks < ctx->cap) {
            ctx->picks[ctx->npicks].index = index;
            ctx->picks[ctx->npicks++].report = *r;
        }
    }
    memcpy(ctx->prev, r->lrs, r->groups * sizeof(double));
    /* A NaN loss is never the lowest or highest; a bucket of NaNs keeps its first row. */
    bool finite_or_first = !isnan(r->loss) || !ctx->have_low;
    if (finite_or_first &&
        (!ctx->have_low || isnan(ctx->low.report.loss) || r->loss < ctx->low.report.loss)) {
        ctx->low.index = index;
        ctx->low.report = *r;
        ctx->have_low = true;
    }
    if (!isnan(r->loss) &&
        (!ctx->have_high || isnan(ctx->high.report.loss) || r->loss > ctx->high.report.loss)) {
        ctx->high.index = index;
        ctx->high.report = *r;
        ctx->have_high = true;
    }
    return true;
}

static int compare_picks(const void *a, const void *b)
{
    int64_t x = ((const struct pick *)a)->index, y = ((const struct pick *)b)->index;
    return (x > y) - (x < y);
}

/*
 * Fills points with at most max_points rows of the range: when the range has more, half
 * the budget (at most) goes to the rows where the lr changed, the rest to the lowest and
 * highest loss of equal-sized buckets.
 */
static int downsample(struct svc *svc, const struct job_key *key, const struct svc_history_query *q,
                      cJSON *points, char *err)
{
    struct count_ctx counted = {0};
    int rc = store_report_scan(svc->store, key->seq, q->from_step, 0, q->to_step, INT64_MAX,
                               count_one, &counted, err);
    if (rc || counted.rows == 0)
        return rc;
    struct sample_ctx ctx = {.rows = counted.rows, .changes = counted.changes, .bucket = -1};
    int64_t k = q->max_points;
    if (counted.rows <= k) {
        ctx.buckets = counted.rows; /* one row per bucket: every row */
        ctx.change_keep = 0;
    } else {
        ctx.change_keep = counted.changes < k / 2 ? counted.changes : k / 2;
        ctx.buckets = (k - ctx.change_keep) / 2;
        if (ctx.buckets < 1)
            ctx.buckets = 1;
    }
    ctx.cap = (size_t)k;
    ctx.picks = malloc(ctx.cap * sizeof(*ctx.picks));
    if (!ctx.picks)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    rc = store_report_scan(svc->store, key->seq, q->from_step, 0, q->to_step, INT64_MAX, sample_one,
                           &ctx, err);
    bucket_flush(&ctx);
    if (!rc) {
        qsort(ctx.picks, ctx.npicks, sizeof(*ctx.picks), compare_picks);
        for (size_t i = 0; i < ctx.npicks && !rc; i++) {
            if (i > 0 && ctx.picks[i].index == ctx.picks[i - 1].index)
                continue;
            cJSON *point = point_json(&ctx.picks[i].report, key->lr_is_array);
            if (!point || !cJSON_AddItemToArray(points, point)) {
                cJSON_Delete(point);
                rc = glr_fail(err, GLR_ENOMEM, "out of memory");
            }
        }
    }
    free(ctx.picks);
    return rc;
}

int svc_history(struct svc *svc, const char *id, const struct svc_history_query *q, cJSON **out,
                char *err)
{
    *out = NULL;
    int64_t from_step = q->from_step, from_rank = 0;
    int rc = svc_history_token_parse(q->page_token, &from_step, &from_rank, err);
    if (rc)
        return rc;
    struct job_key key;
    if ((rc = job_key(svc, id, &key, err)))
        return rc;
    cJSON *answer = cJSON_CreateObject();
    cJSON *points = NULL;
    if (!answer || !cJSON_AddStringToObject(answer, "job", id) ||
        !(points = cJSON_AddArrayToObject(answer, "points"))) {
        cJSON_Delete(answer);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    cJSON *token = NULL;
    if (q->max_points > 0) {
        rc = downsample(svc, &key, q, points, err);
        token = cJSON_CreateNull();
    } else {
        struct page_ctx ctx = {
            .points = points, .lr_is_array = key.lr_is_array, .wanted = q->page_size, .err = err};
        rc = store_report_scan(svc->store, key.seq, from_step, from_rank, q->to_step,
                               q->page_size + 1, page_one, &ctx, err);
        if (!rc)
            rc = ctx.rc;
        char text[64];
        snprintf(text, sizeof(text), "h%lld.%lld", (long long)ctx.next_step,
                 (long long)ctx.next_rank);
        token = ctx.more ? cJSON_CreateString(text) : cJSON_CreateNull();
    }
    if (!rc && !add_item(answer, "next_page_token", token))
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

/* ---- CSV export ------------------------------------------------------------------------ */

/* Rows read from the store per batch, and the text buffer they are written into. */
#define CSV_BATCH_ROWS 2048
#define CSV_ROW_MAX    (64 + GLR_MAX_GROUPS * JSONX_DOUBLE_MAX)

struct svc_csv {
    struct svc *svc;
    struct job_key key;
    int64_t next_step, next_rank; /* where the next batch starts */
    int64_t to_step;
    bool header_done;
    bool finished;
    char *text;    /* the current batch */
    size_t len;    /* bytes in text */
    size_t offset; /* bytes of text already given out */
    size_t rows;   /* rows in the current batch */
};

static void csv_append_row(struct svc_csv *csv, const struct store_report *r)
{
    /* Written piece by piece rather than with printf: this runs for every row. */
    char *p = csv->text + csv->len;
    size_t n = jsonx_format_integer(r->step, p);
    p[n++] = ',';
    n += jsonx_format_double(r->loss, p + n);
    for (size_t g = 0; g < r->groups; g++) {
        p[n++] = ',';
        n += jsonx_format_double(r->lrs[g], p + n);
    }
    p[n++] = ',';
    const char *event = glr_event_name(r->event);
    size_t event_len = strlen(event);
    memcpy(p + n, event, event_len);
    n += event_len;
    p[n++] = '\n';
    csv->len += n;
}

static bool csv_one(void *ctx, const struct store_report *r)
{
    struct svc_csv *csv = ctx;
    csv_append_row(csv, r);
    csv->rows++;
    csv->next_step = r->step;
    csv->next_rank = r->rank + 1;
    return true;
}

int svc_csv_open(struct svc *svc, const char *id, int64_t from_step, int64_t to_step,
                 struct svc_csv **out, char *err)
{
    *out = NULL;
    struct svc_csv *csv = calloc(1, sizeof(*csv));
    if (!csv)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    csv->text = malloc((size_t)CSV_BATCH_ROWS * CSV_ROW_MAX);
    int rc =
        csv->text ? job_key(svc, id, &csv->key, err) : glr_fail(err, GLR_ENOMEM, "out of memory");
    if (rc) {
        svc_csv_close(csv);
        return rc;
    }
    csv->svc = svc;
    csv->next_step = from_step;
    csv->to_step = to_step;
    *out = csv;
    return GLR_OK;
}

/* Refills the buffer with the header or the next batch; false at the end or on error. */
static bool csv_refill(struct svc_csv *csv, bool *failed)
{
    csv->len = csv->offset = csv->rows = 0;
    if (!csv->header_done) {
        csv->header_done = true;
        if (csv->key.groups == 1) {
            csv->len = (size_t)sprintf(csv->text, "step,loss,lr,event\n");
        } else {
            csv->len = (size_t)sprintf(csv->text, "step,loss");
            for (size_t g = 0; g < csv->key.groups; g++)
                csv->len += (size_t)sprintf(csv->text + csv->len, ",lr_%zu", g);
            csv->len += (size_t)sprintf(csv->text + csv->len, ",event\n");
        }
        return true;
    }
    if (csv->finished)
        return false;
    char err[GLR_ERR_MAX];
    int rc = store_report_scan(csv->svc->store, csv->key.seq, csv->next_step, csv->next_rank,
                               csv->to_step, CSV_BATCH_ROWS, csv_one, csv, err);
    if (rc) {
        *failed = true;
        return false;
    }
    if (csv->rows < CSV_BATCH_ROWS)
        csv->finished = true;
    return csv->len > 0;
}

ssize_t svc_csv_read(struct svc_csv *csv, char *buf, size_t max)
{
    size_t given = 0;
    while (given < max) {
        if (csv->offset == csv->len) {
            bool failed = false;
            if (!csv_refill(csv, &failed))
                return failed && given == 0 ? -1 : (ssize_t)given;
        }
        size_t n = csv->len - csv->offset;
        if (n > max - given)
            n = max - given;
        memcpy(buf + given, csv->text + csv->offset, n);
        csv->offset += n;
        given += n;
    }
    return (ssize_t)given;
}

void svc_csv_close(struct svc_csv *csv)
{
    if (!csv)
        return;
    free(csv->text);
    free(csv);
}
