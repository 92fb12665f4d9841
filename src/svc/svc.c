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
    return len > 0;
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

bool parse_decimal(const char **p, int64_t *out)
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

/* Prints a tree without formatting; NULL when out of memory. The caller frees. */
char *print(const cJSON *tree)
{
    return tree ? cJSON_PrintUnformatted(tree) : NULL;
}

/*
 * Checks tags (a JSON object of strings, within the limits) and returns its canonical
 * text (the caller frees); NULL tags give "{}".
 */
static int canonical_tags(const cJSON *tags, char **out, char *err)
{
    *out = NULL;
    if (!tags || cJSON_IsNull(tags)) {
        *out = strdup("{}");
        return *out ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
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
    }
    *out = print(tags);
    return *out ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
}

/* ---- jobs in memory ----------------------------------------------------------------- */

static size_t hash_id(const char *id)
{
    return (size_t)glr_hash_text(id);
}

static void job_free(struct job *job)
{
    if (!job)
        return;
    glr_sched_free(job->sched);
    free(job->tags);
    free(job->pending_losses);
    free(job->pending_seen);
    pthread_mutex_destroy(&job->lock);
    pthread_cond_destroy(&job->settled);
    free(job);
}

/* Builds a scheduler from a stored job: its policy, lr and config, then its saved state. */
static int sched_from_row(const struct store_job *row, struct glr_sched **out, char *err)
{
    cJSON *lr = cJSON_Parse(row->initial_lr);
    cJSON *config = cJSON_Parse(row->config);
    cJSON *state = cJSON_Parse(row->state);
    int rc = GLR_OK;
    if (!lr || !config || !state)
        rc = glr_fail(err, GLR_ECORRUPT, "database: job %s has damaged JSON", row->id);
    if (!rc)
        rc = glr_sched_create(row->policy, lr, config, out, err);
    if (!rc) {
        rc = glr_sched_state_load(*out, state, err);
        if (rc) {
            glr_sched_free(*out);
            *out = NULL;
        }
    }
    cJSON_Delete(lr);
    cJSON_Delete(config);
    cJSON_Delete(state);
    if (rc == GLR_EINVAL)
        rc = GLR_ECORRUPT; /* a stored config that no longer validates is damage */
    return rc;
}

/*
 * A job's row in the store holds its state after row->last_step, but the row is written
 * only every SVC_STATE_EVERY reports: rewriting it with every report doubled the pages a
 * group commit writes. The history rows after it are the rest of the record (a report is
 * committed with its history row, always), so a job is loaded by replaying them through
 * the policy, which also checks that each gives the answer that was stored.
 */
static int job_from_row(struct svc *svc, const struct store_job *row, struct job **out, char *err)
{
    struct job *job = calloc(1, sizeof(*job));
    if (!job)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    pthread_mutex_init(&job->lock, NULL);
    pthread_cond_init(&job->settled, NULL);
    atomic_init(&job->store_failed, false);
    memcpy(job->id, row->id, sizeof(job->id));
    job->seq = row->seq;
    job->finished = row->finished;
    job->last_step = row->last_step;
    job->reports = row->reports;
    job->created_ms = row->created_ms;
    job->updated_ms = row->updated_ms;
    job->rewinds = row->rewinds;
    job->world_size = row->world_size;
    job->aggregate_timeout_ms = row->aggregate_timeout_ms;
    job->pending_step = -1;
    job->pending_lr_cap = INFINITY;
    for (int i = 0; aggregate_names[i]; i++)
        if (strcmp(row->aggregate, aggregate_names[i]) == 0)
            job->aggregate = i;
    job->tags = strdup(row->tags);
    if (job->world_size > 1) {
        job->pending_losses = calloc((size_t)job->world_size, sizeof(double));
        job->pending_seen = calloc((size_t)job->world_size, 1);
    }
    bool allocated =
        job->tags && (job->world_size <= 1 || (job->pending_losses && job->pending_seen));
    int rc = allocated ? sched_from_row(row, &job->sched, err)
                       : glr_fail(err, GLR_ENOMEM, "out of memory");
    if (!rc) {
        struct replay_progress progress = {row->last_step, row->reports, row->updated_ms};
        rc = replay_history(svc, row->seq, job->sched, row->last_step + 1, INT64_MAX, &progress,
                            err);
        job->last_step = progress.last_step;
        job->reports = progress.reports;
        job->updated_ms = progress.updated_ms;
    }
    if (rc) {
        job_free(job);
        return rc;
    }
    *out = job;
    return GLR_OK;
}

