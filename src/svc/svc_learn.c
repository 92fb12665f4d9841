/*
 * Learned models of families (see svc.h): training a new version from the family's stored
 * histories (core/learn.h fits it; this file reads the runs for it and stores the result),
 * and what a job created with policy "learned" is given: the family's newest model, or
 * auto when the family has none yet.
 *
 * Learning reads the store only through readers, a page of history at a time, and takes
 * no job lock: reports go on while a family learns.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/learn.h"
#include "svc/svc_int.h"

/* Rows of history one read takes: a reader is held for one page, not for a whole run. */
#define LEARN_PAGE_ROWS 4096

/* ---- which runs a model is trained on --------------------------------------------------- */

/*
 * A finished run of the family, as the fit needs it. The scan copies the row's texts and
 * nothing more (it holds a reader meanwhile); source_ready() reads them after it.
 */
struct learn_source {
    int64_t seq;
    char id[STORE_ID_MAX + 1];
    double outcome;
    char *policy, *initial_lr, *config, *tuned; /* copies of the row's (tuned may be NULL) */
    int64_t horizon; /* its declared total_steps, else the reports it made (0: not known yet) */
    double base_lr;  /* the lr its client asked for (before a tuned lr factor) */
    double first_lr; /* the lr it answered when it was created, for its first report's period */
};

/* The newest LEARN_RUNS_MAX finished runs with a finite outcome, in a ring. */
struct learn_sources {
    struct learn_source runs[LEARN_RUNS_MAX];
    size_t seen;
    int64_t jobs;
};

static void source_clear(struct learn_source *src)
{
    free(src->policy);
    free(src->initial_lr);
    free(src->config);
    free(src->tuned);
    memset(src, 0, sizeof(*src));
}

static void sources_clear(struct learn_sources *s)
{
    for (size_t i = 0; i < LEARN_RUNS_MAX; i++)
        source_clear(&s->runs[i]);
}

/* The first group's lr of a job's initial_lr (a number or an array), or NaN. */
static double first_lr(const cJSON *lr)
{
    const cJSON *first = cJSON_IsArray(lr) ? cJSON_GetArrayItem(lr, 0) : lr;
    double value = NAN;
    if (!jsonx_get_double(first, &value))
        value = NAN;
    return value;
}

/* The lr factor tuning chose for a job (1 for a job that was not tuned). */
static double tuned_factor(const char *tuned)
{
    cJSON *record = tuned ? cJSON_Parse(tuned) : NULL;
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(record, "settings");
    double factor = 1.0;
    if (!jsonx_get_double(cJSON_GetObjectItemCaseSensitive(settings, "lr_factor"), &factor) ||
        !(factor > 0))
        factor = 1.0;
    cJSON_Delete(record);
    return factor;
}

/* The horizon a job declared (total_steps of its config), or 0. */
static int64_t declared_horizon(const cJSON *config)
{
    double steps = 0;
    if (!jsonx_get_double(cJSON_GetObjectItemCaseSensitive(config, "total_steps"), &steps) ||
        !(steps >= 1 && steps <= GLR_MAX_COUNT))
        steps = 0;
    return (int64_t)steps;
}

static bool take_source(void *ctx, const struct store_job *row)
{
    struct learn_sources *s = ctx;
    s->jobs++;
    if (!row->finished || !row->has_outcome || !isfinite(row->outcome.value))
        return true;
    struct learn_source *src = &s->runs[s->seen++ % LEARN_RUNS_MAX];
    source_clear(src);
    src->seq = row->seq;
    memcpy(src->id, row->id, sizeof(src->id));
    src->outcome = row->outcome.value;
    src->policy = strdup(row->policy);
    src->initial_lr = strdup(row->initial_lr);
    src->config = strdup(row->config);
    src->tuned = row->tuned ? strdup(row->tuned) : NULL;
    return src->policy && src->initial_lr && src->config && (src->tuned || !row->tuned);
}

/*
 * Reads what the fit needs from a source's texts; false for a run it cannot use (an lr
 * that is not a number > 0, a config its policy no longer takes).
 */
static bool source_ready(struct learn_source *src)
{
    cJSON *initial = cJSON_Parse(src->initial_lr);
    cJSON *config = cJSON_Parse(src->config);
    double lr = first_lr(initial);
    /*
     * The lr a job answered when it was created (a warmup's first, say) is in no row of its
     * history: its scheduler made anew from the row says it.
     */
    struct glr_sched *sched = NULL;
    src->first_lr = NAN;
    if (lr > 0 && isfinite(lr) &&
        glr_sched_create(src->policy, initial, config, &sched, NULL) == GLR_OK)
        src->first_lr = glr_sched_lrs(sched)[0];
    glr_sched_free(sched);
    /* The row's counts may lag its history (svc.c): the history is what is counted. */
    src->horizon = declared_horizon(config);
    src->base_lr = lr / tuned_factor(src->tuned);
    cJSON_Delete(initial);
    cJSON_Delete(config);
    return src->first_lr > 0 && isfinite(src->first_lr) && src->base_lr > 0;
}

