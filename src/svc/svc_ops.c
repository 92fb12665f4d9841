/*
 * What operators ask of the service (see svc.h): is it ready to take reports, and the
 * numbers /metrics shows about jobs and waiting requests.
 */
#include "svc/svc_int.h"

int svc_ready(struct svc *svc, char *err)
{
    glr_mutex_lock(&svc->waits.lock);
    bool stopping = svc->waits.stopping;
    glr_mutex_unlock(&svc->waits.lock);
    if (stopping)
        return glr_fail(err, GLR_EBUSY, "the daemon is stopping");
    int rc = store_check_writable(svc->store, err);
    /* Any store failure means "not ready": the status the probe answers is 503 for all. */
    return rc ? GLR_EBUSY : GLR_OK;
}

int svc_stats(struct svc *svc, struct svc_stats *out, char *err)
{
    out->jobs_in_memory = (int64_t)svc_jobs_count(&svc->jobs);
    svc_wait_counts(svc, &out->waiting_requests, &out->waiting_jobs);
    return store_job_counts(svc->store, &out->jobs_running, &out->jobs_finished, err);
}