/* Loads job id from the store into a new job, not in the map; the caller frees it. */
static int job_load(struct svc *svc, const char *id, struct job **out, char *err)
{
    struct store_job row;
    int rc = store_job_load(svc->store, id, &row, err);
    if (rc)
        return rc;
    rc = job_from_row(svc, &row, out, err);
    store_job_clear(&row);
    return rc;
}

static void map_grow(struct svc *svc)
{
    size_t n = svc->nbuckets * 2;
    struct job **buckets = calloc(n, sizeof(*buckets));
    if (!buckets)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < svc->nbuckets; i++) {
        struct job *job = svc->buckets[i];
        while (job) {
            struct job *next = job->next;
            size_t b = hash_id(job->id) & (n - 1);
            job->next = buckets[b];
            buckets[b] = job;
            job = next;
        }
    }
    free(svc->buckets);
    svc->buckets = buckets;
    svc->nbuckets = n;
}

/* Finds a job in memory and takes a reference; call with the map lock held. */
static struct job *map_find(struct svc *svc, const char *id)
{
    for (struct job *job = svc->buckets[hash_id(id) & (svc->nbuckets - 1)]; job; job = job->next)
        if (strcmp(job->id, id) == 0)
            return job;
    return NULL;
}

/* Removes job from the map (if it is there); call with the map lock held. */
static void map_remove(struct svc *svc, struct job *job)
{
    struct job **link = &svc->buckets[hash_id(job->id) & (svc->nbuckets - 1)];
    for (; *link; link = &(*link)->next) {
        if (*link == job) {
            *link = job->next;
            job->next = NULL;
            svc->njobs--;
            job->refs--; /* the map's own reference */
            return;
        }
    }
}

/*
 * Drops idle jobs from memory until at most resident_max are left, so that memory stays
 * bounded however many jobs the database holds; call with the map lock held. A job is
 * idle when the map holds its only reference: no request, decision in flight, waiting
 * rank or timer has it. Its state is in the store, so nothing is lost: it is loaded
 * again on its next request. The search goes round the buckets like a clock hand.
 */
static void evict_idle(struct svc *svc)
{
    for (size_t visited = 0; svc->njobs > svc->resident_max && visited < svc->nbuckets; visited++) {
        size_t b = svc->evict_bucket++ & (svc->nbuckets - 1);
        struct job **link = &svc->buckets[b];
        while (*link && svc->njobs > svc->resident_max) {
            struct job *job = *link;
            if (job->refs != 1) {
                link = &job->next;
                continue;
            }
            *link = job->next;
            svc->njobs--;
            job_free(job);
        }
    }
}

void job_release(struct svc *svc, struct job *job)
{
    pthread_mutex_lock(&svc->map_lock);
    bool last = --job->refs == 0;
    pthread_mutex_unlock(&svc->map_lock);
    if (last)
        job_free(job);
}

/*
 * Returns the job with this id, from memory or loaded from the store, with a reference
 * the caller gives back with job_release(). Returns GLR_ENOTFOUND for an unknown id.
 */