/* ---- a run's points ----------------------------------------------------------------------- */

/*
 * A read of one run's history into its points. The number of reports is known only at the
 * end, so the points are sampled as they come: when LEARN_POINTS_MAX are kept, every other
 * one is dropped and the sampling interval doubles. A point's progress holds its report's
 * number until the read ends.
 */
struct point_read {
    struct learn_trend trend;
    double base_lr;
    int64_t stride; /* every stride-th report becomes a point */
    int64_t reports;
    int64_t last_step, last_rank; /* the last row read: the next page starts after it */
    bool any;
    int64_t page_rows; /* rows of the page being read */
    struct learn_point *points;
    size_t npoints;
};

static bool read_point(void *ctx, const struct store_report *row)
{
    struct point_read *r = ctx;
    bool new_step = !r->any || row->step != r->last_step;
    r->any = true;
    r->page_rows++;
    r->last_step = row->step;
    r->last_rank = row->rank;
    /* A step of several ranks has a row for each: its decision is the same in all. */
    if (!new_step)
        return true;
    r->reports++;
    learn_trend_add(&r->trend, row->loss);
    if (r->reports % r->stride != 0 || row->groups == 0)
        return true;
    if (r->npoints == LEARN_POINTS_MAX) {
        for (size_t i = 1; i < LEARN_POINTS_MAX / 2 + 1; i++)
            r->points[i - 1] = r->points[2 * i - 1];
        r->npoints = LEARN_POINTS_MAX / 2;
        r->stride *= 2;
        if (r->reports % r->stride != 0)
            return true;
    }
    r->points[r->npoints++] = (struct learn_point){
        .progress = (double)r->reports,
        .trend = learn_trend_value(&r->trend),
        .level = learn_level_of(row->lrs[0] / r->base_lr),
    };
    return true;
}

/*
 * Reads the points of src into *points (the caller's: free()), and sets src->horizon when
 * the job declared none.
 */
static int read_points(struct svc *svc, struct learn_source *src, struct learn_point **points,
                       size_t *npoints, char *err)
{
    /* The trend's spans need a horizon: without a declared one, the history's length. */
    if (src->horizon == 0) {
        int rc = store_history_steps(svc->store, src->seq, &src->horizon, err);
        if (rc)
            return rc;
        if (src->horizon < 1)
            src->horizon = 1;
    }
    struct point_read r = {.base_lr = src->base_lr, .stride = 1};
    learn_trend_init(&r.trend, src->horizon);
    r.points = malloc((LEARN_POINTS_MAX + 1) * sizeof(*r.points));
    if (!r.points)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    int64_t from_step = 0, from_rank = 0;
    do {
        if (atomic_load(&svc->stopping)) {
            free(r.points);
            return glr_fail(err, GLR_EBUSY, "the service is stopping; learn again after it");
        }
        r.page_rows = 0;
        int rc = store_report_scan(svc->store, src->seq, from_step, from_rank, GLR_MAX_STEP,
                                   LEARN_PAGE_ROWS, read_point, &r, err);
        if (rc) {
            free(r.points);
            return rc;
        }
        from_step = r.last_step;
        from_rank = r.last_rank + 1;
    } while (r.page_rows == LEARN_PAGE_ROWS);
    /* The answer to a run's last report was never used: it says nothing of the run. */
    if (r.npoints > 0 && r.points[r.npoints - 1].progress == (double)r.reports)
        r.npoints--;
    for (size_t i = 0; i < r.npoints; i++)
        r.points[i].progress = fmin(r.points[i].progress / (double)src->horizon, 1.0);
    /* The period before the first report comes first, at progress 0 (room is kept for it). */
    memmove(r.points + 1, r.points, r.npoints * sizeof(*r.points));
    r.points[0] = (struct learn_point){
        .progress = 0,
        .trend = 0,
        .level = learn_level_of(src->first_lr / src->base_lr),
    };
    r.npoints++;
    *points = r.points;
    *npoints = r.npoints;
    return GLR_OK;
}

