/*
 * The scheduling service (see svc.h): jobs in memory over the store, their creation,
 * changes and listing. Reports, history and rewinds are in svc_report.c, svc_history.c
 * and svc_rewind.c.
 */
#include "svc/svc.h"
#include "svc/svc_int.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/hash.h"
#include "base/jsonx.h"
#include "base/random.h"
#include "core/tune.h"
/* ---- small helpers ------------------------------------------------------------------ */

bool svc_valid_id(const char *id)
{
    size_t len = 0;
    for (const char *p = id; *p; p++, len++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || len >= STORE_ID_MAX)
            return false;
    }
    /* "." and ".." are the dot segments of a path (RFC 3986): a URL cannot hold them. */
    return len > 0 && strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

/* Makes a random job id "job-" + 24 hex digits. */
static int make_id(char id[STORE_ID_MAX + 1], char *err)
{
    unsigned char bytes[12];
    int rc = glr_random_bytes(bytes, sizeof(bytes), err);
    if (rc)
        return rc;
    int len = snprintf(id, STORE_ID_MAX + 1, "job-");
    for (size_t i = 0; i < sizeof(bytes); i++)
        len += snprintf(id + len, (size_t)(STORE_ID_MAX + 1 - len), "%02x", bytes[i]);
    return GLR_OK;
}