static int job_acquire(struct svc *svc, const char *id, struct job **out, char *err)
{
    *out = NULL;
    if (!svc_valid_id(id))
        return glr_fail(err, GLR_ENOTFOUND, "job %.128s does not exist", id);
    pthread_mutex_lock(&svc->map_lock);
    struct job *job = map_find(svc, id);
    if (job)
        job->refs++;
    pthread_mutex_unlock(&svc->map_lock);
    if (job) {
        *out = job;
        return GLR_OK;
    }

    struct job *loaded = NULL;
    int rc = job_load(svc, id, &loaded, err);
    if (rc)
        return rc;

    pthread_mutex_lock(&svc->map_lock);
    job = map_find(svc, id);
    if (job) {
        job->refs++; /* another thread loaded it first: use theirs */
    } else {
        job = loaded;
        loaded = NULL;
        job->refs = 2; /* the map's and the caller's */
        size_t b = hash_id(id) & (svc->nbuckets - 1);
        job->next = svc->buckets[b];
        svc->buckets[b] = job;
        if (++svc->njobs > svc->nbuckets)
            map_grow(svc);
        if (svc->njobs > svc->resident_max)
            evict_idle(svc);
    }
    pthread_mutex_unlock(&svc->map_lock);
    job_free(loaded);
    *out = job;
    return GLR_OK;
}

/* Drops a job from memory (after a delete or a failed write); call with job->lock held. */
void job_forget(struct svc *svc, struct job *job)
{
    job->gone = true;
    pthread_mutex_lock(&svc->map_lock);
    map_remove(svc, job);
    pthread_mutex_unlock(&svc->map_lock);
}

/*
 * Acquires and locks the job, retrying when it was dropped from memory between the two.
 * On success the caller holds job->lock and a reference: job_unlock() gives both back.
 */
int job_lock(struct svc *svc, const char *id, struct job **out, char *err)
{
    for (;;) {
        int rc = job_acquire(svc, id, out, err);
        if (rc)
            return rc;
        pthread_mutex_lock(&(*out)->lock);
        if (!(*out)->gone)
            return GLR_OK;
        pthread_mutex_unlock(&(*out)->lock);
        job_release(svc, *out);
    }
}

int job_lock_settled(struct svc *svc, const char *id, struct job **out, char *err)
{
    for (;;) {
        int rc = job_lock(svc, id, out, err);
        if (rc)
            return rc;
        if (job_settle(*out, err) == GLR_OK)
            return GLR_OK;
        job_unlock(svc, *out); /* a write failed and dropped it: load it again */
    }
}

void job_unlock(struct svc *svc, struct job *job)
{
    pthread_mutex_unlock(&job->lock);
    job_release(svc, job);
}

/* ---- jobs as JSON --------------------------------------------------------------------- */

/* The fields of a job that are not in its scheduler. */
struct job_view {
    const char *id;
    const char *tags;
    bool finished;
    int64_t last_step;
    int64_t reports;
    int64_t rewinds;
    int64_t created_ms;
    int64_t updated_ms;
    int64_t world_size;
    const char *aggregate;
    int64_t aggregate_timeout_ms;
};

