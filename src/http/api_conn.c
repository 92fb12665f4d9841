/*
 * The connections of the HTTP layer (see api_int.h): how many are open, and which ones
 * are turned away at once.
 */
#include "http/api_int.h"

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
    (void)conn;
    (void)socket_context;
    struct api *api = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&api->conns.open, 1);
    else
        atomic_fetch_sub(&api->conns.open, 1);
}
