/*
 * Waiting requests (see svc_wait_int.h): each job's list, the heap of jobs by their
 * earliest deadline, and the timer thread that sleeps until the first one.
 */
#include <errno.h>
#include <stdlib.h>

#include "svc/svc_int.h"

void svc_wait_init(struct svc_waits *waits)
{
    glr_mutex_init(&waits->lock, SVC_LOCK_WAITS);
    glr_cond_init_monotonic(&waits->wake);
}

/* ---- the heap ------------------------------------------------------------------------ */

static void heap_set(struct svc_waits *w, size_t i, struct svc_job *job)
{
    w->heap[i] = job;
    job->heap_index = i;
}

static void sift_up(struct svc_waits *w, size_t i)
{
    struct svc_job *job = w->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (w->heap[parent]->heap_at <= job->heap_at)
            break;
        heap_set(w, i, w->heap[parent]);
        i = parent;
    }
    heap_set(w, i, job);
}

static void sift_down(struct svc_waits *w, size_t i)
{
    struct svc_job *job = w->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= w->count)
            break;
        if (child + 1 < w->count && w->heap[child + 1]->heap_at < w->heap[child]->heap_at)
            child++;
        if (w->heap[child]->heap_at >= job->heap_at)
            break;
        heap_set(w, i, w->heap[child]);
        i = child;
    }
    heap_set(w, i, job);
}

/* Moves the job to its place after its heap_at changed; waits->lock held. */
static void heap_fix(struct svc_waits *w, struct svc_job *job)
{
    sift_up(w, job->heap_index);
    sift_down(w, job->heap_index);
}

/* Adds job; false when out of memory. waits->lock held. */
static bool heap_push(struct svc_waits *w, struct svc_job *job)
{
    if (w->count == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        struct svc_job **heap = realloc(w->heap, cap * sizeof(*heap));
        if (!heap)
            return false;
        w->heap = heap;
        w->cap = cap;
    }
    heap_set(w, w->count++, job);
    sift_up(w, job->heap_index);
    return true;
}

/* Takes job out; waits->lock held. */
static void heap_remove(struct svc_waits *w, struct svc_job *job)
{
    size_t i = job->heap_index;
    job->heap_index = SIZE_MAX;
    struct svc_job *last = w->heap[--w->count];
    if (i == w->count)
        return;
    heap_set(w, i, last);
    heap_fix(w, last);
}

/* ---- watching jobs --------------------------------------------------------------------- */

/* The job's earliest deadline, INT64_MAX for none; job->lock held. */
static int64_t earliest(const struct svc_job *job)
{
    int64_t at = job->nlookups > 0 ? job->lookup_deadline : INT64_MAX;
    if (job->pending_step >= 0 && job->pending_deadline < at)
        at = job->pending_deadline;
    return at;
}

void svc_wait_watch(struct svc *svc, struct svc_job *job)
{
    glr_mutex_assert_held(&job->lock);
    struct svc_waits *w = &svc->waits;
    bool wanted = job->waiters != NULL || job->pending_step >= 0;
    int64_t at = earliest(job);
    bool drop = false;
    glr_mutex_lock(&w->lock);
    bool in_heap = job->heap_index != SIZE_MAX;
    bool first_moved = false;
    if (wanted && !in_heap) {
        job->heap_at = at;
        if (heap_push(w, job)) {
            svc_job_ref(svc, job); /* the heap's */
            first_moved = job->heap_index == 0;
        }
        /* Out of memory: the job is not watched; its waiters end with their step. */
    } else if (wanted && job->heap_at != at) {
        job->heap_at = at;
        heap_fix(w, job);
        first_moved = job->heap_index == 0;
    } else if (!wanted && in_heap) {
        heap_remove(w, job);
        drop = true;
    }
    if (first_moved)
        pthread_cond_signal(&w->wake);
    glr_mutex_unlock(&w->lock);
    if (drop)
        svc_job_release(svc, job); /* the heap's; the caller holds another */
}

/* ---- waiters ------------------------------------------------------------------------- */