bool svc_parse_decimal(const char **p, int64_t *out)
{
    const char *s = *p;
    int64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        int digit = *s - '0';
        if (v > (INT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    if (s == *p)
        return false;
    *p = s;
    *out = v;
    return true;
}

char *svc_json_print(const cJSON *tree)
{
    return tree ? cJSON_PrintUnformatted(tree) : NULL;
}

/*
 * A job's tags once checked: their canonical JSON text (owned) and the same tags as the
 * store indexes them (borrowed from the request's JSON, valid while it is).
 */
struct checked_tags {
    char *text;
    struct store_tag pairs[SVC_TAGS_MAX];
    size_t count;
};

/*
 * Checks tags (a JSON object of strings, within the limits) into *out; NULL tags give
 * "{}". The caller frees out->text. This is the one place tags are read.
 */
static int check_tags(const cJSON *tags, struct checked_tags *out, char *err)
{
    out->text = NULL;
    out->count = 0;
    if (!tags || cJSON_IsNull(tags)) {
        out->text = strdup("{}");
        return out->text ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    if (!cJSON_IsObject(tags))
        return glr_fail(err, GLR_EINVAL, "tags must be an object of strings");
    int count = 0;
    const cJSON *tag;
    cJSON_ArrayForEach(tag, tags)
    {
        if (++count > SVC_TAGS_MAX)
            return glr_fail(err, GLR_EINVAL, "tags: at most %d tags", SVC_TAGS_MAX);
        size_t key_len = strlen(tag->string);
        if (key_len == 0 || key_len > SVC_TAG_KEY_MAX || strchr(tag->string, ':'))
            return glr_fail(err, GLR_EINVAL,
                            "tags: a key must have 1 to %d bytes and no ':' (\"%.64s\")",
                            SVC_TAG_KEY_MAX, tag->string);
        if (!cJSON_IsString(tag))
            return glr_fail(err, GLR_EINVAL, "tags.%.64s must be a string", tag->string);
        if (strlen(tag->valuestring) > SVC_TAG_VALUE_MAX)
            return glr_fail(err, GLR_EINVAL, "tags.%.64s: at most %d bytes", tag->string,
                            SVC_TAG_VALUE_MAX);
        for (const cJSON *other = tag->next; other; other = other->next)
            if (strcmp(other->string, tag->string) == 0)
                return glr_fail(err, GLR_EINVAL, "tags.%.64s is given twice", tag->string);
        out->pairs[out->count++] = (struct store_tag){tag->string, tag->valuestring};
    }
    out->text = svc_json_print(tags);
    return out->text ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
}

/* ---- jobs as JSON --------------------------------------------------------------------- */

/* The fields of a job that are not in its scheduler. */
struct job_view {
    const char *id;
    const char *family; /* "" for none */
    const char *tuned;  /* JSON; NULL for none */
    const char *tags;
    bool finished;
    bool has_outcome;
    struct store_outcome outcome;
    int64_t last_step;
    int64_t reports;
    int64_t rewinds;
    int64_t created_ms;
    int64_t updated_ms;
    int64_t world_size;
    const char *aggregate;
    int64_t aggregate_timeout_ms;
};

bool svc_json_add(cJSON *object, const char *key, cJSON *item)
{
    if (!item || !cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

bool svc_json_add_time(cJSON *object, const char *key, int64_t ms)
{
    char text[GLR_TIME_TEXT_MAX];
    glr_clock_format(ms, text);
    return cJSON_AddStringToObject(object, key, text) != NULL;
}

/* A finished job's outcome as JSON: {"value", "source", "last_loss", "best_loss"}, or null. */
static cJSON *outcome_json(const struct job_view *v)
{
    if (!v->has_outcome)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    if (!o || !svc_json_add(o, "value", jsonx_number(v->outcome.value)) ||
        !cJSON_AddStringToObject(o, "source", v->outcome.given ? "given" : "last_loss") ||
        !svc_json_add(o, "last_loss", jsonx_number(v->outcome.last_loss)) ||
        !jsonx_add_number_or_null(o, "best_loss", v->outcome.best_loss)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *describe(const struct job_view *v, const struct glr_sched *sched)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "id", v->id) &&
              cJSON_AddStringToObject(o, "policy", glr_sched_policy(sched)) &&
              svc_json_add(o, "lr", glr_sched_lr_json(sched)) &&
              svc_json_add(o, "initial_lr", glr_sched_initial_lr_json(sched)) &&
              svc_json_add(o, "config", glr_sched_config_json(sched)) &&
              svc_json_add(o, "tags", cJSON_Parse(v->tags)) &&
              svc_json_add(o, "family",
                           v->family[0] ? cJSON_CreateString(v->family) : cJSON_CreateNull()) &&
              cJSON_AddStringToObject(o, "status", v->finished ? "finished" : "running") &&
              svc_json_add(o, "last_step",
                           v->last_step >= 0 ? cJSON_CreateNumber((double)v->last_step)
                                             : cJSON_CreateNull()) &&
              jsonx_add_integer(o, "reports", v->reports) &&
              jsonx_add_integer(o, "rewinds", v->rewinds) &&
              jsonx_add_integer(o, "world_size", v->world_size) &&
              cJSON_AddStringToObject(o, "aggregate", v->aggregate) &&
              jsonx_add_integer(o, "aggregate_timeout_ms", v->aggregate_timeout_ms) &&
              svc_json_add(o, "state", glr_sched_counters_json(sched)) &&
              svc_json_add(o, "outcome", outcome_json(v)) &&
              svc_json_add(o, "tuned", v->tuned ? cJSON_Parse(v->tuned) : cJSON_CreateNull()) &&
              svc_json_add_time(o, "created_at", v->created_ms) &&
              svc_json_add_time(o, "updated_at", v->updated_ms);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Describes a job in memory; call with job->lock held. */
int svc_describe_job(const struct svc_job *job, cJSON **out, char *err)
{
    struct job_view v = {job->id,
                         job->family,
                         job->tuned,
                         job->tags,
                         job->finished,
                         job->has_outcome,
                         job->outcome,
                         job->last_step,
                         job->reports,
                         job->rewinds,
                         job->created_ms,
                         job->updated_ms,
                         job->world_size,
                         svc_aggregate_names[job->aggregate],
                         job->aggregate_timeout_ms};
    *out = describe(&v, job->sched);
    return *out ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
}

/* ---- the service ---------------------------------------------------------------------- */

int svc_open(const char *path, const struct svc_options *options, struct svc **out, char *err)
{
    *out = NULL;
    struct svc *svc = calloc(1, sizeof(*svc));
    if (!svc)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    struct svc_options defaults = {.resident_jobs = SVC_RESIDENT_DEFAULT};
    if (!options)
        options = &defaults;
    size_t resident = options->resident_jobs ? options->resident_jobs : SVC_RESIDENT_DEFAULT;
    atomic_init(&svc->stopping, false);
    svc_wait_init(&svc->waits);
    glr_mutex_init(&svc->tune_lock, SVC_LOCK_TUNE);
    atomic_init(&svc->csv_exports, 0);
    svc->max_reports_per_job = options->max_reports_per_job;
    int rc = svc_jobs_init(&svc->jobs, resident, err);
    if (!rc)
        rc = store_open(path, &options->store, &svc->store, err);
    if (!rc)
        rc = svc_wait_start(svc, svc_report_expire, svc_report_drop_gathered, err);
    if (rc) {
        svc_close(svc);
        return rc;
    }
    *out = svc;
    return GLR_OK;
}

struct store *svc_store(struct svc *svc)
{
    return svc->store;
}

void svc_cancel_waiter(struct svc *svc, const char *id, struct svc_waiter *waiter)
{
    /* A job that is not in memory has nobody waiting on it: do not load it to look. */
    if (!svc_jobs_resident(&svc->jobs, id))
        return;
    char err[GLR_ERR_MAX];
    struct svc_job *job;
    if (svc_job_lock(svc, id, &job, err))
        return;
    svc_wait_cancel(svc, job, waiter, GLR_EBUSY, "the client went away");
    svc_job_unlock(svc, job);
}

void svc_cancel_waiters(struct svc *svc)
{
    atomic_store(&svc->stopping, true);
    svc_wait_stop(svc);
}

void svc_close(struct svc *svc)
{
    if (!svc)
        return;
    svc_wait_stop(svc);
    /* Decisions still on their way are committed and answered while the jobs exist. */
    store_close(svc->store);
    svc->store = NULL;
    /* Jobs dropped from the table but still watched are only in the heap now. */
    svc_wait_destroy(svc);
    svc_jobs_destroy(&svc->jobs);
    glr_mutex_destroy(&svc->tune_lock);
    free(svc);
}

int svc_check_step(const char *name, int64_t step, int64_t min, char *err)
{
    if (step < min || step > GLR_MAX_STEP)
        return glr_fail(err, GLR_EINVAL, "%s must be an integer from %lld to %lld", name,
                        (long long)min, (long long)GLR_MAX_STEP);
    return GLR_OK;
}

/* The canonical text of what a create request asks for, to tell a retry from a clash. */
struct canonical {
    char *initial_lr;
    char *config;
    struct checked_tags tags;
    char *state;
};

static void canonical_free(struct canonical *c)
{
    free(c->initial_lr);
    free(c->config);
    free(c->tags.text);
    free(c->state);
}

static int make_canonical(const struct glr_sched *sched, const cJSON *tags, struct canonical *c,
                          char *err)
{
    memset(c, 0, sizeof(*c));
    int rc = check_tags(tags, &c->tags, err);
    if (rc)
        return rc;
    cJSON *lr = glr_sched_initial_lr_json(sched);
    cJSON *config = glr_sched_config_json(sched);
    cJSON *state = glr_sched_state_save(sched);
    c->initial_lr = svc_json_print(lr);
    c->config = svc_json_print(config);
    c->state = svc_json_print(state);
    cJSON_Delete(lr);
    cJSON_Delete(config);
    cJSON_Delete(state);
    if (!c->initial_lr || !c->config || !c->state) {
        canonical_free(c);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    return GLR_OK;
}

/* How the ranks of a job report: read from a create request. */
struct ranks_config {
    int64_t world_size;
    int aggregate;
    int64_t timeout_ms;
};

static int read_integer(const cJSON *item, const char *key, int64_t dflt, int64_t min, int64_t max,
                        int64_t *out, char *err)
{
    *out = dflt;
    if (!item || jsonx_get_integer(item, min, max, out))
        return GLR_OK;
    return glr_fail(err, GLR_EINVAL, "%s must be an integer from %lld to %lld", key, (long long)min,
                    (long long)max);
}

static int read_ranks_config(const struct svc_create *request, struct ranks_config *out, char *err)
{
    int rc =
        read_integer(request->world_size, "world_size", 1, 1, SVC_WORLD_MAX, &out->world_size, err);
    if (!rc)
        rc = read_integer(request->aggregate_timeout_ms, "aggregate_timeout_ms", 30000, 1,
                          SVC_AGGREGATE_TIMEOUT_MAX, &out->timeout_ms, err);
    if (rc)
        return rc;
    out->aggregate = SVC_AGGREGATE_MEAN;
    if (!request->aggregate)
        return GLR_OK;
    for (int i = 0; svc_aggregate_names[i]; i++) {
        if (cJSON_IsString(request->aggregate) &&
            strcmp(request->aggregate->valuestring, svc_aggregate_names[i]) == 0) {
            out->aggregate = i;
            return GLR_OK;
        }
    }
    return glr_fail(err, GLR_EINVAL, "aggregate must be \"mean\", \"max\", \"min\" or \"rank0\"");
}

/* What a create asks of a job besides its scheduler: its ranks, family and tuning. */
struct create_extras {
    struct ranks_config ranks;
    char family[STORE_ID_MAX + 1]; /* "" for none */
    bool tune;
    bool learned; /* policy "learned": the family's model (or auto, without one) */
};

static int read_extras(const struct svc_create *request, struct create_extras *out, char *err)
{
    memset(out, 0, sizeof(*out));
    out->learned =
        cJSON_IsString(request->policy) && strcmp(request->policy->valuestring, "learned") == 0;
    int rc = read_ranks_config(request, &out->ranks, err);
    if (rc)
        return rc;
    const cJSON *family = request->family;
    if (family && !cJSON_IsNull(family)) {
        if (!cJSON_IsString(family) || !svc_valid_id(family->valuestring))
            return glr_fail(err, GLR_EINVAL,
                            "family must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', "
                            "'-', and not \".\" or \"..\"",
                            STORE_ID_MAX);
        snprintf(out->family, sizeof(out->family), "%s", family->valuestring);
    }
    if (request->tune && !cJSON_IsBool(request->tune))
        return glr_fail(err, GLR_EINVAL, "tune must be true or false");
    out->tune = cJSON_IsTrue(request->tune);
    if (out->tune && !out->family[0])
        return glr_fail(err, GLR_EINVAL,
                        "tune needs a family: settings are chosen from the outcomes of the "
                        "family's finished jobs");
    if (out->learned && !out->family[0])
        return glr_fail(err, GLR_EINVAL,
                        "policy learned needs a family: its model is learned from the family's "
                        "histories");
    if (out->learned && out->tune)
        return glr_fail(err, GLR_EINVAL,
                        "tune chooses the settings of %s; a learned job runs its family's model: "
                        "leave tune out",
                        tune_policy_names());
    return GLR_OK;
}

/*
 * True when the stored job was created with the same policy, lr, config, ranks and family
 * as c, or, for a job whose settings the service chose (tuned, or learned), by the same
 * request (chosen_request: its text, which names the policy of a learned request: its job
 * may run auto). Tags do not count: they change with PATCH, and a repeated create must
 * still be recognised.
 */
static bool same_request(const struct store_job *row, const char *policy, const struct canonical *c,
                         const struct create_extras *x, const char *chosen_request)
{
    const struct ranks_config *ranks = &x->ranks;
    bool chosen = x->tune || x->learned;
    bool same = (x->learned || strcmp(row->policy, policy) == 0) &&
                row->world_size == ranks->world_size &&
                strcmp(row->aggregate, svc_aggregate_names[ranks->aggregate]) == 0 &&
                row->aggregate_timeout_ms == ranks->timeout_ms &&
                strcmp(row->family, x->family) == 0 && (row->tuned != NULL) == chosen;
    if (!same || !chosen)
        return same && strcmp(row->initial_lr, c->initial_lr) == 0 &&
               strcmp(row->config, c->config) == 0;
    /* A tuned job's lr and config are the service's choice: the request is what counts. */
    cJSON *record = cJSON_Parse(row->tuned);
    char *stored = svc_json_print(cJSON_GetObjectItemCaseSensitive(record, "request"));
    same = stored && chosen_request && strcmp(stored, chosen_request) == 0;
    free(stored);
    cJSON_Delete(record);
    return same;
}

/* Answers a create whose id exists: the same request again is fine, another is not. */
static int existing_job(struct svc *svc, const char *policy, const struct canonical *c,
                        const struct create_extras *x, const char *tuned_request, const char *id,
                        cJSON **job_out, char *err)
{
    struct store_job row;
    int rc = store_job_load(svc->store, id, &row, err);
    if (rc)
        return rc;
    bool same = same_request(&row, policy, c, x, tuned_request);
    store_job_clear(&row);
    if (!same)
        return glr_fail(err, GLR_ECONFLICT,
                        "job %s exists with another policy, lr, config, ranks or family", id);
    return svc_job_get(svc, id, job_out, err);
}

int svc_job_create(struct svc *svc, const struct svc_create *request, bool *created,
                   cJSON **job_out, char *err)
{
    *created = false;
    *job_out = NULL;
    char id[STORE_ID_MAX + 1];
    if (request->id) {
        if (!svc_valid_id(request->id))
            return glr_fail(err, GLR_EINVAL,
                            "id must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', '-', "
                            "and not \".\" or \"..\"",
                            STORE_ID_MAX);
        snprintf(id, sizeof(id), "%s", request->id);
    } else {
        int rc = make_id(id, err);
        if (rc)
            return rc;
    }
    if (request->policy && !cJSON_IsString(request->policy))
        return glr_fail(err, GLR_EINVAL, "policy must be a string");
    struct create_extras x;
    int rc = read_extras(request, &x, err);
    if (rc)
        return rc;
    /* Tuning's own default is auto: the policy whose settings are relative to the job. */
    const char *policy = request->policy ? request->policy->valuestring
                         : x.tune        ? "auto"
                                         : "greedylr";
    const cJSON *lr = request->lr;
    const cJSON *config = request->config;
    struct svc_tuned tuned = {0};
    if (x.tune) {
        /* Held until the job is stored, so that the next tuned job of a sweep sees it. */
        glr_mutex_lock(&svc->tune_lock);
        rc = svc_family_tune(svc, x.family, policy, lr, config, &tuned, err);
        if (rc) {
            glr_mutex_unlock(&svc->tune_lock);
            return rc;
        }
        lr = tuned.lr;
        config = tuned.config;
    } else if (x.learned) {
        rc = svc_family_learned(svc, x.family, lr, config, &tuned, &policy, err);
        if (rc)
            return rc;
        lr = tuned.lr;
        config = tuned.config;
    }
    struct glr_sched *sched = NULL;
    struct canonical c = {0};
    rc = glr_sched_create(policy, lr, config, &sched, err);
    if (!rc)
        rc = make_canonical(sched, request->tags, &c, err);

    int64_t now = glr_clock_wall_ms();
    char policy_name[32]; /* a copy the row may point at */
    snprintf(policy_name, sizeof(policy_name), "%s", sched ? glr_sched_policy(sched) : policy);
    struct store_job row = {
        .policy = policy_name,
        .initial_lr = c.initial_lr,
        .config = c.config,
        .tags = c.tags.text,
        .state = c.state,
        .last_step = -1,
        .created_ms = now,
        .updated_ms = now,
        .world_size = x.ranks.world_size,
        .aggregate_timeout_ms = x.ranks.timeout_ms,
        .tuned = tuned.record,
    };
    memcpy(row.id, id, sizeof(row.id));
    memcpy(row.family, x.family, sizeof(row.family));
    snprintf(row.aggregate, sizeof(row.aggregate), "%s", svc_aggregate_names[x.ranks.aggregate]);
    if (!rc)
        rc = store_job_insert(svc->store, &row, c.tags.pairs, c.tags.count, err);
    if (x.tune)
        glr_mutex_unlock(&svc->tune_lock);
    if (rc == GLR_ECONFLICT && request->id) {
        rc = existing_job(svc, policy_name, &c, &x, tuned.request, id, job_out, err);
    } else if (rc == GLR_OK) {
        *created = true;
        struct job_view v = {
            .id = id,
            .family = x.family,
            .tuned = tuned.record,
            .tags = c.tags.text,
            .last_step = -1,
            .created_ms = now,
            .updated_ms = now,
            .world_size = x.ranks.world_size,
            .aggregate = svc_aggregate_names[x.ranks.aggregate],
            .aggregate_timeout_ms = x.ranks.timeout_ms,
        };
        *job_out = describe(&v, sched);
        if (!*job_out)
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    canonical_free(&c);
    glr_sched_free(sched);
    svc_tuned_clear(&tuned);
    return rc;
}

int svc_job_get(struct svc *svc, const char *id, cJSON **job_out, char *err)
{
    struct svc_job *job;
    int rc = svc_job_lock_settled(svc, id, &job, err);
    if (rc)
        return rc;
    rc = svc_describe_job(job, job_out, err);
    svc_job_unlock(svc, job);
    return rc;
}

/*
 * The outcome of job as it finishes or is given one (call with job->lock held): given
 * (NULL: none) or its last loss, with the losses read from its history. A run whose last
 * loss is not finite ended diverged: its outcome is +inf, the worst.
 */
static int job_outcome(struct svc *svc, const struct svc_job *job, const double *given,
                       struct store_outcome *out, char *err)
{
    if (job->has_outcome) {
        *out = job->outcome; /* the losses were read when it finished */
    } else {
        int rc = store_job_losses(svc->store, job->seq, &out->last_loss, &out->best_loss, err);
        if (rc)
            return rc;
        out->value = isfinite(out->last_loss) ? out->last_loss : INFINITY;
        out->given = false;
    }
    if (given) {
        out->value = *given;
        out->given = true;
    }
    return GLR_OK;
}

int svc_job_patch(struct svc *svc, const char *id, const bool *finished, const cJSON *outcome,
                  const cJSON *tags, cJSON **job_out, char *err)
{
    *job_out = NULL;
    double given = NAN;
    if (outcome &&
        !(cJSON_IsNumber(outcome) && jsonx_get_double(outcome, &given) && isfinite(given)))
        return glr_fail(err, GLR_EINVAL, "outcome must be a finite number (lower is better)");
    struct checked_tags checked = {.text = NULL};
    if (tags) {
        int rc = check_tags(tags, &checked, err);
        if (rc)
            return rc;
    }
    struct svc_job *job;
    int rc = svc_job_lock_settled(svc, id, &job, err);
    if (rc) {
        free(checked.text);
        return rc;
    }
    /* An outcome is set when the job finishes, and again when one is given later. */
    bool finishes = (finished && *finished) || job->finished;
    bool sets_outcome = finishes && (outcome || (!job->has_outcome && job->reports > 0));
    struct store_outcome result = {0};
    if (outcome && !finishes)
        rc = glr_fail(err, GLR_ECONFLICT,
                      "job %s is running: give its outcome with {\"status\": \"finished\"}",
                      job->id);
    if (!rc && sets_outcome)
        rc = job_outcome(svc, job, outcome ? &given : NULL, &result, err);
    if (rc) {
        svc_job_unlock(svc, job);
        free(checked.text);
        return rc;
    }
    int64_t now = glr_clock_wall_ms();
    rc = store_job_patch(svc->store, job->seq, finished, sets_outcome ? &result : NULL,
                         checked.text, checked.pairs, checked.count, now, err);
    if (rc == GLR_OK) {
        if (finished && *finished && !job->finished) {
            /*
             * A finished job decides nothing more: the ranks gathered for a step are
             * dropped, and every request waiting on the job hears so now (its decisions in
             * flight were committed first, by svc_job_lock_settled).
             */
            svc_report_drop_gathered(svc, job);
            svc_wait_take(svc, job, 0, INT64_MAX, GLR_ECONFLICT, NULL,
                          "the job was finished; it takes no more reports");
        }
        if (finished)
            job->finished = *finished;
        if (sets_outcome) {
            job->has_outcome = true;
            job->outcome = result;
        }
        if (checked.text) {
            free(job->tags);
            job->tags = checked.text;
            checked.text = NULL;
        }
        job->updated_ms = now;
        rc = svc_describe_job(job, job_out, err);
    } else {
        svc_job_forget(svc, job); /* memory may disagree with the store now: reload next time */
    }
    svc_job_unlock(svc, job);
    free(checked.text);
    return rc;
}

int svc_job_delete(struct svc *svc, const char *id, char *err)
{
    struct svc_job *job;
    int rc = svc_job_lock_settled(svc, id, &job, err);
    if (rc)
        return rc;
    rc = store_job_delete(svc->store, job->seq, err);
    svc_report_drop_gathered(svc, job);
    svc_wait_take(svc, job, 0, INT64_MAX, GLR_ENOTFOUND, NULL, "the job was deleted");
    svc_job_forget(svc, job);
    svc_job_unlock(svc, job);
    return rc;
}
