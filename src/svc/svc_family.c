/*
 * Families of runs (see svc.h): their list, one family with its runs and what tuning
 * would choose for it now, and the choice itself for a job created with "tune"
 * (core/tune.h does the choosing; this file reads the family's jobs for it and writes
 * down what it chose and why).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "base/random.h"
#include "core/tune.h"
#include "svc/svc_int.h"

/* ---- a family's jobs, as tuning sees them --------------------------------------------- */

/* What one read of a family gathered: its finished and running jobs on the policy's grid. */
struct family_read {
    const struct tune_space *space;
    const char *policy;
    /* The newest TUNE_OBSERVATIONS_MAX finished jobs with an outcome, in a ring. */
    struct tune_observation obs[TUNE_OBSERVATIONS_MAX];
    char obs_ids[TUNE_OBSERVATIONS_MAX][STORE_ID_MAX + 1];
    size_t nobs_seen;
    /* The newest TUNE_PENDING_MAX running jobs, in a ring. */
    struct tune_point pending[TUNE_PENDING_MAX];
    size_t npending_seen;
    int64_t jobs, finished, running;
    cJSON *runs; /* NULL, or the runs as GET /v1/families/{name} shows them */
};

/* The settings of row on the grid: those tuning chose, or its config's with lr factor 1. */
static bool row_point(const struct tune_space *space, const struct store_job *row,
                      struct tune_point *out)
{
    cJSON *tuned = row->tuned ? cJSON_Parse(row->tuned) : NULL;
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(tuned, "settings");
    cJSON *config = settings ? NULL : cJSON_Parse(row->config);
    double values[TUNE_DIMS_MAX];
    bool on_grid = settings || config;
    for (size_t d = 0; on_grid && d < space->ndims; d++) {
        const char *key = space->dims[d].key;
        if (!settings && strcmp(key, TUNE_LR_FACTOR) == 0) {
            values[d] = 1.0;
            continue;
        }
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(settings ? settings : config, key);
        on_grid = jsonx_get_double(item, &values[d]);
    }
    on_grid = on_grid && tune_point_of(space, values, out);
    cJSON_Delete(tuned);
    cJSON_Delete(config);
    return on_grid;
}

