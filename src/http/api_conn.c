/*
 * The connections of the HTTP layer (see api_int.h): how many are open, which ones are
 * turned away at once, and a watcher thread that hangs up on a request that takes too
 * long to arrive and gives up on a waiting request whose client went away.
 */
#define _GNU_SOURCE /* POLLRDHUP: the peer closed its end, which poll() says only on Linux */

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mutex.h"
#include "http/api_int.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0 /* elsewhere a client that left is noticed when both ends are closed */
#endif

/*
 * One open connection, made when libmicrohttpd starts it and freed when it closes it, so
 * that its socket stays open for as long as it is in the list.
 */
struct api_conn {
    struct api_conn *prev, *next; /* conns->lock */
    MHD_socket fd;                /* fixed */
    struct request *req;          /* conns->lock: the request on it, from begin to end */
    _Atomic int64_t deadline;     /* monotonic ms by which the request must have arrived */
    bool cut;                     /* the watcher's: shut down for its deadline */
    bool pinned;                  /* conns->lock: the watcher is cancelling req's wait */
};

/* ---- admission and the list -------------------------------------------------------- */

enum MHD_Result api_conn_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    struct api *api = cls;
    /*
     * Threads accept in parallel, so a few may pass together, up to one per thread; the
     * spare room given to libmicrohttpd (API_CONNECTIONS_SPARE) covers them.
     */
    return atomic_load(&api->conns.open) < api->conns.max ? MHD_YES : MHD_NO;
}

void api_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode code)
{
    struct api *api = cls;
    struct api_conns *cs = &api->conns;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&cs->open, 1);
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct api_conn *c = info ? calloc(1, sizeof(*c)) : NULL;
        *socket_context = c;
        if (!c)
            return; /* served all the same, without a deadline or a watch */
        c->fd = info->connect_fd;
        atomic_store(&c->deadline, glr_clock_mono_ms() + cs->request_ms);
        pthread_mutex_lock(&cs->lock);
        c->next = cs->head;
        if (cs->head)
            cs->head->prev = c;
        cs->head = c;
        cs->count++;
        pthread_mutex_unlock(&cs->lock);
        return;
    }
    struct api_conn *c = *socket_context;
    if (c) {
        pthread_mutex_lock(&cs->lock);
        if (c->prev)
            c->prev->next = c->next;
        else
            cs->head = c->next;
        if (c->next)
            c->next->prev = c->prev;
        cs->count--;
        pthread_mutex_unlock(&cs->lock);
        free(c);
        *socket_context = NULL;
    }
    atomic_fetch_sub(&cs->open, 1);
}

void api_conn_begin(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct api_conn *c = info ? info->socket_context : NULL;
    req->link = c;
    if (!c)
        return;
    pthread_mutex_lock(&api->conns.lock);
    c->req = req;
    pthread_mutex_unlock(&api->conns.lock);
}

void api_conn_arrived(struct request *req)
{
    if (req->link)
        atomic_store(&req->link->deadline, INT64_MAX);
}

void api_conn_end(struct api *api, struct request *req)
{
    struct api_conn *c = req->link;
    if (!c)
        return;
    struct api_conns *cs = &api->conns;
    pthread_mutex_lock(&cs->lock);
    while (c->pinned) /* the watcher reads req until it lets go of it */
        pthread_cond_wait(&cs->unpinned, &cs->lock);
    c->req = NULL;
    /* The next request on a kept-alive connection has as long, counted from now. */
    atomic_store(&c->deadline, glr_clock_mono_ms() + cs->request_ms);
    pthread_mutex_unlock(&cs->lock);
}

/* ---- the watcher ---------------------------------------------------------------------- */

/* True when req's connection is suspended until the service answers it. */
static bool suspended(struct request *req)
{
    if (atomic_load(&req->gone))
        return false;
    pthread_mutex_lock(&req->wait_lock);
    /*
     * A request whose work runs on the thread of long requests (api_defer.c) is not
     * cancelled: that thread still uses it, and resumes it when done.
     */
    bool waiting = req->wait_state == WAIT_SUSPENDED && !req->deferred;
    pthread_mutex_unlock(&req->wait_lock);
    return waiting;
}

/* Makes room for one entry per connection in the watcher's arrays; false when out of memory. */
static bool fit(struct api_conns *cs)
{
    if (cs->cap >= cs->count)
        return true;
    size_t cap = cs->count + cs->count / 2 + 16;
    struct pollfd *polls = realloc(cs->polls, cap * sizeof(*polls));
    if (polls)
        cs->polls = polls;
    struct api_conn **pinned = polls ? realloc(cs->pinned, cap * sizeof(*pinned)) : NULL;
    if (pinned)
        cs->pinned = pinned;
    if (!polls || !pinned)
        return false;
    cs->cap = cap;
    return true;
}

