/* History (see svc.h): pages in step order, and downsampling that keeps the shape. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "svc/svc_int.h"

/* ---- history -------------------------------------------------------------------------- */

int svc_history_key(struct svc *svc, const char *id, struct svc_history_key *key, char *err)
{
    if (svc_jobs_resident(&svc->jobs, id)) {
        struct svc_job *job;
        int rc = svc_job_lock_settled(svc, id, &job, err);
        if (rc)
            return rc;
        key->seq = job->seq;
        key->lr_is_array = glr_sched_lr_is_array(job->sched);
        key->groups = glr_sched_groups(job->sched);
        svc_job_unlock(svc, job);
        return GLR_OK;
    }
    /* Not in memory: nothing of it is in flight, and its row says all a read needs. */
    struct store_job row;
    int rc = store_job_load(svc->store, id, &row, err);
    if (rc)
        return rc;
    cJSON *lr = cJSON_Parse(row.initial_lr);
    double values[GLR_MAX_GROUPS];
    rc = lr ? glr_lr_parse(lr, values, &key->groups, &key->lr_is_array, err) : GLR_EINVAL;
    if (rc)
        rc = glr_fail(err, GLR_ECORRUPT, "database: job %s has a damaged lr", row.id);
    key->seq = row.seq;
    cJSON_Delete(lr);
    store_job_clear(&row);
    return rc;
}

static bool same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