int svc_wait_add(struct svc *svc, struct svc_job *job, struct svc_waiter *waiter, int64_t step,
                 bool lookup, int64_t deadline, char *err)
{
    glr_mutex_assert_held(&job->lock);
    if (job->nwaiters >= 2 * job->world_size + SVC_WAITERS_SPARE)
        return glr_fail(err, GLR_ELIMIT, "too many requests wait on job %s already", job->id);
    struct svc_waits *w = &svc->waits;
    glr_mutex_lock(&w->lock);
    bool full = w->nwaiters >= SVC_WAITERS_MAX || w->stopping;
    if (!full)
        w->nwaiters++;
    glr_mutex_unlock(&w->lock);
    if (full)
        return glr_fail(err, GLR_EBUSY, "too many requests wait already, or the service stops");
    waiter->step = step;
    waiter->lookup = lookup;
    waiter->deadline = deadline;
    waiter->next = job->waiters;
    job->waiters = waiter;
    job->nwaiters++;
    if (lookup) {
        if (job->nlookups++ == 0 || deadline < job->lookup_deadline)
            job->lookup_deadline = deadline;
    }
    svc_wait_watch(svc, job);
    return GLR_EWAIT;
}

/* Moves waiter (already unlinked) to the job's answered list; job->lock held. */
static void answer_later(struct svc_job *job, struct svc_waiter *waiter, int status,
                         const struct svc_report_result *result, const char *err)
{
    waiter->status = status;
    waiter->result = result;
    waiter->err = err;
    waiter->next = job->woken;
    job->woken = waiter;
    job->nwaiters--;
    if (waiter->lookup && --job->nlookups == 0)
        job->lookup_deadline = INT64_MAX;
}

/* Takes the waiters for which want() is true; returns how many. job->lock held. */
static int64_t take_where(struct svc_job *job,
                          bool (*want)(const struct svc_waiter *, int64_t, int64_t), int64_t a,
                          int64_t b, int status, const struct svc_report_result *result,
                          const char *err)
{
    struct svc_waiter **link = &job->waiters;
    int64_t taken = 0;
    while (*link) {
        struct svc_waiter *waiter = *link;
        if (!want(waiter, a, b)) {
            link = &waiter->next;
            continue;
        }
        *link = waiter->next;
        answer_later(job, waiter, status, result, err);
        taken++;
    }
    return taken;
}

static bool in_steps(const struct svc_waiter *waiter, int64_t from, int64_t to)
{
    return waiter->step >= from && waiter->step <= to;
}

static bool expired_lookup(const struct svc_waiter *waiter, int64_t now, int64_t unused)
{
    (void)unused;
    return waiter->lookup && waiter->deadline <= now;
}

/* Counts taken waiters out of the global count and updates the job's place. */
static void taken(struct svc *svc, struct svc_job *job, int64_t n)
{
    if (n > 0) {
        glr_mutex_lock(&svc->waits.lock);
        svc->waits.nwaiters -= n;
        glr_mutex_unlock(&svc->waits.lock);
    }
    svc_wait_watch(svc, job);
}

void svc_wait_take(struct svc *svc, struct svc_job *job, int64_t from, int64_t to, int status,
                   const struct svc_report_result *result, const char *err)
{
    glr_mutex_assert_held(&job->lock);
    /*
     * Nothing waits (a job of one rank, whose reporter waits in its decision): then the
     * heap has nothing to learn either, and a report takes no waits lock.
     */
    if (!job->waiters)
        return;
    taken(svc, job, take_where(job, in_steps, from, to, status, result, err));
}

bool svc_wait_cancel(struct svc *svc, struct svc_job *job, struct svc_waiter *waiter, int status,
                     const char *err)
{
    glr_mutex_assert_held(&job->lock);
    struct svc_waiter **link = &job->waiters;
    while (*link && *link != waiter)
        link = &(*link)->next;
    if (!*link)
        return false;
    *link = waiter->next;
    /* The lookups' bound stays at or before those left; the timer finds their first end. */
    answer_later(job, waiter, status, NULL, err);
    taken(svc, job, 1);
    return true;
}

void svc_wait_take_expired(struct svc *svc, struct svc_job *job, int64_t now)
{
    glr_mutex_assert_held(&job->lock);
    int64_t n =
        take_where(job, expired_lookup, now, 0, GLR_EAGAIN, NULL, "the step is not decided yet");
    /* The lookups left may end later than the bound kept so far: find their first end. */
    if (job->nlookups > 0) {
        job->lookup_deadline = INT64_MAX;
        for (const struct svc_waiter *w = job->waiters; w; w = w->next)
            if (w->lookup && w->deadline < job->lookup_deadline)
                job->lookup_deadline = w->deadline;
    }
    taken(svc, job, n);
}