static cJSON *settings_json(const struct tune_space *space, const struct tune_point *point)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t d = 0; o && d < space->ndims; d++) {
        if (!jsonx_add_number(o, space->dims[d].key, tune_value(space, point, d))) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* A run as a family shows it. */
static cJSON *run_json(const struct family_read *f, const struct store_job *row, bool on_grid,
                       const struct tune_point *point)
{
    cJSON *o = cJSON_CreateObject();
    bool ok =
        o && cJSON_AddStringToObject(o, "id", row->id) &&
        cJSON_AddStringToObject(o, "status", row->finished ? "finished" : "running") &&
        cJSON_AddStringToObject(o, "policy", row->policy) &&
        svc_json_add(o, "initial_lr", jsonx_parse_exact(row->initial_lr)) &&
        svc_json_add(o, "config", jsonx_parse_exact(row->config)) &&
        svc_json_add(o, "settings",
                     on_grid ? settings_json(f->space, point) : cJSON_CreateNull()) &&
        (row->tuned ? cJSON_AddTrueToObject(o, "tuned") : cJSON_AddFalseToObject(o, "tuned")) &&
        svc_json_add(o, "outcome",
                     row->has_outcome ? jsonx_number(row->outcome.value) : cJSON_CreateNull());
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool read_one(void *ctx, const struct store_job *row)
{
    struct family_read *f = ctx;
    f->jobs++;
    if (row->finished)
        f->finished++;
    else
        f->running++;
    struct tune_point point;
    bool on_grid = strcmp(row->policy, f->policy) == 0 && row_point(f->space, row, &point);
    if (f->runs) {
        cJSON *run = run_json(f, row, on_grid, &point);
        if (!run || !cJSON_AddItemToArray(f->runs, run)) {
            cJSON_Delete(run);
            return false;
        }
    }
    if (!on_grid)
        return true;
    if (row->finished && row->has_outcome) {
        size_t i = f->nobs_seen++ % TUNE_OBSERVATIONS_MAX;
        f->obs[i] = (struct tune_observation){point, row->outcome.value};
        memcpy(f->obs_ids[i], row->id, sizeof(f->obs_ids[i]));
    } else if (!row->finished) {
        f->pending[f->npending_seen++ % TUNE_PENDING_MAX] = point;
    }
    return true;
}

/* A scan of a family: where it stands, and what it calls for each job. */
struct family_scan {
    store_job_fn fn;
    void *ctx;
    int64_t last_seq;
    int64_t seen;
    bool stopped;
};

static bool scan_one(void *ctx, const struct store_job *row)
{
    struct family_scan *scan = ctx;
    scan->last_seq = row->seq;
    scan->seen++;
    if (!scan->fn(scan->ctx, row)) {
        scan->stopped = true;
        return false;
    }
    return true;
}

int svc_family_scan(struct svc *svc, const char *family, int64_t most, store_job_fn fn, void *ctx,
                    char *err)
{
    struct family_scan scan = {fn, ctx, 0, 0, false};
    int64_t before;
    do {
        before = scan.seen;
        int rc = store_job_scan(svc->store, scan.last_seq, SVC_LIST_PAGE_MAX, STORE_ANY, NULL, NULL,
                                family, scan_one, &scan, err);
        if (rc)
            return rc;
        if (scan.stopped)
            return glr_fail(err, GLR_ENOMEM, "out of memory");
    } while (scan.seen - before == SVC_LIST_PAGE_MAX && scan.seen < most);
    return GLR_OK;
}

/* Reads the jobs of family (the oldest SVC_FAMILY_JOBS_MAX) into *f. */
static int read_family(struct svc *svc, const char *family, struct family_read *f, char *err)
{
    return svc_family_scan(svc, family, SVC_FAMILY_JOBS_MAX, read_one, f, err);
}

static size_t ring_count(size_t seen, size_t size)
{
    return seen < size ? seen : size;
}

static int choose(const struct family_read *f, enum tune_mode mode, uint64_t seed,
                  struct tune_choice *out, char *err)
{
    return tune_choose(f->space, f->obs, ring_count(f->nobs_seen, TUNE_OBSERVATIONS_MAX),
                       f->pending, ring_count(f->npending_seen, TUNE_PENDING_MAX), mode, seed, out,
                       err);
}

/* The id of the finished job whose outcome was the best. */
static const char *best_id(const struct family_read *f, const struct tune_choice *c)
{
    size_t n = ring_count(f->nobs_seen, TUNE_OBSERVATIONS_MAX);
    for (size_t i = 0; i < n; i++)
        if (f->obs[i].outcome == c->best_outcome &&
            memcmp(&f->obs[i].point, &c->best, sizeof(c->best)) == 0)
            return f->obs_ids[i];
    return "";
}

/* Why the choice is what it is, in a sentence. */
static void reason(const struct family_read *f, const char *family, const struct tune_choice *c,
                   enum tune_mode mode, char *out, size_t size)
{
    size_t m = tune_space_size(f->space);
    if (c->defaults && c->from_jobs == 0 && c->pending == 0) {
        snprintf(out, size, "no finished job of family %s yet: the defaults of %s", family,
                 f->policy);
        return;
    }
    char avoiding[96] = "";
    if (c->pending > 0)
        snprintf(avoiding, sizeof(avoiding), ", avoiding the settings of %zu running job%s",
                 c->pending, c->pending == 1 ? "" : "s");
    if (c->from_jobs == 0) {
        snprintf(out, size,
                 "no finished job of family %s yet: a draw from the prior over the %zu "
                 "settings of %s%s",
                 family, m, f->policy, avoiding);
        return;
    }
    char best[160] = "";
    if (c->has_best)
        snprintf(best, sizeof(best), " (best so far: %s, outcome %s)", best_id(f, c),
                 jsonx_text(c->best_outcome).s);
    snprintf(out, size, "%s over the %zu settings of %s from %zu finished job%s of family %s%s%s",
             mode == TUNE_SAMPLE ? "Thompson sampling" : "the lowest expected outcome", m,
             f->policy, c->from_jobs, c->from_jobs == 1 ? "" : "s", family, best, avoiding);
}

/* {"settings", "expected_outcome", "expected_range", "reason"} of a choice. */
static cJSON *choice_json(const struct family_read *f, const char *family,
                          const struct tune_choice *c, enum tune_mode mode)
{
    char why[512];
    reason(f, family, c, mode, why, sizeof(why));
    cJSON *range = isnan(c->expected) ? cJSON_CreateNull() : cJSON_CreateArray();
    if (range && !isnan(c->expected) &&
        (!cJSON_AddItemToArray(range, jsonx_number(c->low)) ||
         !cJSON_AddItemToArray(range, jsonx_number(c->high)))) {
        cJSON_Delete(range);
        range = NULL;
    }
    cJSON *o = cJSON_CreateObject();
    bool ok = o && jsonx_add_integer(o, "from_jobs", (int64_t)c->from_jobs) &&
              svc_json_add(o, "settings", settings_json(f->space, &c->point)) &&
              jsonx_add_number_or_null(o, "expected_outcome", c->expected);
    ok = ok ? svc_json_add(o, "expected_range", range) : (cJSON_Delete(range), false);
    ok = ok && cJSON_AddStringToObject(o, "reason", why);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---- a tuned create ------------------------------------------------------------------- */

/* lr times factor, in its shape; what is not a number is left for the create to refuse. */
static cJSON *scaled_lr(const cJSON *lr, double factor)
{
    /* Plain cJSON numbers, as a client's request holds them: the core reads those. */
    if (cJSON_IsNumber(lr))
        return cJSON_CreateNumber(lr->valuedouble * factor);
    cJSON *out = cJSON_Duplicate(lr, true);
    if (!cJSON_IsArray(out))
        return out;
    for (cJSON *item = out->child; item; item = item->next)
        if (cJSON_IsNumber(item))
            cJSON_SetNumberValue(item, item->valuedouble * factor);
    return out;
}

void svc_tuned_clear(struct svc_tuned *t)
{
    cJSON_Delete(t->lr);
    cJSON_Delete(t->config);
    free(t->record);
    free(t->request);
    memset(t, 0, sizeof(*t));
}

char *svc_tuned_request(const char *policy, const cJSON *lr, const cJSON *config)
{
    cJSON *request = cJSON_CreateObject();
    if (request && policy && !cJSON_AddStringToObject(request, "policy", policy)) {
        cJSON_Delete(request);
        return NULL;
    }
    cJSON *config_copy =
        cJSON_IsObject(config) ? cJSON_Duplicate(config, true) : cJSON_CreateObject();
    char *text = NULL;
    if (request && svc_json_add(request, "lr", cJSON_Duplicate(lr, true)) &&
        svc_json_add(request, "config", config_copy))
        text = svc_json_print(request);
    else if (!request)
        cJSON_Delete(config_copy);
    cJSON_Delete(request);
    return text;
}

int svc_family_tune(struct svc *svc, const char *family, const char *policy, const cJSON *lr,
                    const cJSON *config, struct svc_tuned *out, char *err)
{
    memset(out, 0, sizeof(*out));
    glr_mutex_assert_held(&svc->tune_lock);
    const struct tune_space *space = tune_space_find(policy);
    if (!space)
        return glr_fail(err, GLR_EINVAL, "policy %s cannot be tuned: tune takes %s", policy,
                        tune_policy_names());
    if (config && !cJSON_IsNull(config) && !cJSON_IsObject(config))
        return glr_fail(err, GLR_EINVAL, "config must be a JSON object");
    for (size_t d = 0; d < space->ndims; d++) {
        const char *key = space->dims[d].key;
        if (cJSON_GetObjectItemCaseSensitive(config, key))
            return glr_fail(err, GLR_EINVAL,
                            "config key %s is what tune chooses: leave it out, or create the "
                            "job without tune",
                            key);
    }
    if (!cJSON_IsNumber(lr) && !cJSON_IsArray(lr))
        return glr_fail(err, GLR_EINVAL, "lr must be a number > 0 or an array of them");

    struct family_read *f = calloc(1, sizeof(*f));
    if (!f)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    f->space = space;
    f->policy = policy;
    uint64_t seed = 0;
    struct tune_choice c;
    int rc = read_family(svc, family, f, err);
    if (!rc)
        rc = glr_random_bytes(&seed, sizeof(seed), err);
    if (!rc)
        rc = choose(f, TUNE_SAMPLE, seed, &c, err);
    cJSON *record = rc ? NULL : choice_json(f, family, &c, TUNE_SAMPLE);
    free(f);
    if (rc)
        return rc;

    out->request = svc_tuned_request(NULL, lr, config);
    out->config = cJSON_IsObject(config) ? cJSON_Duplicate(config, true) : cJSON_CreateObject();
    bool ok = record && out->request && out->config;
    for (size_t d = 0; ok && d < space->ndims; d++) {
        double value = tune_value(space, &c.point, d);
        if (strcmp(space->dims[d].key, TUNE_LR_FACTOR) == 0)
            ok = (out->lr = scaled_lr(lr, value)) != NULL;
        else
            ok = cJSON_AddNumberToObject(out->config, space->dims[d].key, value) != NULL;
    }
    ok = ok && svc_json_add(record, "request", cJSON_Parse(out->request));
    if (ok)
        out->record = svc_json_print(record);
    cJSON_Delete(record);
    if (!ok || !out->record) {
        svc_tuned_clear(out);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    return GLR_OK;
}

/* ---- the families routes ---------------------------------------------------------------- */

/* Page tokens of the families list: "f" and the last name of the page before. */
static int family_token_parse(const char *token, const char **after, char *err)
{
    *after = "";
    if (!token)
        return GLR_OK;
    if (token[0] != 'f' || !svc_valid_id(token + 1))
        return glr_fail(err, GLR_EINVAL, "page_token is not one this server gave");
    *after = token + 1;
    return GLR_OK;
}

struct family_list {
    cJSON *families;
    int64_t count, wanted;
    char last[STORE_ID_MAX + 1];
    bool more, out_of_memory;
};

static bool list_family(void *ctx, const struct store_family *family)
{
    struct family_list *l = ctx;
    if (l->count == l->wanted) {
        l->more = true;
        return false;
    }
    char updated[GLR_TIME_TEXT_MAX];
    glr_clock_format(family->updated_ms, updated);
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "name", family->name) &&
              jsonx_add_integer(o, "jobs", family->jobs) &&
              jsonx_add_integer(o, "finished", family->finished) &&
              svc_json_add(o, "best_outcome",
                           isnan(family->best_outcome) ? cJSON_CreateNull()
                                                       : jsonx_number(family->best_outcome)) &&
              cJSON_AddStringToObject(o, "updated_at", updated);
    if (!ok || !cJSON_AddItemToArray(l->families, o)) {
        cJSON_Delete(o);
        l->out_of_memory = true;
        return false;
    }
    l->count++;
    snprintf(l->last, sizeof(l->last), "%s", family->name);
    return true;
}

int svc_family_list(struct svc *svc, int64_t page_size, const char *page_token, cJSON **out,
                    char *err)
{
    *out = NULL;
    const char *after;
    int rc = family_token_parse(page_token, &after, err);
    if (rc)
        return rc;
    cJSON *answer = cJSON_CreateObject();
    struct family_list l = {.families = cJSON_AddArrayToObject(answer, "families"),
                            .wanted = page_size};
    if (!answer || !l.families) {
        cJSON_Delete(answer);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    rc = store_family_scan(svc->store, after, page_size + 1, list_family, &l, err);
    if (!rc && l.out_of_memory)
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    char token[STORE_ID_MAX + 2];
    snprintf(token, sizeof(token), "f%s", l.last);
    if (!rc && !svc_json_add(answer, "next_page_token",
                             l.more ? cJSON_CreateString(token) : cJSON_CreateNull()))
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    if (rc) {
        cJSON_Delete(answer);
        return rc;
    }
    *out = answer;
    return GLR_OK;
}

/* The best finished job of a choice: {"job", "settings", "outcome"}, or null. */
static cJSON *best_json(const struct family_read *f, const struct tune_choice *c)
{
    if (!c->has_best)
        return cJSON_CreateNull();
    cJSON *best = cJSON_CreateObject();
    if (!best || !cJSON_AddStringToObject(best, "job", best_id(f, c)) ||
        !svc_json_add(best, "settings", settings_json(f->space, &c->best)) ||
        !svc_json_add(best, "outcome", jsonx_number(c->best_outcome))) {
        cJSON_Delete(best);
        return NULL;
    }
    return best;
}

/* The grid of a space: {key: [values], ...}. */
static cJSON *grid_json(const struct tune_space *space)
{
    cJSON *grid = cJSON_CreateObject();
    for (size_t d = 0; grid && d < space->ndims; d++) {
        if (!svc_json_add(grid, space->dims[d].key,
                          jsonx_number_array(space->dims[d].values, space->dims[d].count))) {
            cJSON_Delete(grid);
            return NULL;
        }
    }
    return grid;
}

int svc_family_get(struct svc *svc, const char *name, const char *policy, cJSON **out, char *err)
{
    *out = NULL;
    if (!svc_valid_id(name))
        return glr_fail(err, GLR_ENOTFOUND, "family %.128s has no job", name);
    const struct tune_space *space = tune_space_find(policy ? policy : "auto");
    if (!space)
        return glr_fail(err, GLR_EINVAL, "policy must be %s", tune_policy_names());
    struct family_read *f = calloc(1, sizeof(*f));
    cJSON *runs = cJSON_CreateArray();
    if (!f || !runs) {
        free(f);
        cJSON_Delete(runs);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    f->space = space;
    f->policy = space->policy;
    f->runs = runs;
    struct tune_choice c;
    cJSON *model = NULL;
    int rc = read_family(svc, name, f, err);
    if (!rc && f->jobs == 0)
        rc = glr_fail(err, GLR_ENOTFOUND, "family %s has no job", name);
    if (!rc)
        rc = choose(f, TUNE_MEAN, 0, &c, err);
    if (!rc)
        rc = svc_family_model(svc, name, &model, err);
    if (rc) {
        cJSON_Delete(runs);
        free(f);
        return rc;
    }
    /* From here every item belongs to answer as soon as it is made. */
    cJSON *answer = cJSON_CreateObject();
    cJSON *tuning = NULL;
    bool ok = answer && cJSON_AddStringToObject(answer, "name", name) &&
              jsonx_add_integer(answer, "jobs", f->jobs) &&
              jsonx_add_integer(answer, "finished", f->finished) &&
              jsonx_add_integer(answer, "running", f->running);
    ok = ok ? svc_json_add(answer, "runs", runs) : (cJSON_Delete(runs), false);
    ok = ok && (tuning = cJSON_AddObjectToObject(answer, "tuning")) != NULL &&
         cJSON_AddStringToObject(tuning, "policy", space->policy) &&
         svc_json_add(tuning, "grid", grid_json(space)) &&
         jsonx_add_integer(tuning, "from_jobs", (int64_t)c.from_jobs) &&
         jsonx_add_integer(tuning, "pending", (int64_t)c.pending) &&
         svc_json_add(tuning, "best", best_json(f, &c)) &&
         svc_json_add(tuning, "next", choice_json(f, name, &c, TUNE_MEAN));
    ok = ok ? svc_json_add(answer, "model", model) : (cJSON_Delete(model), false);
    free(f);
    if (!ok) {
        cJSON_Delete(answer);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    *out = answer;
    return GLR_OK;
}
