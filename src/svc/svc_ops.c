/*
 * What operators ask of the service (see svc.h): is it ready to take reports, and the
 * numbers /metrics shows about jobs and waiting requests.
 */
#include "svc/svc_int.h"

int svc_ready(struct svc *svc, char *err)
{
    pthread_mutex_lock(&svc->waiting_lock);
    bool stopping = svc->stopping;
    pthread_mutex_unlock(&svc->waiting_lock);
    if (stopping)
        return glr_fail(err, GLR_EBUSY, "the daemon is stopping");
    int rc = store_check_writable(svc->store, err);
    /* Any store failure means "not ready": the status the probe answers is 503 for all. */
    return rc ? GLR_EBUSY : GLR_OK;
}

int svc_stats(struct svc *svc, struct svc_stats *out, char *err)
{
    pthread_mutex_lock(&svc->map_lock);
    out->jobs_in_memory = (int64_t)svc->njobs;
    pthread_mutex_unlock(&svc->map_lock);
    pthread_mutex_lock(&svc->waiting_lock);
    out->waiting_requests = svc->nwaiters;
    out->waiting_jobs = 0;
    for (const struct job *job = svc->waiting; job; job = job->waiting_next)
        out->waiting_jobs++;
    pthread_mutex_unlock(&svc->waiting_lock);
    return store_job_counts(svc->store, &out->jobs_running, &out->jobs_finished, err);
}