/* ---- training --------------------------------------------------------------------------- */

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The model's record, as POST /learn answers it and GET /v1/families/{name} shows it. */
static cJSON *model_json(const struct store_model *m)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "family", m->family) &&
              jsonx_add_integer(o, "version", m->version) &&
              svc_json_add_time(o, "created_at", m->created_ms) &&
              svc_json_add(o, "trained_on", cJSON_Parse(m->trained_on)) &&
              svc_json_add(o, "fit", jsonx_parse_exact(m->fit)) &&
              svc_json_add(o, "model", jsonx_parse_exact(m->model));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The fit's record: what it read and how sure it is. */
static char *fit_text(const struct learn_fit_info *info, size_t sources)
{
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && jsonx_add_integer(o, "from_jobs", (int64_t)info->runs) &&
        jsonx_add_integer(o, "read_jobs", (int64_t)sources) &&
        jsonx_add_number(o, "effective_runs", info->effective_runs) &&
        jsonx_add_number(o, "best_outcome", info->best_outcome) &&
        cJSON_AddStringToObject(o, "method", "reward-weighted regression"))
        text = svc_json_print(o);
    cJSON_Delete(o);
    return text;
}

/* Fits a model to the sources and fills m's texts. */
static int train(struct svc *svc, struct learn_sources *s, struct store_model *m, char *err)
{
    size_t n = s->seen < LEARN_RUNS_MAX ? s->seen : LEARN_RUNS_MAX;
    struct learn_run *runs = calloc(n ? n : 1, sizeof(*runs));
    struct learn_point **points = calloc(n ? n : 1, sizeof(*points));
    int64_t horizons[LEARN_RUNS_MAX];
    cJSON *ids = cJSON_CreateArray();
    int rc = runs && points && ids ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
    size_t used = 0; /* runs whose texts could be read: runs[0..used) */
    for (size_t i = 0; !rc && i < n; i++) {
        /* Oldest first, as the ring holds them once it has wrapped. */
        struct learn_source *src = &s->runs[(s->seen - n + i) % LEARN_RUNS_MAX];
        if (!source_ready(src))
            continue;
        rc = read_points(svc, src, &points[used], &runs[used].npoints, err);
        runs[used].points = points[used];
        runs[used].outcome = src->outcome;
        horizons[used] = src->horizon;
        if (!rc && runs[used].npoints >= LEARN_POINTS_MIN &&
            !cJSON_AddItemToArray(ids, cJSON_CreateString(src->id)))
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
        used++;
    }
    struct learn_model model;
    struct learn_fit_info info;
    if (!rc) {
        qsort(horizons, used, sizeof(horizons[0]), compare_int64);
        int64_t horizon = used ? horizons[used / 2] : 1;
        rc = learn_fit(runs, used, horizon, &model, &info, err);
    }
    cJSON *o = rc ? NULL : cJSON_CreateObject();
    if (!rc && !(o && learn_model_json(&model, o)))
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    if (!rc) {
        /* Stored only if a learned job's config would take it: read it back as one does. */
        cJSON *back = jsonx_parse_exact(m->model = svc_json_print(o));
        struct learn_model check;
        rc = back ? learn_model_read(back, "the fitted model", &check, err)
                  : glr_fail(err, GLR_ENOMEM, "out of memory");
        cJSON_Delete(back);
    }
    cJSON_Delete(o);
    if (!rc) {
        m->trained_on = svc_json_print(ids);
        m->fit = fit_text(&info, used);
        if (!m->model || !m->trained_on || !m->fit)
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    for (size_t i = 0; points && i < used; i++)
        free(points[i]);
    free(points);
    free(runs);
    cJSON_Delete(ids);
    return rc;
}

int svc_family_learn(struct svc *svc, const char *family, cJSON **out, char *err)
{
    *out = NULL;
    if (!svc_valid_id(family))
        return glr_fail(err, GLR_ENOTFOUND, "family %.128s has no job", family);
    struct learn_sources *s = calloc(1, sizeof(*s));
    if (!s)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    struct store_model m = {0};
    snprintf(m.family, sizeof(m.family), "%s", family);
    /* Every job, so that the ring keeps the newest: it alone bounds what is kept. */
    int rc = svc_family_scan(svc, family, INT64_MAX, take_source, s, err);
    if (!rc && s->jobs == 0)
        rc = glr_fail(err, GLR_ENOTFOUND, "family %s has no job", family);
    if (!rc) {
        char why[GLR_ERR_MAX];
        rc = train(svc, s, &m, why);
        if (rc == GLR_EINVAL)
            glr_fail(err, GLR_EINVAL, "family %s cannot learn yet: %.120s", family, why);
        else if (rc)
            memcpy(err, why, GLR_ERR_MAX);
    }
    sources_clear(s);
    free(s);
    if (!rc) {
        m.created_ms = glr_clock_wall_ms();
        rc = store_model_insert(svc->store, &m, err);
    }
    if (!rc && !(*out = model_json(&m)))
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    store_model_clear(&m);
    return rc;
}

int svc_family_model(struct svc *svc, const char *family, cJSON **out, char *err)
{
    *out = NULL;
    struct store_model m;
    int rc = store_model_latest(svc->store, family, &m, err);
    if (rc == GLR_ENOTFOUND) {
        *out = cJSON_CreateNull();
        return *out ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    if (rc)
        return rc;
    *out = model_json(&m);
    store_model_clear(&m);
    return *out ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
}

/* ---- a learned create ------------------------------------------------------------------- */

static bool any_job(void *ctx, const struct store_job *row)
{
    (void)row;
    *(bool *)ctx = true;
    return true;
}

/* The keys of a learned job's config that the service sets. */
static const char *const service_keys[] = {"model", "model_version", NULL};

int svc_family_learned(struct svc *svc, const char *family, const cJSON *lr, const cJSON *config,
                       struct svc_tuned *out, const char **policy, char *err)
{
    memset(out, 0, sizeof(*out));
    *policy = "learned";
    if (config && !cJSON_IsNull(config) && !cJSON_IsObject(config))
        return glr_fail(err, GLR_EINVAL, "config must be a JSON object");
    for (size_t i = 0; service_keys[i]; i++)
        if (cJSON_GetObjectItemCaseSensitive(config, service_keys[i]))
            return glr_fail(err, GLR_EINVAL,
                            "config key %s is the service's: a learned job runs its family's "
                            "newest model",
                            service_keys[i]);
    struct store_model m;
    int rc = store_model_latest(svc->store, family, &m, err);
    bool have_model = rc == GLR_OK;
    if (rc == GLR_ENOTFOUND) {
        bool known = false;
        rc = store_job_scan(svc->store, 0, 1, STORE_ANY, NULL, NULL, family, any_job, &known, err);
        if (!rc && !known)
            return glr_fail(err, GLR_EINVAL,
                            "family %s is unknown: a learned job runs a model learned from its "
                            "family's finished jobs (POST /v1/families/%s/learn)",
                            family, family);
    }
    if (rc)
        return rc;

    char why[512];
    cJSON *record = cJSON_CreateObject();
    cJSON *fit = have_model ? cJSON_Parse(m.fit) : NULL;
    double from_jobs = 0;
    jsonx_get_double(cJSON_GetObjectItemCaseSensitive(fit, "from_jobs"), &from_jobs);
    out->config = cJSON_IsObject(config) ? cJSON_Duplicate(config, true) : cJSON_CreateObject();
    out->lr = cJSON_Duplicate(lr, true);
    bool ok = record && out->config && (out->lr || !lr);
    if (have_model) {
        snprintf(why, sizeof(why),
                 "model version %lld of family %s, learned from %.0f finished jobs",
                 (long long)m.version, family, from_jobs);
        cJSON *settings = NULL;
        ok = ok && svc_json_add(out->config, "model", cJSON_Parse(m.model)) &&
             cJSON_AddNumberToObject(out->config, "model_version", (double)m.version) &&
             jsonx_add_integer(record, "from_jobs", (int64_t)from_jobs) &&
             (settings = cJSON_AddObjectToObject(record, "settings")) != NULL &&
             jsonx_add_integer(settings, "model_version", m.version);
    } else {
        /* Said in the job's record, and the job runs auto: a working policy, not an error. */
        *policy = "auto";
        snprintf(why, sizeof(why),
                 "family %s has no learned model yet (POST /v1/families/%s/learn makes one from "
                 "%d or more finished jobs): auto with its defaults",
                 family, family, LEARN_RUNS_MIN);
        ok = ok && jsonx_add_integer(record, "from_jobs", 0) &&
             cJSON_AddStringToObject(record, "fallback", "auto");
    }
    ok = ok && cJSON_AddStringToObject(record, "reason", why);
    out->request = ok ? svc_tuned_request("learned", lr, config) : NULL;
    ok = ok && out->request && svc_json_add(record, "request", cJSON_Parse(out->request));
    if (ok)
        out->record = svc_json_print(record);
    cJSON_Delete(record);
    cJSON_Delete(fit);
    if (have_model)
        store_model_clear(&m);
    if (!ok || !out->record) {
        svc_tuned_clear(out);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    return GLR_OK;
}
