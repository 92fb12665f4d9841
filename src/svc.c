/*
 * The scheduling service (see svc.h): jobs in memory over the store, and the rules of
 * reports, retries, listing and history.
 */
#include "svc.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonx.h"

/* A job in memory. Fields below `lock` are guarded by it; refs and next by the map lock. */
struct job {
    char id[STORE_ID_MAX + 1];
    int64_t seq;
    int refs;
    struct job *next;

    pthread_mutex_t lock;
    bool gone; /* deleted, or dropped after a failed write: look it up again */
    struct glr_sched *sched;
    char *tags; /* JSON object */
    bool finished;
    int64_t last_step; /* -1 before the first report */
    int64_t reports;
    int64_t created_ms;
    int64_t updated_ms;
    int64_t rewinds;
    int64_t world_size;
    int aggregate; /* enum aggregate */
    int64_t aggregate_timeout_ms;

    /* Gathering the ranks of one step (jobs of several ranks). */
    int64_t pending_step; /* -1: none */
    int64_t pending_count;
    int64_t pending_deadline_ms;
    double *pending_losses;      /* world_size values */
    unsigned char *pending_seen; /* world_size flags */
    struct svc_waiter *waiters;  /* ranks and lookups waiting for a decision */
    int64_t nwaiters;
    bool in_waiting_list; /* guarded by svc->waiting_lock */
    struct job *waiting_next;
};

/* How the losses of the ranks of one step become the loss the policy judges. */
enum aggregate { AGGREGATE_MEAN, AGGREGATE_MAX, AGGREGATE_MIN, AGGREGATE_RANK0 };
static const char *const aggregate_names[] = {"mean", "max", "min", "rank0", NULL};

/* Initial number of hash buckets; the table doubles when it is full. */
#define SVC_BUCKETS_INITIAL 1024

struct svc {
    struct store *store;
    pthread_mutex_t map_lock;
    struct job **buckets;
    size_t nbuckets;
    size_t njobs;

    /* Jobs with a step being gathered or requests waiting, for the timer thread. */
    pthread_mutex_t waiting_lock;
    pthread_cond_t waiting_wake;
    struct job *waiting; /* each holds a reference */
    int64_t nwaiters;    /* waiting requests of all jobs */
    bool stopping;
    bool timer_started;
    pthread_t timer;
};

/* Waiting requests (defined with the reports below). */
static void wake(struct svc *svc, struct job *job, int64_t from, int64_t to, int status,
                 const struct svc_report_result *result, const char *err);
static void drop_pending(struct job *job);
static void *timer_main(void *arg);

/* ---- small helpers ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Room for an RFC 3339 time with milliseconds, whatever the year. */
#define TIME_TEXT_MAX 64

/* Formats Unix milliseconds as RFC 3339 in UTC, e.g. 2026-11-28T17:35:37.123Z. */
static void format_time(int64_t ms, char buf[TIME_TEXT_MAX])
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    snprintf(buf, TIME_TEXT_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

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
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, bytes, sizeof(bytes)) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)sizeof(bytes))
        return glr_fail(err, GLR_EIO, "cannot read /dev/urandom for a job id");
    int len = snprintf(id, STORE_ID_MAX + 1, "job-");
    for (size_t i = 0; i < sizeof(bytes); i++)
        len += snprintf(id + len, (size_t)(STORE_ID_MAX + 1 - len), "%02x", bytes[i]);
    return GLR_OK;
}

/* Prints a tree without formatting; NULL when out of memory. The caller frees. */
static char *print(const cJSON *tree)
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
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
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

static int job_from_row(const struct store_job *row, struct job **out, char *err)
{
    struct job *job = calloc(1, sizeof(*job));
    if (!job)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    pthread_mutex_init(&job->lock, NULL);
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
    if (rc) {
        job_free(job);
        return rc;
    }
    *out = job;
    return GLR_OK;
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

static void job_release(struct svc *svc, struct job *job)
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

    struct store_job row;
    int rc = store_job_load(svc->store, id, &row, err);
    if (rc)
        return rc;
    struct job *loaded = NULL;
    rc = job_from_row(&row, &loaded, err);
    store_job_clear(&row);
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
    }
    pthread_mutex_unlock(&svc->map_lock);
    job_free(loaded);
    *out = job;
    return GLR_OK;
}

