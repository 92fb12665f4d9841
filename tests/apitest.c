/* Shared fixtures of the API suites (see apitest.h). */
#include "apitest.h"

#include <stddef.h>

struct daemon server;
struct httpc client;
static void (*prepare_hook)(void);
static const char *const *server_args;

static void start_server(void)
{
    daemon_start(&server, NULL, server_args);
    if (prepare_hook)
        prepare_hook();
}

static void stop_server(void)
{
    daemon_stop(&server);
    daemon_cleanup(&server);
}

static void connect_client(void)
{
    httpc_init(&client, server.port);
}

static void disconnect_client(void)
{
    httpc_close(&client);
}

void apitest_fixtures(TCase *tc, void (*prepare)(void))
{
    apitest_fixtures_args(tc, prepare, NULL);
}

void apitest_fixtures_args(TCase *tc, void (*prepare)(void), const char *const *args)
{
    server_args = args;
    prepare_hook = prepare;
    tcase_add_unchecked_fixture(tc, start_server, stop_server);
    tcase_add_checked_fixture(tc, connect_client, disconnect_client);
}