bool add_item(cJSON *object, const char *key, cJSON *item)
{
    if (!item || !cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

static bool add_time(cJSON *object, const char *key, int64_t ms)
{
    char text[GLR_TIME_TEXT_MAX];
    glr_clock_format(ms, text);
    return cJSON_AddStringToObject(object, key, text) != NULL;
}

static cJSON *describe(const struct job_view *v, const struct glr_sched *sched)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "id", v->id) &&
              cJSON_AddStringToObject(o, "policy", glr_sched_policy(sched)) &&
              add_item(o, "lr", glr_sched_lr_json(sched)) &&
              add_item(o, "initial_lr", glr_sched_initial_lr_json(sched)) &&
              add_item(o, "config", glr_sched_config_json(sched)) &&
              add_item(o, "tags", cJSON_Parse(v->tags)) &&
              cJSON_AddStringToObject(o, "status", v->finished ? "finished" : "running") &&
              add_item(o, "last_step",
                       v->last_step >= 0 ? cJSON_CreateNumber((double)v->last_step)
                                         : cJSON_CreateNull()) &&
              jsonx_add_integer(o, "reports", v->reports) &&
              jsonx_add_integer(o, "rewinds", v->rewinds) &&
              jsonx_add_integer(o, "world_size", v->world_size) &&
              cJSON_AddStringToObject(o, "aggregate", v->aggregate) &&
              jsonx_add_integer(o, "aggregate_timeout_ms", v->aggregate_timeout_ms) &&
              add_item(o, "state", glr_sched_counters_json(sched)) &&
              add_time(o, "created_at", v->created_ms) && add_time(o, "updated_at", v->updated_ms);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Describes a job in memory; call with job->lock held. */
int describe_job(const struct job *job, cJSON **out, char *err)
{
    struct job_view v = {job->id,
                         job->tags,
                         job->finished,
                         job->last_step,
                         job->reports,
                         job->rewinds,
                         job->created_ms,
                         job->updated_ms,
                         job->world_size,
                         aggregate_names[job->aggregate],
                         job->aggregate_timeout_ms};
    *out = describe(&v, job->sched);
    return *out ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
}

const char *const aggregate_names[] = {"mean", "max", "min", "rank0", NULL};

/* Initial number of hash buckets; the table doubles when it is full. */
#define SVC_BUCKETS_INITIAL 1024

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
    svc->resident_max = options->resident_jobs ? options->resident_jobs : SVC_RESIDENT_DEFAULT;
    svc->nbuckets = SVC_BUCKETS_INITIAL;
    svc->buckets = calloc(svc->nbuckets, sizeof(*svc->buckets));
    pthread_mutex_init(&svc->map_lock, NULL);
    pthread_mutex_init(&svc->waiting_lock, NULL);
    pthread_cond_init(&svc->waiting_wake, NULL);
    int rc = svc->buckets ? store_open(path, &options->store, &svc->store, err)
                          : glr_fail(err, GLR_ENOMEM, "out of memory");
    if (!rc) {
        if (pthread_create(&svc->timer, NULL, timer_main, svc) == 0)
            svc->timer_started = true;
        else
            rc = glr_fail(err, GLR_ENOMEM, "cannot start the timer thread");
    }
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

void svc_close(struct svc *svc)
{
    if (!svc)
        return;
    if (svc->timer_started) {
        svc_cancel_waiters(svc); /* also tells the timer to stop */
        pthread_join(svc->timer, NULL);
    }
    /* Decisions still on their way are committed and answered while the jobs exist. */
    store_close(svc->store);
    svc->store = NULL;
    /* Jobs dropped from the map but still watched are only on the watch list now. */
    for (struct job *job = svc->waiting, *next; job; job = next) {
        next = job->waiting_next;
        if (job->gone)
            job_free(job);
    }
    for (size_t i = 0; svc->buckets && i < svc->nbuckets; i++) {
        struct job *job = svc->buckets[i];
        while (job) {
            struct job *next = job->next;
            job_free(job);
            job = next;
        }
    }
    free(svc->buckets);
    pthread_mutex_destroy(&svc->map_lock);
    pthread_mutex_destroy(&svc->waiting_lock);
    pthread_cond_destroy(&svc->waiting_wake);
    free(svc);
}

/* The canonical text of what a create request asks for, to tell a retry from a clash. */
struct canonical {
    char *initial_lr;
    char *config;
    char *tags;
    char *state;
};

static void canonical_free(struct canonical *c)
{
    free(c->initial_lr);
    free(c->config);
    free(c->tags);
    free(c->state);
}

static int make_canonical(const struct glr_sched *sched, const cJSON *tags, struct canonical *c,
                          char *err)
{
    memset(c, 0, sizeof(*c));
    int rc = canonical_tags(tags, &c->tags, err);
    if (rc)
        return rc;
    cJSON *lr = glr_sched_initial_lr_json(sched);
    cJSON *config = glr_sched_config_json(sched);
    cJSON *state = glr_sched_state_save(sched);
    c->initial_lr = print(lr);
    c->config = print(config);
    c->state = print(state);
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
    if (!item)
        return GLR_OK;
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(v >= (double)min && v <= (double)max) || v != floor(v))
        return glr_fail(err, GLR_EINVAL, "%s must be an integer from %lld to %lld", key,
                        (long long)min, (long long)max);
    *out = (int64_t)v;
    return GLR_OK;
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
    out->aggregate = AGGREGATE_MEAN;
    if (!request->aggregate)
        return GLR_OK;
    for (int i = 0; aggregate_names[i]; i++) {
        if (cJSON_IsString(request->aggregate) &&
            strcmp(request->aggregate->valuestring, aggregate_names[i]) == 0) {
            out->aggregate = i;
            return GLR_OK;
        }
    }
    return glr_fail(err, GLR_EINVAL, "aggregate must be \"mean\", \"max\", \"min\" or \"rank0\"");
}

