/*
 * The bare-HTTP ceiling for the benchmark: a libmicrohttpd server configured like
 * greedylrd (internal epoll thread pool, suspend/resume allowed) that reads each request
 * body and answers every request with the same report-sized JSON body. Nothing a real
 * service does can be faster on the same machine, so the benchmark reports greedylrd's
 * throughput as a fraction of this one's.
 *
 * usage: ceiling [--listen ADDR:PORT] [--threads N]; prints "listening on http://..." and
 * serves until SIGINT or SIGTERM.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What greedylrd answers a report with, byte for byte in size. */
static const char answer[] =
    "{\"job\":\"bench-0001\",\"step\":12345,\"lr\":0.10526315789473685,\"event\":\"increase\"}";

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    static int first_call_marker;
    if (*con_cls == NULL) {
        *con_cls = &first_call_marker; /* headers only so far: ask for the body */
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* take the body, like a parser would, and ignore it */
        return MHD_YES;
    }
    struct MHD_Response *response = MHD_create_response_from_buffer(
        sizeof(answer) - 1, (void *)(uintptr_t)answer, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result result = MHD_queue_response(conn, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return result;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = cpus > 0 ? (unsigned)cpus : 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0) {
            listen = argv[i + 1];
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = (unsigned)atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "usage: ceiling [--listen ADDR:PORT] [--threads N]\n");
            return 2;
        }
    }
    char host[64];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof(host) || threads < 1) {
        fprintf(stderr, "ceiling: --listen takes an IPv4 ADDR:PORT, --threads at least 1\n");
        return 2;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "ceiling: %s is not a numeric IPv4 address\n", host);
        return 2;
    }

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (!daemon) {
        fprintf(stderr, "ceiling: cannot listen on %s\n", listen);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on http://%s:%u\n", host, info ? info->port : 0);
    fflush(stdout);
    int signal_number;
    sigwait(&stop, &signal_number);
    MHD_stop_daemon(daemon);
    return 0;
}