static cJSON *point_json(const struct store_report *r, bool lr_is_array)
{
    cJSON *p = cJSON_CreateObject();
    bool ok = p && jsonx_add_integer(p, "step", r->step) &&
              svc_json_add(p, "loss", jsonx_number(r->loss)) &&
              svc_json_add(p, "lr", jsonx_lr(r->lrs, r->groups, lr_is_array)) &&
              cJSON_AddStringToObject(p, "event", glr_event_name(r->event));
    /* The metric is shown only where the policy judged something else than the loss. */
    if (ok && !same_bits(r->metric, r->loss) && !(isnan(r->metric) && isnan(r->loss)))
        ok = svc_json_add(p, "metric", jsonx_number(r->metric));
    if (ok && r->ranks > 1)
        ok = jsonx_add_integer(p, "ranks", r->ranks);
    if (ok && isfinite(r->lr_cap))
        ok = jsonx_add_number(p, "lr_cap", r->lr_cap);
    if (!ok) {
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

int svc_page_open(struct svc *svc, const char *id, const struct svc_history_query *q,
                  struct svc_history_key *key, int64_t *from_step, int64_t *from_rank,
                  struct svc_page *page, char *err)
{
    *page = (struct svc_page){.wanted = q->page_size, .err = err};
    *from_step = q->from_step;
    *from_rank = 0;
    int rc = svc_history_token_parse(q->page_token, from_step, from_rank, err);
    if (!rc)
        rc = svc_history_key(svc, id, key, err);
    if (rc)
        return rc;
    page->answer = cJSON_CreateObject();
    if (!page->answer || !cJSON_AddStringToObject(page->answer, "job", id) ||
        !(page->points = cJSON_AddArrayToObject(page->answer, "points"))) {
        cJSON_Delete(page->answer);
        page->answer = NULL;
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    return GLR_OK;
}

bool svc_page_add(struct svc_page *page, int64_t step, int64_t rank, cJSON *point)
{
    if (page->count == page->wanted) {
        cJSON_Delete(point);
        page->more = true;
        page->next_step = step;
        page->next_rank = rank;
        return false;
    }
    if (!point || !cJSON_AddItemToArray(page->points, point)) {
        cJSON_Delete(point);
        page->rc = glr_fail(page->err, GLR_ENOMEM, "out of memory");
        return false;
    }
    page->count++;
    return true;
}

int svc_page_finish(struct svc_page *page, int rc, bool paged, cJSON **out)
{
    *out = NULL;
    if (!rc)
        rc = page->rc;
    char text[64];
    snprintf(text, sizeof(text), "h%lld.%lld", (long long)page->next_step,
             (long long)page->next_rank);
    if (!rc && !svc_json_add(page->answer, "next_page_token",
                             paged && page->more ? cJSON_CreateString(text) : cJSON_CreateNull()))
        rc = glr_fail(page->err, GLR_ENOMEM, "out of memory");
    if (rc) {
        cJSON_Delete(page->answer);
        page->answer = NULL;
        return rc;
    }
    *out = page->answer;
    page->answer = NULL;
    return GLR_OK;
}

struct page_ctx {
    struct svc_page page;
    bool lr_is_array;
};

static bool page_one(void *ctx_, const struct store_report *r)
{
    struct page_ctx *ctx = ctx_;
    /* A row past the page only marks where the next begins: no point is made for it. */
    cJSON *point = ctx->page.count < ctx->page.wanted ? point_json(r, ctx->lr_is_array) : NULL;
    return svc_page_add(&ctx->page, r->step, r->rank, point);
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
    if (*p++ != 'h' || !svc_parse_decimal(&p, &s) || *p++ != '.' || !svc_parse_decimal(&p, &r) ||
        *p != '\0')
        return glr_fail(err, GLR_EINVAL, "page_token is not one this server gave");
    *step = s;
    *rank = r;
    return GLR_OK;
}

/* ---- downsampling ---------------------------------------------------------------------- */

/*
 * Downsampling walks the range twice (to count, then to pick) as a sequence of units,
 * each a summary: the store's blocks where they lie wholly in the range and are finer
 * than the buckets, and single rows elsewhere (before the first block, after the last,
 * or everywhere when the blocks are too few). A million rows are then some fifteen
 * thousand blocks and a few hundred rows.
 */
typedef void (*unit_fn)(void *ctx, const struct summary *unit, bool is_block);

struct walk {
    struct svc *svc;
    int64_t seq;
    int64_t from_step, to_step;
    /* The blocks in the range, found before the first walk, and whether to use them. */
    int64_t blocks;
    int64_t blocks_first, blocks_last; /* the first step of the first, last of the last */
    struct summary in_blocks;          /* their rows, together */
    bool use_blocks;
    bool skip_blocks; /* walk only the rows around the blocks */
    unit_fn fn;
    void *ctx;
    /* The row walker's own. */
    double prev[GLR_MAX_GROUPS];
    bool have_prev;
    bool skip_first; /* the first row is the last block's last: only compared with */
};

static bool count_block(void *w_, const struct summary *block)
{
    struct walk *w = w_;
    if (w->blocks++ == 0)
        w->blocks_first = block->first_step;
    w->blocks_last = block->last_step;
    summary_merge(&w->in_blocks, block);
    return true;
}

static bool walk_row(void *w_, const struct store_report *r)
{
    struct walk *w = w_;
    /* The first row of the range is never a change: nothing before it is shown. */
    bool changed = w->have_prev && summary_lrs_differ(w->prev, r->lrs, r->groups);
    memcpy(w->prev, r->lrs, r->groups * sizeof(double));
    w->have_prev = true;
    if (w->skip_first) {
        w->skip_first = false;
        return true;
    }
    struct summary unit = {0};
    summary_add_row(&unit, r->step, r->loss, changed);
    w->fn(w->ctx, &unit, false);
    return true;
}

static bool walk_block(void *w_, const struct summary *block)
{
    struct walk *w = w_;
    w->fn(w->ctx, block, true);
    return true;
}

/* Calls w->fn for each unit of the range, in step order. */
static int walk_range(struct walk *w, char *err)
{
    struct store *store = w->svc->store;
    w->have_prev = false;
    w->skip_first = false;
    if (!w->use_blocks)
        return store_report_scan(store, w->seq, w->from_step, 0, w->to_step, INT64_MAX, walk_row, w,
                                 err);
    int rc = GLR_OK;
    if (w->from_step < w->blocks_first)
        rc = store_report_scan(store, w->seq, w->from_step, 0, w->blocks_first - 1, INT64_MAX,
                               walk_row, w, err);
    /* The same blocks on both walks, though more may be made in between. */
    if (!rc && !w->skip_blocks)
        rc = store_block_scan(store, w->seq, w->blocks_first, w->blocks_last, walk_block, w, err);
    if (!rc && w->blocks_last < w->to_step) {
        w->skip_first = true;
        rc = store_report_scan(store, w->seq, w->blocks_last, 0, w->to_step, INT64_MAX, walk_row, w,
                               err);
    }
    return rc;
}

/* First walk: how many rows, and how many of them changed the learning rate. */
static void count_unit(void *ctx, const struct summary *unit, bool is_block)
{
    (void)is_block;
    struct summary *range = ctx;
    summary_merge(range, unit);
}

/* A block several of whose lr changes are to be shown: found row by row after the walk. */
struct dense_block {
    int64_t first_step, last_step;
    bool first_row_changed;
    int64_t change_index; /* of its first change in the range */
};

/* Second walk: each bucket's lowest and highest loss, and the lr changes that fit. */
struct sampler {
    int64_t rows;
    int64_t buckets;
    int64_t changes;      /* lr changes in the range */
    int64_t change_keep;  /* how many of them fit */
    int64_t index;        /* the range's rows before the current unit */
    int64_t change_index; /* and its changes */
    int64_t bucket;
    struct summary current; /* the current bucket */
    int64_t *steps;         /* the rows to show */
    size_t nsteps, cap;
    struct dense_block *dense;
    size_t ndense, dense_cap;
    bool out_of_memory;
};

static void pick(struct sampler *s, int64_t step)
{
    if (s->nsteps < s->cap)
        s->steps[s->nsteps++] = step;
}

/* Changes [0, n) of the range that are shown: change_keep of them, spread evenly. */
static int64_t changes_shown(const struct sampler *s, int64_t n)
{
    return s->changes > 0 ? n * s->change_keep / s->changes : 0;
}

static void bucket_flush(struct sampler *s)
{
    if (s->current.rows == 0)
        return;
    pick(s, s->current.low_step);
    if (s->current.have_high && s->current.high_step != s->current.low_step)
        pick(s, s->current.high_step);
    memset(&s->current, 0, sizeof(s->current));
}

static void sample_unit(void *ctx, const struct summary *unit, bool is_block)
{
    struct sampler *s = ctx;
    int64_t bucket = s->index * s->buckets / s->rows;
    if (bucket != s->bucket) {
        bucket_flush(s);
        s->bucket = bucket;
    }
    summary_merge(&s->current, unit);
    /*
     * One change of a block to show: its first, the one the block's summary keeps (the
     * evenly spread one may be a later one of the same block). Several: each is found row
     * by row once the walk is over, exactly.
     */
    int64_t shown =
        changes_shown(s, s->change_index + unit->changes) - changes_shown(s, s->change_index);
    if (shown == 1 || (shown > 1 && !is_block)) {
        pick(s, unit->change_step);
    } else if (shown > 1) {
        if (s->ndense == s->dense_cap) {
            size_t cap = s->dense_cap ? 2 * s->dense_cap : 16;
            struct dense_block *grown = realloc(s->dense, cap * sizeof(*grown));
            if (!grown) {
                s->out_of_memory = true;
                return;
            }
            s->dense = grown;
            s->dense_cap = cap;
        }
        s->dense[s->ndense++] = (struct dense_block){
            .first_step = unit->first_step,
            .last_step = unit->last_step,
            .first_row_changed = unit->change_step == unit->first_step,
            .change_index = s->change_index,
        };
    }
    s->index += unit->rows;
    s->change_index += unit->changes;
}

/* Picks the shown changes of one dense block, row by row. */
struct dense_ctx {
    struct sampler *s;
    const struct dense_block *block;
    int64_t change_index;
    double prev[GLR_MAX_GROUPS];
    bool have_prev;
};

static bool dense_row(void *ctx_, const struct store_report *r)
{
    struct dense_ctx *ctx = ctx_;
    bool changed = ctx->have_prev ? summary_lrs_differ(ctx->prev, r->lrs, r->groups)
                                  : ctx->block->first_row_changed;
    memcpy(ctx->prev, r->lrs, r->groups * sizeof(double));
    ctx->have_prev = true;
    if (changed) {
        int64_t c = ctx->change_index++;
        if (changes_shown(ctx->s, c + 1) != changes_shown(ctx->s, c))
            pick(ctx->s, r->step);
    }
    return true;
}

static int compare_steps(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Adds the picked rows to points, in step order, once each. */
static int add_picked(struct svc *svc, const struct svc_history_key *key, int64_t *steps, size_t n,
                      cJSON *points, char *err)
{
    qsort(steps, n, sizeof(*steps), compare_steps);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && steps[i] == steps[i - 1])
            continue;
        struct store_report report;
        int rc = store_report_find(svc->store, key->seq, steps[i], 0, &report, err);
        if (rc == GLR_ENOTFOUND)
            continue; /* rewound while we looked */
        if (rc)
            return rc;
        cJSON *point = point_json(&report, key->lr_is_array);
        if (!point || !cJSON_AddItemToArray(points, point)) {
            cJSON_Delete(point);
            return glr_fail(err, GLR_ENOMEM, "out of memory");
        }
    }
    return GLR_OK;
}

/*
 * Fills points with at most max_points rows of the range: when the range has more, half
 * the budget (at most) goes to the rows where the lr changed, the rest to the lowest and
 * highest loss of equal-sized buckets.
 */
static int downsample(struct svc *svc, const struct svc_history_key *key,
                      const struct svc_history_query *q, cJSON *points, char *err)
{
    int64_t k = q->max_points;
    struct walk walk = {
        .svc = svc, .seq = key->seq, .from_step = q->from_step, .to_step = q->to_step};
    int rc =
        store_block_scan(svc->store, key->seq, q->from_step, q->to_step, count_block, &walk, err);
    if (rc)
        return rc;
    /* Blocks help when each bucket (at most k / 2 of them) spans several. */
    walk.use_blocks = walk.blocks >= k;

    /* Counting, the blocks are known already: only the rows around them are read. */
    struct summary range = {0};
    walk.fn = count_unit;
    walk.ctx = &range;
    walk.skip_blocks = walk.use_blocks;
    if ((rc = walk_range(&walk, err)))
        return rc;
    if (walk.use_blocks) {
        range.rows += walk.in_blocks.rows;
        range.changes += walk.in_blocks.changes;
    }
    if (range.rows == 0)
        return GLR_OK;
    walk.skip_blocks = false;
    struct sampler s = {.rows = range.rows, .changes = range.changes, .bucket = -1};
    if (range.rows <= k) {
        s.buckets = range.rows; /* one row per bucket: every row */
        s.change_keep = 0;
    } else {
        s.change_keep = range.changes < k / 2 ? range.changes : k / 2;
        s.buckets = (k - s.change_keep) / 2;
        if (s.buckets < 1)
            s.buckets = 1;
    }
    s.cap = (size_t)k;
    s.steps = malloc(s.cap * sizeof(*s.steps));
    if (!s.steps)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    walk.fn = sample_unit;
    walk.ctx = &s;
    rc = walk_range(&walk, err);
    bucket_flush(&s);
    if (!rc && s.out_of_memory)
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    for (size_t i = 0; i < s.ndense && !rc; i++) {
        struct dense_ctx ctx = {
            .s = &s, .block = &s.dense[i], .change_index = s.dense[i].change_index};
        rc = store_report_scan(svc->store, key->seq, s.dense[i].first_step, 0, s.dense[i].last_step,
                               INT64_MAX, dense_row, &ctx, err);
    }
    if (!rc)
        rc = add_picked(svc, key, s.steps, s.nsteps, points, err);
    free(s.dense);
    free(s.steps);
    return rc;
}

struct rewinds_ctx {
    cJSON *rewinds;
    bool out_of_memory;
};

static bool rewind_one(void *ctx_, const struct store_rewind *r)
{
    struct rewinds_ctx *ctx = ctx_;
    char at[GLR_TIME_TEXT_MAX];
    glr_clock_format(r->time_ms, at);
    cJSON *o = cJSON_CreateObject();
    bool ok =
        o && jsonx_add_integer(o, "to_step", r->to_step) &&
        svc_json_add(o, "from_step",
                     r->from_step >= 0 ? jsonx_number((double)r->from_step) : cJSON_CreateNull()) &&
        cJSON_AddStringToObject(o, "at", at);
    if (!ok || !cJSON_AddItemToArray(ctx->rewinds, o)) {
        cJSON_Delete(o);
        ctx->out_of_memory = true;
        return false;
    }
    return true;
}

/*
 * Adds "rewinds" to a history answer: the rewinds that went back into the query's range
 * (one to the initial state counts as its first step), at most SVC_REWINDS_SHOWN, so
 * that a chart can mark where the job was rewound; the history keeps only what followed.
 */
static int add_rewinds(struct svc *svc, int64_t seq, const struct svc_history_query *q,
                       cJSON *answer, char *err)
{
    struct rewinds_ctx ctx = {.rewinds = cJSON_AddArrayToObject(answer, "rewinds")};
    if (!ctx.rewinds)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    int rc = store_rewind_scan(svc->store, seq, q->from_step == 0 ? -1 : q->from_step, q->to_step,
                               SVC_REWINDS_SHOWN, rewind_one, &ctx, err);
    if (!rc && ctx.out_of_memory)
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    return rc;
}

int svc_history(struct svc *svc, const char *id, const struct svc_history_query *q, cJSON **out,
                char *err)
{
    *out = NULL;
    struct svc_history_key key;
    int64_t from_step, from_rank;
    struct page_ctx ctx;
    int rc = svc_page_open(svc, id, q, &key, &from_step, &from_rank, &ctx.page, err);
    if (rc)
        return rc;
    ctx.lr_is_array = key.lr_is_array;
    if (q->max_points > 0)
        rc = downsample(svc, &key, q, ctx.page.points, err);
    else
        rc = store_report_scan(svc->store, key.seq, from_step, from_rank, q->to_step,
                               q->page_size + 1, page_one, &ctx, err);
    if (!rc)
        rc = add_rewinds(svc, key.seq, q, ctx.page.answer, err);
    return svc_page_finish(&ctx.page, rc, q->max_points == 0, out);
}