/*
 * True when the stored job was created with the same policy, lr, config and ranks as c. Tags do
 * not count: they change with PATCH, and a repeated create must still be recognised.
 */
static bool same_request(const struct store_job *row, const char *policy, const struct canonical *c,
                         const struct ranks_config *ranks)
{
    return strcmp(row->policy, policy) == 0 && strcmp(row->initial_lr, c->initial_lr) == 0 &&
           strcmp(row->config, c->config) == 0 && row->world_size == ranks->world_size &&
           strcmp(row->aggregate, aggregate_names[ranks->aggregate]) == 0 &&
           row->aggregate_timeout_ms == ranks->timeout_ms;
}

/* Answers a create whose id exists: the same request again is fine, another is not. */
static int existing_job(struct svc *svc, const char *policy, const struct canonical *c,
                        const struct ranks_config *ranks, const char *id, cJSON **job_out,
                        char *err)
{
    struct store_job row;
    int rc = store_job_load(svc->store, id, &row, err);
    if (rc)
        return rc;
    bool same = same_request(&row, policy, c, ranks);
    store_job_clear(&row);
    if (!same)
        return glr_fail(err, GLR_ECONFLICT,
                        "job %s exists with another policy, lr, config or ranks", id);
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
                            "id must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', '-'",
                            STORE_ID_MAX);
        snprintf(id, sizeof(id), "%s", request->id);
    } else {
        int rc = make_id(id, err);
        if (rc)
            return rc;
    }
    const char *policy = request->policy ? request->policy : "greedylr";
    struct ranks_config ranks;
    int rc = read_ranks_config(request, &ranks, err);
    if (rc)
        return rc;
    struct glr_sched *sched = NULL;
    rc = glr_sched_create(policy, request->lr, request->config, &sched, err);
    if (rc)
        return rc;
    struct canonical c;
    rc = make_canonical(sched, request->tags, &c, err);
    if (rc) {
        glr_sched_free(sched);
        return rc;
    }

    int64_t now = glr_clock_wall_ms();
    char policy_name[32]; /* a copy the row may point at */
    snprintf(policy_name, sizeof(policy_name), "%s", glr_sched_policy(sched));
    struct store_job row = {
        .policy = policy_name,
        .initial_lr = c.initial_lr,
        .config = c.config,
        .tags = c.tags,
        .state = c.state,
        .last_step = -1,
        .created_ms = now,
        .updated_ms = now,
        .world_size = ranks.world_size,
        .aggregate_timeout_ms = ranks.timeout_ms,
    };
    memcpy(row.id, id, sizeof(row.id));
    snprintf(row.aggregate, sizeof(row.aggregate), "%s", aggregate_names[ranks.aggregate]);
    rc = store_job_insert(svc->store, &row, err);
    if (rc == GLR_ECONFLICT && request->id) {
        rc = existing_job(svc, policy, &c, &ranks, id, job_out, err);
    } else if (rc == GLR_OK) {
        *created = true;
        struct job_view v = {id,
                             c.tags,
                             false,
                             -1,
                             0,
                             0,
                             now,
                             now,
                             ranks.world_size,
                             aggregate_names[ranks.aggregate],
                             ranks.timeout_ms};
        *job_out = describe(&v, sched);
        if (!*job_out)
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    canonical_free(&c);
    glr_sched_free(sched);
    return rc;
}