/*
 * One look at every connection, with conns->lock held: a request past its deadline has its
 * socket shut down (libmicrohttpd then reads the end of it and closes the connection),
 * and the suspended requests whose client hung up are marked gone and pinned, to be
 * cancelled once the lock is released. Returns how many were pinned (conns->pinned).
 */
static size_t look(struct api_conns *cs)
{
    if (!fit(cs))
        return 0; /* tried again at the next look */
    int64_t now = glr_clock_mono_ms();
    nfds_t n = 0;
    size_t cut = 0;
    for (struct api_conn *c = cs->head; c; c = c->next) {
        if (!c->cut && atomic_load(&c->deadline) <= now) {
            shutdown(c->fd, SHUT_RDWR);
            c->cut = true;
            cut++;
        }
        if (c->cut || !c->req || !suspended(c->req))
            continue;
        cs->polls[n] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
        cs->pinned[n++] = c;
    }
    if (cut > 0) /* one line per look, however many: a flood of slow clients is one line */
        log_info("%zu connections closed: their request took longer than %lld s to arrive", cut,
                 (long long)(cs->request_ms / 1000));
    if (n == 0 || poll(cs->polls, n, 0) <= 0)
        return 0;
    size_t pinned = 0;
    for (nfds_t i = 0; i < n; i++) {
        if (!(cs->polls[i].revents & (POLLRDHUP | POLLHUP | POLLERR)))
            continue;
        struct api_conn *c = cs->pinned[i];
        atomic_store(&c->req->gone, true);
        c->pinned = true;
        cs->pinned[pinned++] = c;
    }
    return pinned;
}

static void *watch_main(void *arg)
{
    struct api *api = arg;
    struct api_conns *cs = &api->conns;
    pthread_mutex_lock(&cs->lock);
    while (!cs->stopping) {
        size_t pinned = look(cs);
        if (pinned > 0) {
            /*
             * The service is called with no lock of ours held: it answers the waiter
             * (waiter_done), which resumes the connection, and libmicrohttpd closes it.
             * A pinned request is not freed meanwhile (api_conn_end waits).
             */
            pthread_mutex_unlock(&cs->lock);
            for (size_t i = 0; i < pinned; i++) {
                struct request *req = cs->pinned[i]->req;
                if (req->batch)
                    api_batch_cancel(api, req);
                else
                    svc_cancel_waiter(api->svc, req->match.id, &req->waiter);
            }
            pthread_mutex_lock(&cs->lock);
            for (size_t i = 0; i < pinned; i++)
                cs->pinned[i]->pinned = false;
            pthread_cond_broadcast(&cs->unpinned);
            log_info("%zu waiting requests whose clients went away were given up", pinned);
        }
        struct timespec until = glr_clock_mono_timespec(glr_clock_mono_ms() + API_WATCH_MS);
        pthread_cond_timedwait(&cs->wake, &cs->lock, &until);
    }
    pthread_mutex_unlock(&cs->lock);
    return NULL;
}

int api_conns_start(struct api *api, unsigned max, unsigned request_timeout_s, char *err)
{
    struct api_conns *cs = &api->conns;
    pthread_mutex_init(&cs->lock, NULL);
    glr_cond_init_monotonic(&cs->wake);
    pthread_cond_init(&cs->unpinned, NULL);
    cs->max = max;
    cs->request_ms = (int64_t)request_timeout_s * 1000;
    if (pthread_create(&cs->watcher, NULL, watch_main, api) != 0)
        return glr_fail(err, GLR_ENOMEM, "cannot start the connection watcher");
    cs->started = true;
    return GLR_OK;
}

void api_conns_stop(struct api *api)
{
    struct api_conns *cs = &api->conns;
    pthread_mutex_lock(&cs->lock);
    cs->stopping = true;
    pthread_cond_signal(&cs->wake);
    pthread_mutex_unlock(&cs->lock);
    if (cs->started)
        pthread_join(cs->watcher, NULL);
    cs->started = false;
}

void api_conns_destroy(struct api *api)
{
    struct api_conns *cs = &api->conns;
    free(cs->polls);
    free(cs->pinned);
    pthread_cond_destroy(&cs->unpinned);
    pthread_cond_destroy(&cs->wake);
    pthread_mutex_destroy(&cs->lock);
}
