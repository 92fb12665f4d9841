/*
 * greedylrd: the learning-rate scheduling daemon. Parses options, opens the service on
 * its database, serves the HTTP API, and shuts down cleanly on SIGINT or SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "store.h"
#include "svc.h"

/* Longest --db path accepted. */
#define MAIN_PATH_MAX STORE_PATH_MAX
/* Largest --resident-jobs accepted. */
#define MAIN_RESIDENT_MAX 100000000

struct options {
    char host[API_HOST_MAX + 1];
    uint16_t port;
    const char *db;
    unsigned threads;
    enum log_level level;
    enum log_format format;
    enum store_sync sync;
    size_t resident_jobs;
};

/* The database path of the environment, else the default. */
static const char *default_db(void)
{
    const char *db = getenv("GREEDYLRD_DB");
    return db && *db ? db : "./greedylr.db";
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greedylrd [--listen ADDR:PORT] [--db PATH] [--threads N]\n"
            "                 [--sync normal|full] [--resident-jobs N]\n"
            "                 [--log-level error|warn|info|debug] [--log-format text|json]\n"
            "       greedylrd backup [--db PATH] OUT\n"
            "       greedylrd --help | --version\n"
            "\n"
            "Serves the greedylr learning-rate scheduling API over HTTP/JSON.\n"
            "  --listen ADDR:PORT  numeric address and port (default 127.0.0.1:8080;\n"
            "                      port 0 picks a free one; IPv6 as [::1]:8080);\n"
            "                      also GREEDYLRD_LISTEN\n"
            "  --db PATH           SQLite database, created if missing (default\n"
            "                      ./greedylr.db); also GREEDYLRD_DB\n"
            "  --threads N         server threads (default: the number of CPUs)\n"
            "  --sync MODE         normal (default): an answered report survives a crash\n"
            "                      of the daemon; full: also a power loss (fsync)\n"
            "  --resident-jobs N   idle jobs kept in memory (default %d)\n"
            "  --log-level LEVEL   what to log on standard error (default info; info\n"
            "                      logs one line per request)\n"
            "  --log-format FORMAT text, or json: one JSON object per line (default text)\n"
            "Once it accepts connections it prints \"listening on http://ADDR:PORT\" and\n"
            "tells $NOTIFY_SOCKET (systemd) READY=1; SIGTERM or SIGINT stops it cleanly.\n"
            "\n"
            "greedylrd backup copies the database at PATH (default as above), which a\n"
            "running daemon may be writing, into the new self-contained file OUT.\n",
            SVC_RESIDENT_DEFAULT);
}

/* Splits ADDR:PORT (or [ADDR]:PORT) into o->host and o->port. Returns 0 or -1. */
static int parse_listen(const char *text, struct options *o)
{
    const char *colon = strrchr(text, ':');
    if (!colon)
        return -1;
    const char *host = text;
    size_t host_len = (size_t)(colon - text);
    if (host_len >= 2 && text[0] == '[' && colon[-1] == ']') {
        host++;
        host_len -= 2;
    }
    if (host_len == 0 || host_len > API_HOST_MAX)
        return -1;
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end != '\0' || port < 0 || port > 65535)
        return -1;
    memcpy(o->host, host, host_len);
    o->host[host_len] = '\0';
    o->port = (uint16_t)port;
    return 0;
}