int svc_job_get(struct svc *svc, const char *id, cJSON **job_out, char *err)
{
    struct job *job;
    int rc = job_lock_settled(svc, id, &job, err);
    if (rc)
        return rc;
    rc = describe_job(job, job_out, err);
    job_unlock(svc, job);
    return rc;
}

int svc_job_patch(struct svc *svc, const char *id, const bool *finished, const cJSON *tags,
                  cJSON **job_out, char *err)
{
    *job_out = NULL;
    char *tags_text = NULL;
    if (tags) {
        int rc = canonical_tags(tags, &tags_text, err);
        if (rc)
            return rc;
    }
    struct job *job;
    int rc = job_lock_settled(svc, id, &job, err);
    if (rc) {
        free(tags_text);
        return rc;
    }
    int64_t now = glr_clock_wall_ms();
    rc = store_job_patch(svc->store, job->seq, finished, tags_text, now, err);
    if (rc == GLR_OK) {
        if (finished)
            job->finished = *finished;
        if (tags_text) {
            free(job->tags);
            job->tags = tags_text;
            tags_text = NULL;
        }
        job->updated_ms = now;
        rc = describe_job(job, job_out, err);
    } else {
        job_forget(svc, job); /* memory may disagree with the store now: reload next time */
    }
    job_unlock(svc, job);
    free(tags_text);
    return rc;
}

int svc_job_delete(struct svc *svc, const char *id, char *err)
{
    struct job *job;
    int rc = job_lock_settled(svc, id, &job, err);
    if (rc)
        return rc;
    rc = store_job_delete(svc->store, job->seq, err);
    drop_pending(job);
    wake(svc, job, 0, INT64_MAX, GLR_ENOTFOUND, NULL, "the job was deleted");
    job_forget(svc, job);
    job_unlock(svc, job);
    return rc;
}

/* ---- listing ------------------------------------------------------------------------ */

/* A job of one page, as the store lists it: described after the scan. */
struct listed {
    int64_t seq;
    char id[STORE_ID_MAX + 1];
};

struct list_ctx {
    struct listed *rows;
    int64_t count;
    int64_t wanted;
    bool more;
};

static bool list_one(void *ctx_, const struct store_job *row)
{
    struct list_ctx *ctx = ctx_;
    if (ctx->count == ctx->wanted) {
        ctx->more = true; /* the extra row only says that another page exists */
        return false;
    }
    ctx->rows[ctx->count].seq = row->seq;
    memcpy(ctx->rows[ctx->count].id, row->id, sizeof(row->id));
    ctx->count++;
    return true;
}

/*
 * Describes job id as svc_job_get() does, but without bringing a job into memory that is
 * not there: a listing walks many jobs, and should not push the busy ones out. The scan
 * is over by now, because loading a job takes a reader connection of its own.
 */
static int describe_listed(struct svc *svc, const char *id, cJSON **out, char *err)
{
    pthread_mutex_lock(&svc->map_lock);
    bool resident = map_find(svc, id) != NULL;
    pthread_mutex_unlock(&svc->map_lock);
    if (resident)
        return svc_job_get(svc, id, out, err);
    struct job *job = NULL;
    int rc = job_load(svc, id, &job, err);
    if (!rc)
        rc = describe_job(job, out, err);
    job_free(job);
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
    if (*p++ != 'j' || !parse_decimal(&p, &v) || *p != '\0')
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
                        query->tag_value, list_one, &ctx, err);
    for (int64_t i = 0; !rc && i < ctx.count; i++) {
        cJSON *job = NULL;
        rc = describe_listed(svc, ctx.rows[i].id, &job, err);
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
        if (!add_item(answer, "next_page_token",
                      ctx.more ? cJSON_CreateString(token) : cJSON_CreateNull()))
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    free(ctx.rows);
    if (rc) {
        cJSON_Delete(answer);
        return rc;
    }
    *out = answer;
    return GLR_OK;
}
