/*
 * Work too long for a server thread (a rewind of a long history, learning a family's
 * model): a server thread serves many connections, and one handler that runs for a second
 * holds every other connection of that thread for as long. Such a request is queued here,
 * in one of two lanes, its connection suspended, and the lane's own thread does the work,
 * then completes the request as the service completes a waiting one (api_wait_complete),
 * which resumes the connection to answer.
 */
#define _GNU_SOURCE /* gettid(): on Linux each thread has a nice value of its own */
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "http/api_int.h"

/*
 * The nice value of the background lane's thread: its work (learning a family's model)
 * yields the CPU to the server threads, so that reports on a busy machine do not wait
 * behind it. It takes no lock a report needs; a rewind does (its job's, the store's
 * writer's), so rewinds keep their lane at the daemon's priority: a lowered thread holding
 * those would hold every report up.
 */
#define API_DEFER_BACKGROUND_NICE 10

/* A lane's thread: work in order; at a stop, the rest is answered 503 unrun. */
static void *defer_main(void *arg)
{
    struct api_defer *d = arg;
    struct api *api = d->api;
    /* Only ever lowers the priority, which needs no privilege; a failure changes nothing. */
    if (d->nice > 0)
        (void)setpriority(PRIO_PROCESS, (id_t)gettid(), d->nice);
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->head && !d->stopping)
            pthread_cond_wait(&d->wake, &d->lock);
        struct request *req = d->head;
        if (!req)
            break; /* stopping, and nothing is left */
        d->head = req->deferred_next;
        if (!d->head)
            d->tail = &d->head;
        bool run = !d->stopping;
        pthread_mutex_unlock(&d->lock);
        char err[GLR_ERR_MAX] = "";
        int status = run ? req->deferred(api, req, err)
                         : glr_fail(err, GLR_EBUSY, "the service is stopping; send it again");
        api_wait_complete(req, status, NULL, err);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

static int lane_start(struct api *api, struct api_defer *d, int nice, char *err)
{
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    d->tail = &d->head;
    d->api = api;
    d->nice = nice;
    if (pthread_create(&d->thread, NULL, defer_main, d) != 0) {
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        return glr_fail(err, GLR_ENOMEM, "cannot start a thread of long requests");
    }
    d->started = true;
    return GLR_OK;
}

static void lane_stop(struct api_defer *d)
{
    if (!d->started)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    d->started = false;
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
}

int api_defer_start(struct api *api, char *err)
{
    int rc = lane_start(api, &api->defer[API_DEFER_LONG], 0, err);
    if (!rc &&
        (rc = lane_start(api, &api->defer[API_DEFER_BACKGROUND], API_DEFER_BACKGROUND_NICE, err)))
        lane_stop(&api->defer[API_DEFER_LONG]);
    return rc;
}

void api_defer_stop(struct api *api)
{
    for (int lane = 0; lane < API_DEFER_LANES; lane++)
        lane_stop(&api->defer[lane]);
}

enum MHD_Result api_defer(struct api *api, struct MHD_Connection *conn, struct request *req,
                          enum api_defer_lane lane, api_deferred_fn *fn)
{
    struct api_defer *d = &api->defer[lane];
    pthread_mutex_lock(&req->wait_lock); /* the connection watcher reads deferred */
    req->conn = conn;
    req->deferred = fn;
    req->wait_state = WAIT_PENDING;
    pthread_mutex_unlock(&req->wait_lock);
    pthread_mutex_lock(&d->lock);
    bool stopping = d->stopping;
    if (!stopping) {
        req->deferred_next = NULL;
        *d->tail = req;
        d->tail = &req->deferred_next;
        pthread_cond_signal(&d->wake);
    }
    pthread_mutex_unlock(&d->lock);
    if (stopping)
        api_wait_complete(req, GLR_EBUSY, NULL, "the service is stopping; send it again");
    return api_wait_suspend(conn, req);
}