/* Reads the options; returns -1 to exit with status 0 (help, version), 2 on misuse. */
static int parse_options(int argc, char **argv, struct options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cpus > 0 ? (unsigned)cpus : 2;
    o->level = LOG_INFO;
    o->format = LOG_TEXT;
    const char *listen = getenv("GREEDYLRD_LISTEN");
    o->db = default_db();
    if (!listen || !*listen)
        listen = "127.0.0.1:8080";

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("greedylrd %s\n", PACKAGE_VERSION);
            return -1;
        }
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!value) {
            fprintf(stderr, "greedylrd: %s needs a value (see --help)\n", arg);
            return 2;
        }
        i++;
        if (strcmp(arg, "--listen") == 0) {
            listen = value;
        } else if (strcmp(arg, "--db") == 0) {
            o->db = value;
        } else if (strcmp(arg, "--threads") == 0) {
            char *end = NULL;
            long n = strtol(value, &end, 10);
            if (end == value || *end != '\0' || n < 1 || n > API_THREADS_MAX) {
                fprintf(stderr, "greedylrd: --threads must be from 1 to %d\n", API_THREADS_MAX);
                return 2;
            }
            o->threads = (unsigned)n;
        } else if (strcmp(arg, "--log-format") == 0) {
            if (log_parse_format(value, &o->format) != 0) {
                fprintf(stderr, "greedylrd: --log-format must be text or json\n");
                return 2;
            }
        } else if (strcmp(arg, "--sync") == 0) {
            if (strcmp(value, "normal") == 0) {
                o->sync = STORE_SYNC_NORMAL;
            } else if (strcmp(value, "full") == 0) {
                o->sync = STORE_SYNC_FULL;
            } else {
                fprintf(stderr, "greedylrd: --sync must be normal or full\n");
                return 2;
            }
        } else if (strcmp(arg, "--resident-jobs") == 0) {
            char *end = NULL;
            errno = 0;
            long long n = strtoll(value, &end, 10);
            if (errno || end == value || *end != '\0' || n < 1 || n > MAIN_RESIDENT_MAX) {
                fprintf(stderr, "greedylrd: --resident-jobs must be from 1 to %d\n",
                        MAIN_RESIDENT_MAX);
                return 2;
            }
            o->resident_jobs = (size_t)n;
        } else if (strcmp(arg, "--log-level") == 0) {
            if (log_parse_level(value, &o->level) != 0) {
                fprintf(stderr, "greedylrd: --log-level must be error, warn, info or debug\n");
                return 2;
            }
        } else {
            fprintf(stderr, "greedylrd: unknown option %s (see --help)\n", arg);
            return 2;
        }
    }
    if (parse_listen(listen, o) != 0) {
        fprintf(stderr, "greedylrd: listen address \"%s\" is not ADDR:PORT\n", listen);
        return 2;
    }
    if (strlen(o->db) == 0 || strlen(o->db) > MAIN_PATH_MAX) {
        fprintf(stderr, "greedylrd: --db must be a path of 1 to %d bytes\n", MAIN_PATH_MAX);
        return 2;
    }
    return 0;
}

/*
 * greedylrd backup [--db PATH] OUT: an online backup of a database a daemon may be
 * writing. Returns the exit status: 0, 1 when the backup failed, 2 on misuse.
 */
static int run_backup(int argc, char **argv)
{
    const char *db = default_db();
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || out) {
            fprintf(stderr, "greedylrd backup: unexpected argument %s (see --help)\n", argv[i]);
            return 2;
        } else {
            out = argv[i];
        }
    }
    if (!out || !*out) {
        fprintf(stderr, "greedylrd backup: the output file is missing (see --help)\n");
        return 2;
    }
    char err[GLR_ERR_MAX] = "";
    int64_t bytes = 0;
    if (store_backup(db, out, &bytes, err) != GLR_OK) {
        log_error("%s", err);
        return EXIT_FAILURE;
    }
    log_info("backed up %s to %s (%lld bytes)", db, out, (long long)bytes);
    return EXIT_SUCCESS;
}

/* The store's group commits, counted for /metrics. */
static void count_group_commit(void *ctx, double seconds, size_t size)
{
    (void)ctx;
    metrics_observe_commit(seconds, (unsigned)size);
}

/* Tells the service manager, if any, how the daemon stands; a failure is only logged. */
static void notify(const char *state)
{
    char err[GLR_ERR_MAX] = "";
    if (notify_send(state, err) != GLR_OK)
        log_warn("%s", err);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "backup") == 0)
        return run_backup(argc - 1, argv + 1);
    struct options o;
    memset(&o, 0, sizeof(o));
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc < 0 ? EXIT_SUCCESS : rc;
    log_set_level(o.level);
    log_set_format(o.format);

    /*
     * Block the stop signals before any thread starts, so that every thread inherits the
     * mask and only sigwait() below receives them.
     */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[GLR_ERR_MAX] = "";
    struct svc *svc = NULL;
    struct svc_options svc_options = {
        .store = {.sync = o.sync, .on_group = count_group_commit},
        .resident_jobs = o.resident_jobs,
    };
    if ((rc = svc_open(o.db, &svc_options, &svc, err)) != GLR_OK) {
        log_error("%s", err);
        return EXIT_FAILURE;
    }
    struct api_options api_options = {.host = o.host, .port = o.port, .threads = o.threads};
    struct api *api = NULL;
    if ((rc = api_start(svc, &api_options, &api, err)) != GLR_OK) {
        log_error("%s", err);
        svc_close(svc);
        return EXIT_FAILURE;
    }
    const char *open_bracket = strchr(o.host, ':') ? "[" : "";
    const char *close_bracket = strchr(o.host, ':') ? "]" : "";
    printf("listening on http://%s%s%s:%u\n", open_bracket, o.host, close_bracket, api_port(api));
    fflush(stdout);
    log_info("greedylrd %s serving %s with %u threads, sync %s", PACKAGE_VERSION, o.db, o.threads,
             o.sync == STORE_SYNC_FULL ? "full" : "normal");
    notify("READY=1\nSTATUS=serving");

    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    log_info("%s: stopping", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    notify("STOPPING=1");
    api_stop(api);
    svc_close(svc);
    log_info("stopped cleanly");
    return EXIT_SUCCESS;
}