void svc_wait_counts(struct svc *svc, int64_t *waiters, int64_t *jobs)
{
    glr_mutex_lock(&svc->waits.lock);
    *waiters = svc->waits.nwaiters;
    *jobs = (int64_t)svc->waits.count;
    glr_mutex_unlock(&svc->waits.lock);
}

/* ---- the timer ----------------------------------------------------------------------- */

static void *timer_main(void *arg)
{
    struct svc *svc = arg;
    struct svc_waits *w = &svc->waits;
    glr_mutex_lock(&w->lock);
    while (!w->stopping) {
        if (w->count == 0 || w->heap[0]->heap_at == INT64_MAX) {
            glr_mutex_wait(&w->lock, &w->wake);
            continue;
        }
        int64_t now = glr_clock_mono_ms();
        struct svc_job *job = w->heap[0];
        if (job->heap_at > now) {
            glr_mutex_wait_until(&w->lock, &w->wake, job->heap_at);
            continue;
        }
        /*
         * Due. The job's deadlines are read again under its own lock, which may not be
         * taken under this one: hold a reference meanwhile. Pushing its entry to the back
         * keeps the loop from spinning on it should its lock be slow to come.
         */
        svc_job_ref(svc, job);
        job->heap_at = INT64_MAX;
        heap_fix(w, job);
        glr_mutex_unlock(&w->lock);
        char err[GLR_ERR_MAX]; /* lasts until the waiters are answered, in svc_job_leave() */
        svc_job_enter(job);
        if (!job->gone) /* a job deleted or dropped has nothing left to expire */
            w->expire(svc, job, now, err);
        svc_wait_watch(svc, job);
        svc_job_leave(job);
        svc_job_release(svc, job);
        glr_mutex_lock(&w->lock);
    }
    glr_mutex_unlock(&w->lock);
    return NULL;
}

int svc_wait_start(struct svc *svc, svc_wait_expire_fn expire, svc_wait_drop_fn drop, char *err)
{
    struct svc_waits *w = &svc->waits;
    w->expire = expire;
    w->drop = drop;
    if (pthread_create(&w->timer, NULL, timer_main, svc) != 0)
        return glr_fail(err, GLR_ENOMEM, "cannot start the timer thread");
    w->started = true;
    return GLR_OK;
}

void svc_wait_stop(struct svc *svc)
{
    struct svc_waits *w = &svc->waits;
    glr_mutex_lock(&w->lock);
    bool was_stopping = w->stopping;
    w->stopping = true;
    pthread_cond_broadcast(&w->wake);
    /*
     * Every watched job is answered in turn; each leaves the heap as its waiters go, and
     * no new waiter is taken once stopping is set. A job that stays (its heap entry could
     * not be dropped) is visited once.
     */
    for (size_t visited = 0; w->count > 0 && visited < w->cap + w->count; visited++) {
        struct svc_job *job = w->heap[0];
        svc_job_ref(svc, job);
        glr_mutex_unlock(&w->lock);
        svc_job_enter(job);
        if (w->drop)
            w->drop(svc, job);
        svc_wait_take(svc, job, 0, INT64_MAX, GLR_EBUSY, NULL,
                      "the service is stopping; try again");
        svc_wait_watch(svc, job);
        svc_job_leave(job);
        svc_job_release(svc, job);
        glr_mutex_lock(&w->lock);
        if (w->count > 0 && w->heap[0] == job)
            break; /* still waited on (by nothing that can be answered): leave it */
    }
    glr_mutex_unlock(&w->lock);
    if (w->started && !was_stopping)
        pthread_join(w->timer, NULL);
}

void svc_wait_destroy(struct svc *svc)
{
    struct svc_waits *w = &svc->waits;
    for (size_t i = 0; i < w->count; i++) {
        w->heap[i]->heap_index = SIZE_MAX;
        svc_job_release(svc, w->heap[i]);
    }
    free(w->heap);
    glr_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
}