/* Drops a job from memory (after a delete or a failed write); call with job->lock held. */
static void job_forget(struct svc *svc, struct job *job)
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
static int job_lock(struct svc *svc, const char *id, struct job **out, char *err)
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

static void job_unlock(struct svc *svc, struct job *job)
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

static bool add_item(cJSON *object, const char *key, cJSON *item)
{
    if (!item || !cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

static bool add_time(cJSON *object, const char *key, int64_t ms)
{
    char text[TIME_TEXT_MAX];
    format_time(ms, text);
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
              cJSON_AddNumberToObject(o, "reports", (double)v->reports) &&
              cJSON_AddNumberToObject(o, "rewinds", (double)v->rewinds) &&
              cJSON_AddNumberToObject(o, "world_size", (double)v->world_size) &&
              cJSON_AddStringToObject(o, "aggregate", v->aggregate) &&
              cJSON_AddNumberToObject(o, "aggregate_timeout_ms", (double)v->aggregate_timeout_ms) &&
              add_item(o, "state", glr_sched_counters_json(sched)) &&
              add_time(o, "created_at", v->created_ms) && add_time(o, "updated_at", v->updated_ms);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Describes a job in memory; call with job->lock held. */
static int describe_job(const struct job *job, cJSON **out, char *err)
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

/* ---- the service ---------------------------------------------------------------------- */

int svc_open(const char *path, struct svc **out, char *err)
{
    *out = NULL;
    struct svc *svc = calloc(1, sizeof(*svc));
    if (!svc)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    svc->nbuckets = SVC_BUCKETS_INITIAL;
    svc->buckets = calloc(svc->nbuckets, sizeof(*svc->buckets));
    pthread_mutex_init(&svc->map_lock, NULL);
    pthread_mutex_init(&svc->waiting_lock, NULL);
    pthread_cond_init(&svc->waiting_wake, NULL);
    int rc = svc->buckets ? store_open(path, &svc->store, err)
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

void svc_close(struct svc *svc)
{
    if (!svc)
        return;
    if (svc->timer_started) {
        svc_cancel_waiters(svc); /* also tells the timer to stop */
        pthread_join(svc->timer, NULL);
    }
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
    store_close(svc->store);
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

    int64_t now = now_ms();
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
    int rc = job_lock(svc, id, &job, err);
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
    int rc = job_lock(svc, id, &job, err);
    if (rc) {
        free(tags_text);
        return rc;
    }
    int64_t now = now_ms();
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
    int rc = job_lock(svc, id, &job, err);
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

struct list_ctx {
    cJSON *jobs;
    int64_t wanted;
    int64_t count;
    int64_t last_seq;
    bool more;
    int rc;
    char *err;
};

static bool list_one(void *ctx_, const struct store_job *row)
{
    struct list_ctx *ctx = ctx_;
    if (ctx->count == ctx->wanted) {
        ctx->more = true; /* the extra row only says that another page exists */
        return false;
    }
    struct glr_sched *sched = NULL;
    ctx->rc = sched_from_row(row, &sched, ctx->err);
    if (ctx->rc)
        return false;
    struct job_view v = {row->id,
                         row->tags,
                         row->finished,
                         row->last_step,
                         row->reports,
                         row->rewinds,
                         row->created_ms,
                         row->updated_ms,
                         row->world_size,
                         row->aggregate,
                         row->aggregate_timeout_ms};
    cJSON *job = describe(&v, sched);
    glr_sched_free(sched);
    if (!job || !cJSON_AddItemToArray(ctx->jobs, job)) {
        cJSON_Delete(job);
        ctx->rc = glr_fail(ctx->err, GLR_ENOMEM, "out of memory");
        return false;
    }
    ctx->count++;
    ctx->last_seq = row->seq;
    return true;
}

/* Page tokens are opaque to clients; inside, "j" and the last seq of the page before. */
static int parse_list_token(const char *token, int64_t *after, char *err)
{
    *after = 0;
    if (!token)
        return GLR_OK;
    char *end = NULL;
    long long v = token[0] == 'j' ? strtoll(token + 1, &end, 10) : -1;
    if (!end || *end != '\0' || end == token + 1 || v < 0)
        return glr_fail(err, GLR_EINVAL, "page_token is not one this server gave");
    *after = v;
    return GLR_OK;
}

int svc_job_list(struct svc *svc, const struct svc_list_query *query, cJSON **out, char *err)
{
    *out = NULL;
    int64_t after;
    int rc = parse_list_token(query->page_token, &after, err);
    if (rc)
        return rc;
    cJSON *answer = cJSON_CreateObject();
    struct list_ctx ctx = {
        .jobs = cJSON_AddArrayToObject(answer, "jobs"), .wanted = query->page_size, .err = err};
    if (!answer || !ctx.jobs) {
        cJSON_Delete(answer);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    rc = store_job_scan(svc->store, after, query->page_size + 1, query->status, query->tag_key,
                        query->tag_value, list_one, &ctx, err);
    if (!rc)
        rc = ctx.rc;
    if (!rc) {
        char token[32];
        snprintf(token, sizeof(token), "j%lld", (long long)ctx.last_seq);
        if (!add_item(answer, "next_page_token",
                      ctx.more ? cJSON_CreateString(token) : cJSON_CreateNull()))
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    if (rc) {
        cJSON_Delete(answer);
        return rc;
    }
    *out = answer;
    return GLR_OK;
}

/* ---- reports ------------------------------------------------------------------------ */

static bool same_loss(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static void result_from_report(const struct store_report *r, bool lr_is_array,
                               struct svc_report_result *result)
{
    memset(result, 0, sizeof(*result));
    result->step = r->step;
    result->groups = r->groups;
    result->lr_is_array = lr_is_array;
    memcpy(result->lrs, r->lrs, r->groups * sizeof(double));
    result->event = r->event;
    result->ranks = r->ranks;
}

/*
 * Answers the waiting requests of job for steps from..to with status (and result), and
 * takes them off the job; call with job->lock held.
 */
static void wake(struct svc *svc, struct job *job, int64_t from, int64_t to, int status,
                 const struct svc_report_result *result, const char *err)
{
    struct svc_waiter **link = &job->waiters;
    int64_t woken = 0;
    while (*link) {
        struct svc_waiter *w = *link;
        if (w->step < from || w->step > to) {
            link = &w->next;
            continue;
        }
        *link = w->next;
        woken++;
        w->done(w, status, result, err);
    }
    job->nwaiters -= woken;
    pthread_mutex_lock(&svc->waiting_lock);
    svc->nwaiters -= woken;
    pthread_mutex_unlock(&svc->waiting_lock);
}

/* Puts the job on the timer's list (it then holds a reference); call with job->lock held. */
static void watch(struct svc *svc, struct job *job)
{
    pthread_mutex_lock(&svc->waiting_lock);
    if (!job->in_waiting_list) {
        job->in_waiting_list = true;
        job->waiting_next = svc->waiting;
        svc->waiting = job;
        pthread_mutex_lock(&svc->map_lock);
        job->refs++;
        pthread_mutex_unlock(&svc->map_lock);
    }
    pthread_mutex_unlock(&svc->waiting_lock);
}

/*
 * Adds a waiting request for step, within the per-job and global limits; call with
 * job->lock held. Returns GLR_EWAIT, GLR_ELIMIT or GLR_EBUSY.
 */
static int add_waiter(struct svc *svc, struct job *job, struct svc_waiter *waiter, int64_t step,
                      char *err)
{
    if (job->nwaiters >= 2 * job->world_size + SVC_WAITERS_SPARE)
        return glr_fail(err, GLR_ELIMIT, "too many requests wait on job %s already", job->id);
    pthread_mutex_lock(&svc->waiting_lock);
    bool full = svc->nwaiters >= SVC_WAITERS_MAX || svc->stopping;
    if (!full)
        svc->nwaiters++;
    pthread_mutex_unlock(&svc->waiting_lock);
    if (full)
        return glr_fail(err, GLR_EBUSY, "too many requests wait already, or the service stops");
    waiter->step = step;
    waiter->next = job->waiters;
    job->waiters = waiter;
    job->nwaiters++;
    watch(svc, job);
    return GLR_EWAIT;
}

/*
 * Steps the policy on `input` for step, commits the decision (and the ranks' losses), and
 * answers the requests waiting for it; call with job->lock held. On failure the job is
 * dropped from memory (the store is the truth) and the waiting requests get the error.
 */
static int decide(struct svc *svc, struct job *job, int64_t step, double input,
                  const struct store_rank_loss *rank_losses, size_t nrank_losses, int64_t ranks,
                  struct svc_report_result *result, char *err)
{
    struct glr_step_result decision;
    int rc = glr_sched_step(job->sched, step, input, &decision);
    if (rc)
        return glr_fail(err, GLR_EINVAL, "step %lld is out of range", (long long)step);
    struct store_report report = {
        .step = step,
        .rank = 0,
        .loss = input,
        .metric = decision.metric,
        .event = decision.event,
        .time_ms = now_ms(),
        .ranks = ranks,
        .groups = glr_sched_groups(job->sched),
    };
    memcpy(report.lrs, glr_sched_lrs(job->sched), report.groups * sizeof(double));
    cJSON *state = glr_sched_state_save(job->sched);
    char *state_text = print(state);
    cJSON_Delete(state);
    if (!state_text)
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    else
        rc = store_report_commit(svc->store, job->seq, &report, rank_losses, nrank_losses,
                                 state_text, step, job->reports + 1,
                                 (job->reports + 1) % SVC_SNAPSHOT_EVERY == 0, err);
    free(state_text);
    if (rc) {
        /* The scheduler has stepped but the store has not: drop it and reload next time. */
        wake(svc, job, 0, INT64_MAX, rc, NULL, err);
        job_forget(svc, job);
        return rc;
    }
    job->last_step = step;
    job->reports++;
    job->updated_ms = report.time_ms;
    result_from_report(&report, glr_sched_lr_is_array(job->sched), result);
    wake(svc, job, step, step, GLR_OK, result, NULL);
    /* Lookups of steps that were skipped will never see them decided. */
    wake(svc, job, 0, step - 1, GLR_ENOTFOUND, NULL,
         "that step was never decided: later steps were");
    return GLR_OK;
}

/* The loss the policy judges, from the losses of the ranks that reported. */
static double combine(const struct job *job)
{
    if (job->aggregate == AGGREGATE_RANK0 && job->pending_seen[0])
        return job->pending_losses[0];
    double sum = 0, low = INFINITY, high = -INFINITY;
    bool diverged = false;
    /* In rank order, so that the sum and so the mean are the same on every replay. */
    for (int64_t r = 0; r < job->world_size; r++) {
        if (!job->pending_seen[r])
            continue;
        double v = job->pending_losses[r];
        diverged |= isnan(v);
        sum += v;
        low = fmin(low, v);
        high = fmax(high, v);
    }
    if (diverged)
        return NAN; /* one diverged rank makes the step diverged */
    switch (job->aggregate) {
    case AGGREGATE_MAX:
        return high;
    case AGGREGATE_MIN:
        return low;
    default: /* mean, and rank0 when rank 0 did not report */
        return sum / (double)job->pending_count;
    }
}

/* Decides the step being gathered with the ranks that reported; call with job->lock held. */
static int close_pending(struct svc *svc, struct job *job, struct svc_report_result *result,
                         char *err)
{
    struct store_rank_loss *losses = malloc((size_t)job->pending_count * sizeof(*losses));
    if (!losses)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    size_t n = 0;
    for (int64_t r = 0; r < job->world_size; r++)
        if (job->pending_seen[r])
            losses[n++] = (struct store_rank_loss){r, job->pending_losses[r]};
    int64_t step = job->pending_step;
    int64_t ranks = job->pending_count;
    double input = combine(job);
    drop_pending(job);
    int rc = decide(svc, job, step, input, losses, n, ranks, result, err);
    free(losses);
    return rc;
}

/* A report of a step that is already decided: a retry, a late rank, or a conflict. */
static int answer_decided(struct svc *svc, struct job *job, int64_t step, int64_t rank, double loss,
                          struct svc_report_result *result, char *err)
{
    struct store_report stored;
    int rc = store_report_find(svc->store, job->seq, step, 0, &stored, err);
    if (rc == GLR_ENOTFOUND)
        return glr_fail(err, GLR_ECONFLICT,
                        "step %lld is at or below the last decided step %lld and was never "
                        "decided",
                        (long long)step, (long long)job->last_step);
    if (rc)
        return rc;
    double reported = stored.loss;
    if (job->world_size > 1) {
        rc = store_rank_loss_find(svc->store, job->seq, step, rank, &reported, err);
        if (rc == GLR_ENOTFOUND) {
            /* Decided without this rank: keep its loss, answer the decision. */
            rc = store_rank_loss_add_late(svc->store, job->seq, step, rank, loss, err);
            if (rc)
                return rc;
            result_from_report(&stored, glr_sched_lr_is_array(job->sched), result);
            result->late = true;
            return GLR_OK;
        }
        if (rc)
            return rc;
    }
    if (!same_loss(reported, loss))
        return glr_fail(err, GLR_ECONFLICT,
                        "step %lld (rank %lld) was reported before with another loss",
                        (long long)step, (long long)rank);
    result_from_report(&stored, glr_sched_lr_is_array(job->sched), result);
    result->replayed = true;
    return GLR_OK;
}

/* One rank's report of a step not decided yet, in a job of several ranks. */
static int gather(struct svc *svc, struct job *job, int64_t step, int64_t rank, double loss,
                  struct svc_waiter *waiter, struct svc_report_result *result, char *err)
{
    int rc;
    if (job->pending_step >= 0 && step < job->pending_step)
        return glr_fail(err, GLR_ECONFLICT,
                        "step %lld is older than step %lld, whose ranks are reporting",
                        (long long)step, (long long)job->pending_step);
    if (job->pending_step >= 0 && step > job->pending_step) {
        /* A rank moved on: the step before is over, decide it with who reported. */
        struct svc_report_result earlier;
        if ((rc = close_pending(svc, job, &earlier, err)))
            return rc;
    }
    if (job->pending_seen && job->pending_step == step && job->pending_seen[rank]) {
        if (!same_loss(job->pending_losses[rank], loss))
            return glr_fail(err, GLR_ECONFLICT,
                            "step %lld (rank %lld) was reported before with another loss",
                            (long long)step, (long long)rank);
        return add_waiter(svc, job, waiter, step, err); /* a retry while waiting */
    }
    if (job->pending_count + 1 < job->world_size) {
        /* Not the last rank: wait, within the limits, before taking the loss. */
        rc = add_waiter(svc, job, waiter, step, err);
        if (rc != GLR_EWAIT)
            return rc;
    }
    if (job->pending_step < 0) {
        job->pending_step = step;
        job->pending_deadline_ms = now_ms() + job->aggregate_timeout_ms;
    }
    job->pending_seen[rank] = 1;
    job->pending_losses[rank] = loss;
    job->pending_count++;
    if (job->pending_count < job->world_size)
        return GLR_EWAIT;
    return close_pending(svc, job, result, err);
}

int svc_report(struct svc *svc, const char *id, int64_t step, int64_t rank, double loss,
               struct svc_waiter *waiter, struct svc_report_result *result, char *err)
{
    memset(result, 0, sizeof(*result));
    if (step < 0 || step > GLR_MAX_STEP)
        return glr_fail(err, GLR_EINVAL, "step must be an integer from 0 to %lld",
                        (long long)GLR_MAX_STEP);
    struct job *job;
    int rc = job_lock(svc, id, &job, err);
    if (rc)
        return rc;
    waiter->lookup = false;
    if (rank < 0 || rank >= job->world_size)
        rc = glr_fail(err, GLR_EINVAL, "rank must be an integer from 0 to %lld (world_size %lld)",
                      (long long)job->world_size - 1, (long long)job->world_size);
    else if (job->last_step >= 0 && step <= job->last_step)
        rc = answer_decided(svc, job, step, rank, loss, result, err);
    else if (job->finished)
        rc = glr_fail(err, GLR_ECONFLICT, "job %s is finished and takes no more reports", job->id);
    else if (job->world_size > 1)
        rc = gather(svc, job, step, rank, loss, waiter, result, err);
    else
        rc = decide(svc, job, step, loss, NULL, 0, 1, result, err);
    job_unlock(svc, job);
    return rc;
}

int svc_lr(struct svc *svc, const char *id, int64_t step, int64_t wait_ms,
           struct svc_waiter *waiter, struct svc_report_result *result, char *err)
{
    memset(result, 0, sizeof(*result));
    if (step < 0 || step > GLR_MAX_STEP)
        return glr_fail(err, GLR_EINVAL, "step must be an integer from 0 to %lld",
                        (long long)GLR_MAX_STEP);
    if (wait_ms < 0 || wait_ms > SVC_WAIT_MAX_MS)
        return glr_fail(err, GLR_EINVAL, "wait_ms must be an integer from 0 to %d",
                        SVC_WAIT_MAX_MS);
    struct job *job;
    int rc = job_lock(svc, id, &job, err);
    if (rc)
        return rc;
    if (job->last_step >= 0 && step <= job->last_step) {
        struct store_report stored;
        rc = store_report_find(svc->store, job->seq, step, 0, &stored, err);
        if (rc == GLR_ENOTFOUND)
            rc = glr_fail(err, GLR_ENOTFOUND, "step %lld was never decided: later steps were",
                          (long long)step);
        if (!rc)
            result_from_report(&stored, glr_sched_lr_is_array(job->sched), result);
    } else if (wait_ms == 0) {
        rc = glr_fail(err, GLR_EAGAIN, "step %lld is not decided yet", (long long)step);
    } else {
        waiter->lookup = true;
        waiter->deadline_ms = now_ms() + wait_ms;
        rc = add_waiter(svc, job, waiter, step, err);
    }
    job_unlock(svc, job);
    return rc;
}

/* Decides steps whose ranks took too long, and ends lookups that waited long enough. */
static void expire(struct svc *svc, struct job *job, int64_t now)
{
    if (job->pending_step >= 0 && now >= job->pending_deadline_ms) {
        char err[GLR_ERR_MAX];
        struct svc_report_result result;
        close_pending(svc, job, &result, err);
    }
    struct svc_waiter **link = &job->waiters;
    int64_t woken = 0;
    while (*link) {
        struct svc_waiter *w = *link;
        if (!w->lookup || now < w->deadline_ms) {
            link = &w->next;
            continue;
        }
        *link = w->next;
        woken++;
        w->done(w, GLR_EAGAIN, NULL, "the step is not decided yet");
    }
    job->nwaiters -= woken;
    pthread_mutex_lock(&svc->waiting_lock);
    svc->nwaiters -= woken;
    pthread_mutex_unlock(&svc->waiting_lock);
}

/* Visits every watched job: fn runs with the job locked; idle jobs leave the list. */
static void visit_watched(struct svc *svc, void (*fn)(struct svc *, struct job *, int64_t),
                          int64_t arg)
{
    pthread_mutex_lock(&svc->waiting_lock);
    size_t n = 0;
    for (struct job *j = svc->waiting; j; j = j->waiting_next)
        n++;
    struct job **jobs = n ? malloc(n * sizeof(*jobs)) : NULL;
    n = 0;
    for (struct job *j = svc->waiting; jobs && j; j = j->waiting_next) {
        pthread_mutex_lock(&svc->map_lock);
        j->refs++;
        pthread_mutex_unlock(&svc->map_lock);
        jobs[n++] = j;
    }
    pthread_mutex_unlock(&svc->waiting_lock);
    for (size_t i = 0; i < n; i++) {
        struct job *job = jobs[i];
        pthread_mutex_lock(&job->lock);
        fn(svc, job, arg);
        bool idle = job->pending_step < 0 && !job->waiters;
        bool drop = false;
        pthread_mutex_lock(&svc->waiting_lock);
        if (idle && job->in_waiting_list) {
            for (struct job **link = &svc->waiting; *link; link = &(*link)->waiting_next) {
                if (*link == job) {
                    *link = job->waiting_next;
                    break;
                }
            }
            job->in_waiting_list = false;
            drop = true; /* the list's reference */
        }
        pthread_mutex_unlock(&svc->waiting_lock);
        pthread_mutex_unlock(&job->lock);
        if (drop)
            job_release(svc, job);
        job_release(svc, job);
    }
    free(jobs);
}

static void *timer_main(void *arg)
{
    struct svc *svc = arg;
    pthread_mutex_lock(&svc->waiting_lock);
    while (!svc->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SVC_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&svc->waiting_wake, &svc->waiting_lock, &until);
        if (svc->stopping || !svc->waiting)
            continue;
        pthread_mutex_unlock(&svc->waiting_lock);
        visit_watched(svc, expire, now_ms());
        pthread_mutex_lock(&svc->waiting_lock);
    }
    pthread_mutex_unlock(&svc->waiting_lock);
    return NULL;
}

/* Forgets the ranks gathered for a step not decided; call with job->lock held. */
static void drop_pending(struct job *job)
{
    if (job->pending_step < 0)
        return;
    job->pending_step = -1;
    job->pending_count = 0;
    memset(job->pending_seen, 0, (size_t)job->world_size);
}

/* Answers every waiting request of job with "stopping" and drops its gathered ranks. */
static void cancel(struct svc *svc, struct job *job, int64_t unused)
{
    (void)unused;
    drop_pending(job);
    wake(svc, job, 0, INT64_MAX, GLR_EBUSY, NULL, "the service is stopping; try again");
}

void svc_cancel_waiters(struct svc *svc)
{
    pthread_mutex_lock(&svc->waiting_lock);
    svc->stopping = true;
    pthread_cond_broadcast(&svc->waiting_wake);
    pthread_mutex_unlock(&svc->waiting_lock);
    visit_watched(svc, cancel, 0);
}

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
    bool ok = p && cJSON_AddNumberToObject(p, "step", (double)r->step) &&
              add_item(p, "loss", jsonx_number(r->loss)) &&
              add_item(p, "lr", lrs_json(r->lrs, r->groups, lr_is_array)) &&
              cJSON_AddStringToObject(p, "event", glr_event_name(r->event));
    /* The metric is shown only where the policy judged something else than the loss. */
    if (ok && !same_bits(r->metric, r->loss) && !(isnan(r->metric) && isnan(r->loss)))
        ok = add_item(p, "metric", jsonx_number(r->metric));
    if (ok && r->ranks > 1)
        ok = cJSON_AddNumberToObject(p, "ranks", (double)r->ranks) != NULL;
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

/* History page tokens: "h" STEP "." RANK, the first row of the next page. */
static int parse_history_token(const char *token, int64_t *step, int64_t *rank, char *err)
{
    if (!token)
        return GLR_OK;
    long long s = -1, r = -1;
    char tail;
    if (sscanf(token, "h%lld.%lld%c", &s, &r, &tail) != 2 || s < 0 || r < 0)
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
    struct pick pick = {index, *r};
    if (lr_changed(ctx->prev, r, index)) {
        /* Keep change_keep of the changes, spread evenly over all of them. */
        int64_t c = ctx->change_index++;
        if (ctx->change_keep > 0 &&
            c * ctx->change_keep / ctx->changes != (c + 1) * ctx->change_keep / ctx->changes)
            sample_add(ctx, &pick);
    }
    memcpy(ctx->prev, r->lrs, r->groups * sizeof(double));
    /* A NaN loss is never the lowest or highest; a bucket of NaNs keeps its first row. */
    bool finite_or_first = !isnan(r->loss) || !ctx->have_low;
    if (finite_or_first &&
        (!ctx->have_low || isnan(ctx->low.report.loss) || r->loss < ctx->low.report.loss)) {
        ctx->low = pick;
        ctx->have_low = true;
    }
    if (!isnan(r->loss) &&
        (!ctx->have_high || isnan(ctx->high.report.loss) || r->loss > ctx->high.report.loss)) {
        ctx->high = pick;
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
    int rc = parse_history_token(q->page_token, &from_step, &from_rank, err);
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
    char *p = csv->text + csv->len;
    int n = snprintf(p, 32, "%lld,", (long long)r->step);
    n += (int)jsonx_format_double(r->loss, p + n);
    for (size_t g = 0; g < r->groups; g++) {
        p[n++] = ',';
        n += (int)jsonx_format_double(r->lrs[g], p + n);
    }
    n += snprintf(p + n, 16, ",%s\n", glr_event_name(r->event));
    csv->len += (size_t)n;
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

/* ---- rewind ---------------------------------------------------------------------------- */

/* Replays stored history through a scheduler, checking it answers what was answered. */
struct replay_ctx {
    struct glr_sched *sched;
    int64_t last_step;
    int64_t reports;
    int rc;
    char *err;
};

static bool replay_one(void *ctx_, const struct store_report *r)
{
    struct replay_ctx *ctx = ctx_;
    struct glr_step_result decision;
    if (glr_sched_step(ctx->sched, r->step, r->loss, &decision) != GLR_OK ||
        decision.event != r->event || glr_sched_groups(ctx->sched) != r->groups ||
        memcmp(glr_sched_lrs(ctx->sched), r->lrs, r->groups * sizeof(double)) != 0) {
        ctx->rc =
            glr_fail(ctx->err, GLR_ECORRUPT, "replaying step %lld does not give the stored answer",
                     (long long)r->step);
        return false;
    }
    ctx->last_step = r->step;
    ctx->reports++;
    return true;
}

/* Puts job->sched in its state right after to_step: the nearest snapshot, then history. */
static int replay_to(struct svc *svc, struct job *job, int64_t to_step, struct replay_ctx *ctx,
                     char *err)
{
    struct store_snapshot snapshot = {.step = -1};
    int rc = store_snapshot_find(svc->store, job->seq, to_step, &snapshot, err);
    if (rc == GLR_OK) {
        cJSON *state = cJSON_Parse(snapshot.state);
        free(snapshot.state);
        rc = state ? glr_sched_state_load(job->sched, state, err)
                   : glr_fail(err, GLR_ECORRUPT, "database: a snapshot is damaged JSON");
        cJSON_Delete(state);
        ctx->last_step = snapshot.step;
        ctx->reports = snapshot.reports;
    } else if (rc == GLR_ENOTFOUND) {
        snapshot.step = -1;
        glr_sched_reset(job->sched);
        rc = GLR_OK;
    }
    if (rc)
        return rc;
    ctx->sched = job->sched;
    ctx->err = err;
    rc = store_report_scan(svc->store, job->seq, snapshot.step + 1, 0, to_step, INT64_MAX,
                           replay_one, ctx, err);
    return rc ? rc : ctx->rc;
}

int svc_rewind(struct svc *svc, const char *id, int64_t to_step, cJSON **job_out, char *err)
{
    *job_out = NULL;
    if (to_step < -1 || to_step > GLR_MAX_STEP)
        return glr_fail(err, GLR_EINVAL, "to_step must be an integer from -1 to %lld",
                        (long long)GLR_MAX_STEP);
    struct job *job;
    int rc = job_lock(svc, id, &job, err);
    if (rc)
        return rc;
    /* Ranks gathered, and requests waiting, for steps after to_step have no future. */
    if (job->pending_step > to_step)
        drop_pending(job);
    wake(svc, job, to_step + 1, INT64_MAX, GLR_ECONFLICT, NULL,
         "the job was rewound to an earlier step; report again from there");
    if (to_step >= job->last_step) {
        /* Nothing after to_step: the job already is in that state. */
        rc = describe_job(job, job_out, err);
        job_unlock(svc, job);
        return rc;
    }
    struct replay_ctx ctx = {.last_step = -1};
    rc = replay_to(svc, job, to_step, &ctx, err);
    char *state_text = NULL;
    if (!rc) {
        cJSON *state = glr_sched_state_save(job->sched);
        state_text = print(state);
        cJSON_Delete(state);
        if (!state_text)
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    int64_t now = now_ms();
    if (!rc)
        rc = store_rewind_commit(svc->store, job->seq, to_step, state_text, ctx.last_step,
                                 ctx.reports, now, err);
    free(state_text);
    if (rc) {
        /* The scheduler may be half way back: reload the job from the store next time. */
        job_forget(svc, job);
        job_unlock(svc, job);
        return rc;
    }
    job->last_step = ctx.last_step;
    job->reports = ctx.reports;
    job->rewinds++;
    job->finished = false;
    job->updated_ms = now;
    rc = describe_job(job, job_out, err);
    job_unlock(svc, job);
    return rc;
}
