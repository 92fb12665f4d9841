/*
 * greedylrd: the learning-rate scheduling daemon. Parses options, opens the service on
 * its database, serves the HTTP API, and shuts down cleanly on SIGINT or SIGTERM.
 * `greedylrd COMMAND ...` runs one of the subcommands instead (see subcommands[]).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "http/api.h"
#include "http/auth.h"
#include "config.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/clock.h"
#include "cli/cli.h"
#include "cli/notify.h"
#include "http/ratelimit.h"
#include "http/tls.h"
#include "store/store.h"
#include "svc/svc.h"
#include "cli/token_cli.h"

/* Longest --db path accepted. */
#define MAIN_PATH_MAX STORE_PATH_MAX
/* Largest --resident-jobs accepted. */
#define MAIN_RESIDENT_MAX 100000000
/* Largest --tls-cert or --tls-key file accepted, in bytes. */
#define MAIN_PEM_MAX (256 * 1024)
/* Longest --idle-timeout and --request-timeout, in seconds. */
#define MAIN_IDLE_TIMEOUT_MAX 86400
/* Most --max-connections. */
#define MAIN_CONNECTIONS_MAX 1000000
/* Largest --max-jobs or --max-reports-per-job (0 is no limit). */
#define MAIN_QUOTA_MAX 4000000000UL
/*
 * Room kept free on the database's file system by default, in bytes: four times the WAL
 * the checkpointer lets grow (16 MiB), which a checkpoint may need to grow the database
 * by, with room to spare for SQLite's temporary files and whatever else shares the disk.
 */
#define MAIN_DISK_RESERVE_DEFAULT (64ULL * 1024 * 1024)
/* Largest --disk-reserve, in bytes (1 TiB). */
#define MAIN_DISK_RESERVE_MAX (1ULL << 40)
/*
 * Open files the daemon needs besides its connections: the standard streams, the listening
 * socket, SQLite's connections with their WAL and temporary files, the notify socket, a
 * backup. 23 are open at rest with 4 threads; the rest is headroom.
 */
#define MAIN_FILES_RESERVE 64
/* Open files each server thread may hold: its wake-up descriptor, and one to spare. */
#define MAIN_FILES_PER_THREAD 2

struct options {
    char host[API_HOST_MAX + 1];
    uint16_t port;
    const char *db;
    unsigned threads;
    enum log_level level;
    enum log_format format;
    enum store_sync sync;
    size_t resident_jobs;
    const char *tls_cert; /* paths */
    const char *tls_key;
    bool insecure;
    bool skip_check;
    double rate;
    /* The limit options (parse_limit), each as given or its default. */
    unsigned long max_connections;
    unsigned long max_connections_per_ip;
    unsigned long idle_timeout_s;
    unsigned long request_timeout_s;
    unsigned long connection_memory;
    unsigned long max_jobs;
    unsigned long max_reports_per_job;
    uint64_t disk_reserve;
    const char *dashboard_dir; /* as given; NULL: GLR_DASHBOARD_DIR, if installed */
    const char *cors_origin;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greedylrd [--listen ADDR:PORT] [--db PATH] [--threads N]\n"
            "                 [--sync normal|full] [--resident-jobs N] [--skip-check]\n"
            "                 [--log-level error|warn|info|debug] [--log-format text|json]\n"
            "                 [--tls-cert FILE --tls-key FILE] [--insecure] [--rate-limit N/s]\n"
            "                 [--max-connections N] [--max-connections-per-ip N]\n"
            "                 [--idle-timeout SECONDS] [--request-timeout SECONDS]\n"
            "                 [--max-header-bytes N] [--max-jobs N] [--max-reports-per-job N]\n"
            "                 [--disk-reserve SIZE] [--dashboard-dir DIR] [--cors-origin ORIGIN]\n"
            "       greedylrd backup [--db PATH] [--force] OUT\n"
            "       greedylrd learn --family NAME [--db PATH]\n"
            "       greedylrd token create|list|revoke ...   (greedylrd token --help)\n"
            "       greedylrd --help (-h) | --version\n"
            "\n"
            "Serves the greedylr learning-rate scheduling API over HTTP/JSON.\n"
            "  --listen ADDR:PORT  numeric address (or localhost) and port (default\n"
            "                      127.0.0.1:8080; port 0 picks a free one; IPv6 as\n"
            "                      [::1]:8080); also GREEDYLRD_LISTEN\n"
            "  --db PATH           SQLite database, created if missing (default\n"
            "                      ./greedylr.db); also GREEDYLRD_DB\n"
            "  --threads N         server threads (default: the number of CPUs)\n"
            "  --sync MODE         normal (default): an answered report survives a crash\n"
            "                      of the daemon; full: also a power loss (fsync)\n"
            "  --resident-jobs N   idle jobs kept in memory (default %d)\n"
            "  --skip-check        serve the database without checking it first (PRAGMA\n"
            "                      quick_check, at most %d s; a damaged one is refused)\n"
            "  --log-level LEVEL   what to log on standard error (default info; info\n"
            "                      logs one line per request)\n"
            "  --log-format FORMAT text, or json: one JSON object per line (default text)\n"
            "  --dashboard-dir DIR the dashboard's files, served at / (default %s)\n"
            "Who gets in:\n"
            "  Clients send \"Authorization: Bearer TOKEN\" (greedylrd token create). With no\n"
            "  token in the database everyone may do everything, which greedylrd allows only\n"
            "  on a loopback address.\n"
            "  --insecure          serve another address without tokens all the same\n"
            "  --tls-cert FILE     serve HTTPS (TLS 1.2 and 1.3) with this PEM certificate\n"
            "  --tls-key FILE      and its PEM private key\n"
            "  --cors-origin ORIGIN  let pages of this origin (scheme://host[:port]) call the\n"
            "                      API; requests from any other origin are refused (403)\n"
            "Limits:\n"
            "  --rate-limit N/s    requests per second per token (per client address\n"
            "                      without tokens); over it 429 (default off)\n"
            "  --max-connections N         open at once (default %d)\n"
            "  --max-connections-per-ip N  open at once from one address (default %d; 0: no\n"
            "                              limit)\n"
            "  --idle-timeout SECONDS      close a connection idle this long (default %d)\n"
            "  --request-timeout SECONDS   close a connection whose request has not arrived\n"
            "                              whole this long after its accept, or after the\n"
            "                              request before it (default %d)\n"
            "  --max-header-bytes N        memory per connection, which the request line\n"
            "                              and headers must fit (default %d; else 431)\n"
            "  --max-jobs N                jobs the database may hold (default %d; 0: no\n"
            "                              limit); creating one more is 507\n"
            "  --max-reports-per-job N     steps one job may hold (default %d; 0: no\n"
            "                              limit); a report of one more is 507\n"
            "  --disk-reserve SIZE         bytes kept free on the database's file system\n"
            "                              (K, M or G: KiB, MiB, GiB; default %lluM; 0:\n"
            "                              none); below it writes are 503, nothing stored\n"
            "Request bodies are limited to %d bytes (413). SIGHUP reloads the tokens (also\n"
            "done every %d s).\n"
            "Once it accepts connections it prints \"listening on http://ADDR:PORT\"\n"
            "(https:// with TLS) and tells $NOTIFY_SOCKET (systemd) READY=1; SIGTERM or\n"
            "SIGINT stops it cleanly.\n"
            "\n"
            "greedylrd backup copies the database at PATH (default as above), which a\n"
            "running daemon may be writing, into the new self-contained file OUT; an\n"
            "existing OUT is replaced only with --force.\n"
            "\n"
            "greedylrd learn trains the next version of family NAME's learned model from the\n"
            "database at PATH, which no daemon may be serving (a daemon does it with POST\n"
            "/v1/families/NAME/learn), and prints the model's record as JSON.\n",
            SVC_RESIDENT_DEFAULT, STORE_CHECK_MS / 1000, GLR_DASHBOARD_DIR, API_CONNECTIONS_DEFAULT,
            API_CONNECTIONS_PER_IP_DEFAULT, API_IDLE_TIMEOUT_S, API_REQUEST_TIMEOUT_S,
            API_CONNECTION_MEMORY_DEFAULT, STORE_MAX_JOBS_DEFAULT, SVC_MAX_REPORTS_DEFAULT,
            (unsigned long long)(MAIN_DISK_RESERVE_DEFAULT >> 20), API_BODY_MAX, AUTH_RELOAD_S);
}

/* Reads an unsigned number in [min, max] into *out; returns 0, or -1 if it is not one. */
static int parse_unsigned(const char *text, unsigned long min, unsigned long max,
                          unsigned long *out)
{
    if (*text < '0' || *text > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/*
 * Reads a size in bytes, at most max: digits, then K, M or G for KiB, MiB or GiB.
 * Returns 0, or -1 if text is not one.
 */
static int parse_size(const char *text, unsigned long long max, unsigned long long *out)
{
    if (*text < '0' || *text > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'M' || *end == 'G')
        shift = *end == 'K' ? 10 : *end == 'M' ? 20 : 30;
    if (errno || (shift && end[1] != '\0') || (!shift && *end != '\0') || v > (max >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

/* The limit options: whole numbers in [min, max], each kept in a field of struct options. */
static const struct {
    const char *name;
    unsigned long min, max;
    size_t field; /* offsetof(struct options, ...): an unsigned long */
} limit_options[] = {
    {"--max-connections", 1, MAIN_CONNECTIONS_MAX, offsetof(struct options, max_connections)},
    {"--max-connections-per-ip", 0, MAIN_CONNECTIONS_MAX,
     offsetof(struct options, max_connections_per_ip)},
    {"--idle-timeout", 1, MAIN_IDLE_TIMEOUT_MAX, offsetof(struct options, idle_timeout_s)},
    {"--request-timeout", 1, MAIN_IDLE_TIMEOUT_MAX, offsetof(struct options, request_timeout_s)},
    {"--max-header-bytes", API_CONNECTION_MEMORY_MIN, API_CONNECTION_MEMORY_MAX,
     offsetof(struct options, connection_memory)},
    {"--max-jobs", 0, MAIN_QUOTA_MAX, offsetof(struct options, max_jobs)},
    {"--max-reports-per-job", 0, MAIN_QUOTA_MAX, offsetof(struct options, max_reports_per_job)},
};
#define LIMIT_OPTIONS (sizeof(limit_options) / sizeof(limit_options[0]))

/* The other options that take a value (parse_options reads each). */
static const char *const value_options[] = {
    "--listen",       "--db",       "--threads", "--log-format", "--sync",      "--resident-jobs",
    "--disk-reserve", "--tls-cert", "--tls-key", "--rate-limit", "--log-level", "--dashboard-dir",
    "--cors-origin",
};

/* Says that arg is no option of greedylrd's; returns the exit status of misuse. */
static int unknown_option(const char *arg)
{
    fprintf(stderr, "greedylrd: unknown option %s (see --help)\n", arg);
    return 2;
}

/* Whether arg is an option that takes a value, so that one missing is said so. */
static bool takes_value(const char *arg)
{
    for (size_t i = 0; i < LIMIT_OPTIONS; i++)
        if (strcmp(arg, limit_options[i].name) == 0)
            return true;
    for (size_t i = 0; i < sizeof(value_options) / sizeof(value_options[0]); i++)
        if (strcmp(arg, value_options[i]) == 0)
            return true;
    return false;
}

/* Reads the value of one of the limit options; returns 0 if arg is not one, 1, or 2. */
static int parse_limit(const char *arg, const char *value, struct options *o)
{
    for (size_t i = 0; i < LIMIT_OPTIONS; i++) {
        if (strcmp(arg, limit_options[i].name) != 0)
            continue;
        unsigned long *field = (unsigned long *)(void *)((char *)o + limit_options[i].field);
        if (parse_unsigned(value, limit_options[i].min, limit_options[i].max, field) != 0) {
            fprintf(stderr, "greedylrd: %s must be a whole number from %lu to %lu\n", arg,
                    limit_options[i].min, limit_options[i].max);
            return 2;
        }
        return 1;
    }
    return 0;
}

/*
 * Splits ADDR:PORT (or [ADDR]:PORT) into o->host and o->port: ADDR is a numeric IPv4 or
 * IPv6 address, or localhost, which is 127.0.0.1 (no name is looked up: a daemon listens
 * where it is told, not where a resolver says). Returns 0 or -1.
 */
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
    if (strcmp(o->host, "localhost") == 0)
        snprintf(o->host, sizeof(o->host), "127.0.0.1");
    unsigned char address[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, o->host, address) != 1 && inet_pton(AF_INET6, o->host, address) != 1)
        return -1;
    return 0;
}

/* Reads the options; returns -1 to exit with status 0 (help, version), 2 on misuse. */
static int parse_options(int argc, char **argv, struct options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cpus > 0 ? (unsigned)cpus : 2;
    o->level = LOG_INFO;
    o->max_connections = API_CONNECTIONS_DEFAULT;
    o->max_connections_per_ip = API_CONNECTIONS_PER_IP_DEFAULT;
    o->idle_timeout_s = API_IDLE_TIMEOUT_S;
    o->request_timeout_s = API_REQUEST_TIMEOUT_S;
    o->connection_memory = API_CONNECTION_MEMORY_DEFAULT;
    o->max_jobs = STORE_MAX_JOBS_DEFAULT;
    o->max_reports_per_job = SVC_MAX_REPORTS_DEFAULT;
    o->disk_reserve = MAIN_DISK_RESERVE_DEFAULT;
    o->format = LOG_TEXT;
    const char *listen = getenv("GREEDYLRD_LISTEN");
    o->db = cli_default_db();
    if (!listen || !*listen)
        listen = "127.0.0.1:8080";
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("greedylrd %s\n", PACKAGE_VERSION);
            return -1;
        }
        if (strcmp(arg, "--insecure") == 0) {
            o->insecure = true;
            continue;
        }
        if (strcmp(arg, "--skip-check") == 0) {
            o->skip_check = true;
            continue;
        }
        if (!takes_value(arg)) {
            return unknown_option(arg);
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
        } else if (strcmp(arg, "--disk-reserve") == 0) {
            unsigned long long size = 0;
            if (parse_size(value, MAIN_DISK_RESERVE_MAX, &size) != 0) {
                fprintf(stderr, "greedylrd: --disk-reserve must be a size in bytes, with K, M or G "
                                "for KiB, MiB or GiB, of at most 1024G\n");
                return 2;
            }
            o->disk_reserve = size;
        } else if (strcmp(arg, "--dashboard-dir") == 0) {
            o->dashboard_dir = value;
        } else if (strcmp(arg, "--cors-origin") == 0) {
            o->cors_origin = value;
        } else if (strcmp(arg, "--tls-cert") == 0) {
            o->tls_cert = value;
        } else if (strcmp(arg, "--tls-key") == 0) {
            o->tls_key = value;
        } else if (strcmp(arg, "--rate-limit") == 0) {
            if (ratelimit_parse(value, &o->rate) != 0) {
                fprintf(stderr,
                        "greedylrd: --rate-limit must be N/s (N above 0, at most %g), "
                        "or off\n",
                        RATELIMIT_RATE_MAX);
                return 2;
            }
        } else if ((rc = parse_limit(arg, value, o)) != 0) {
            if (rc == 2)
                return 2;
        } else if (strcmp(arg, "--log-level") == 0) {
            if (log_parse_level(value, &o->level) != 0) {
                fprintf(stderr, "greedylrd: --log-level must be error, warn, info or debug\n");
                return 2;
            }
        } else {
            return unknown_option(arg);
        }
    }
    if (parse_listen(listen, o) != 0) {
        fprintf(stderr,
                "greedylrd: listen address \"%s\" is not ADDR:PORT, with ADDR a numeric IPv4 or "
                "IPv6 address or localhost\n",
                listen);
        return 2;
    }
    if (strlen(o->db) == 0 || strlen(o->db) > MAIN_PATH_MAX) {
        fprintf(stderr, "greedylrd: --db must be a path of 1 to %d bytes\n", MAIN_PATH_MAX);
        return 2;
    }
    if (!o->tls_cert != !o->tls_key) {
        fprintf(stderr, "greedylrd: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (o->max_connections < (unsigned long)o->threads) {
        fprintf(stderr, "greedylrd: --max-connections must be at least --threads (%u)\n",
                o->threads);
        return 2;
    }
    return 0;
}

/* Reads a whole PEM file (at most MAIN_PEM_MAX bytes); NULL after saying why. */
static char *read_pem(const char *path, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_error("%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *text = malloc(MAIN_PEM_MAX + 1);
    size_t len = text ? fread(text, 1, MAIN_PEM_MAX + 1, f) : 0;
    bool failed = !text || ferror(f);
    fclose(f);
    if (failed || len == 0 || len > MAIN_PEM_MAX) {
        log_error("%s %s: %s", what, path,
                  failed     ? "cannot be read"
                  : len == 0 ? "is empty"
                             : "is too large for PEM");
        free(text);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

/*
 * Whether the daemon may serve as configured, by its tokens: without any, everyone may do
 * everything, which is allowed only on a loopback address or with --insecure.
 */
static bool may_serve(const struct options *o, struct auth *auth)
{
    bool loopback = auth_is_loopback(o->host);
    if (auth_count(auth) == 0 && !loopback) {
        if (!o->insecure) {
            log_error("refusing to serve %s without API tokens: anyone who can reach it could "
                      "change or delete every job. Create one with \"greedylrd token create "
                      "--db %s --role admin\", or pass --insecure to serve without them",
                      o->host, o->db);
            return false;
        }
        log_warn("serving %s without API tokens (--insecure): anyone who can reach it may do "
                 "everything",
                 o->host);
    }
    if (!loopback && !o->tls_cert)
        log_warn("serving %s over plain HTTP: tokens and data cross the network unencrypted "
                 "(use --tls-cert and --tls-key, or a TLS proxy)",
                 o->host);
    return true;
}

/*
 * greedylrd backup [--db PATH] [--force] OUT: an online backup of a database a daemon may
 * be writing. Returns the exit status: 0, 1 when the backup failed (or OUT exists without
 * --force), 2 on misuse.
 */
static int run_backup(int argc, char **argv)
{
    const char *db = cli_default_db();
    const char *out = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--force") == 0) {
            force = true;
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
    if (store_backup(db, out, force, &bytes, err) != GLR_OK) {
        log_error("%s", err);
        return EXIT_FAILURE;
    }
    log_info("backed up %s to %s (%lld bytes)", db, out, (long long)bytes);
    return EXIT_SUCCESS;
}

/*
 * greedylrd learn --family NAME [--db PATH]: the family's next learned model, offline.
 * Returns the exit status: 0, 1 when learning failed (or a daemon serves the database), 2
 * on misuse.
 */
static int run_learn(int argc, char **argv)
{
    const char *db = cli_default_db();
    const char *family = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--family") == 0 && i + 1 < argc) {
            family = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "greedylrd learn: unexpected argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!family) {
        fprintf(stderr, "greedylrd learn: --family is missing (see --help)\n");
        return 2;
    }
    /* Learning reads what a database holds: it makes none. */
    if (access(db, F_OK) != 0) {
        log_error("no database at %s: %s", db, strerror(errno));
        return EXIT_FAILURE;
    }
    char err[GLR_ERR_MAX] = "";
    struct svc *svc = NULL;
    int rc = svc_open(db, NULL, &svc, err);
    if (rc == GLR_EBUSY) {
        log_error("%s: learn with POST /v1/families/%s/learn on the daemon that serves it", err,
                  family);
        return EXIT_FAILURE;
    }
    cJSON *model = NULL;
    if (!rc)
        rc = svc_family_learn(svc, family, &model, err);
    char *text = rc ? NULL : cJSON_Print(model);
    if (!rc && !text)
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    if (rc)
        log_error("%s", err);
    else
        printf("%s\n", text);
    free(text);
    cJSON_Delete(model);
    svc_close(svc);
    return rc ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* The store's group commits, counted for /metrics. */
static void count_group_commit(void *ctx, double seconds, size_t size)
{
    (void)ctx;
    metrics_observe_commit(seconds, (unsigned)size);
}

/*
 * Makes room for every connection under the open-file limit, raising the soft limit up to
 * the hard one when it must. Where even that is too low, fewer connections are served, and
 * the log says so: libmicrohttpd stops accepting on a thread that runs out of descriptors
 * until one of that thread's own connections closes, so a thread that has none left would
 * never accept again. Returns false, after saying why, when not even one connection per
 * thread fits.
 */
static bool fit_open_files(struct options *o)
{
    rlim_t reserve = MAIN_FILES_RESERVE + (rlim_t)MAIN_FILES_PER_THREAD * o->threads;
    rlim_t need = reserve + o->max_connections;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        log_warn("reading the open-file limit: %s", strerror(errno));
        return true;
    }
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < need) {
        rlim_t wanted =
            limit.rlim_max == RLIM_INFINITY || limit.rlim_max > need ? need : limit.rlim_max;
        struct rlimit raised = {wanted, limit.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            limit.rlim_cur = wanted;
    }
    if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= need)
        return true;
    rlim_t room = limit.rlim_cur > reserve ? limit.rlim_cur - reserve : 0;
    if (room < o->threads) {
        log_error("the open-file limit (%llu) leaves room for %llu connections, fewer than the "
                  "%u threads: raise it (ulimit -n, LimitNOFILE=) or use fewer --threads",
                  (unsigned long long)limit.rlim_cur, (unsigned long long)room, o->threads);
        return false;
    }
    log_warn("the open-file limit (%llu) leaves room for %llu connections, not the %lu of "
             "--max-connections: serving at most %llu (raise it with ulimit -n or LimitNOFILE=)",
             (unsigned long long)limit.rlim_cur, (unsigned long long)room, o->max_connections,
             (unsigned long long)room);
    o->max_connections = (unsigned long)room;
    return true;
}

/* Tells the service manager, if any, how the daemon stands; a failure is only logged. */
static void notify(const char *state)
{
    char err[GLR_ERR_MAX] = "";
    if (notify_send(state, err) != GLR_OK)
        log_warn("%s", err);
}

/* `greedylrd NAME ...`: each runs with argv[0] = NAME and returns the exit status. */
static const struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
} subcommands[] = {
    {"backup", run_backup},
    {"learn", run_learn},
    {"token", token_cli_main},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; argc > 1 && i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);

    struct options o;
    memset(&o, 0, sizeof(o));
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc < 0 ? EXIT_SUCCESS : rc;
    log_set_level(o.level);
    log_set_format(o.format);
    if (!fit_open_files(&o))
        return EXIT_FAILURE;

    /*
     * Block the stop signals before any thread starts, so that every thread inherits the
     * mask and only sigwait() below receives them.
     */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP); /* not a stop: reload the tokens */
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    /*
     * A file size limit (ulimit -f) reached then fails the write like a full disk does,
     * which the store survives and reports, instead of killing the daemon.
     */
    signal(SIGXFSZ, SIG_IGN);

    char err[GLR_ERR_MAX] = "";
    struct svc *svc = NULL;
    struct svc_options svc_options = {
        .store = {.sync = o.sync,
                  .on_group = count_group_commit,
                  .skip_check = o.skip_check,
                  .disk_reserve = o.disk_reserve,
                  .max_jobs = o.max_jobs},
        .resident_jobs = o.resident_jobs,
        .max_reports_per_job = o.max_reports_per_job,
    };
    if ((rc = svc_open(o.db, &svc_options, &svc, err)) != GLR_OK) {
        log_error("%s", err);
        return EXIT_FAILURE;
    }
    struct auth *auth = NULL;
    bool open_when_empty = auth_is_loopback(o.host) || o.insecure;
    if ((rc = auth_open(svc_store(svc), open_when_empty, &auth, err)) != GLR_OK) {
        log_error("%s", err);
        svc_close(svc);
        return EXIT_FAILURE;
    }
    char *cert = NULL, *key = NULL;
    if (!may_serve(&o, auth) || (o.tls_cert && (!(cert = read_pem(o.tls_cert, "--tls-cert")) ||
                                                !(key = read_pem(o.tls_key, "--tls-key"))))) {
        free(cert);
        auth_close(auth);
        svc_close(svc);
        return EXIT_FAILURE;
    }
    struct tls_validity validity = {0};
    if (cert && (rc = tls_cert_validity(cert, &validity, err)) != GLR_OK) {
        log_error("--tls-cert %s: %s", o.tls_cert, err);
        free(cert);
        free(key);
        auth_close(auth);
        svc_close(svc);
        return EXIT_FAILURE;
    }
    struct api_options api_options = {
        .host = o.host,
        .port = o.port,
        .threads = o.threads,
        .auth = auth,
        .rate = o.rate,
        .tls_cert = cert,
        .tls_key = key,
        .max_connections = (unsigned)o.max_connections,
        .max_connections_per_ip = (unsigned)o.max_connections_per_ip,
        .idle_timeout_s = (unsigned)o.idle_timeout_s,
        .request_timeout_s = (unsigned)o.request_timeout_s,
        .connection_memory = (size_t)o.connection_memory,
        /* The installed dashboard may be missing (a build not installed): then / says so. */
        .dashboard_dir = o.dashboard_dir ? o.dashboard_dir : GLR_DASHBOARD_DIR,
        .dashboard_optional = !o.dashboard_dir,
        .cors_origin = o.cors_origin,
    };
    struct api *api = NULL;
    rc = api_start(svc, &api_options, &api, err);
    /* libmicrohttpd has its own copy of the key: ours is wiped at once. */
    if (key)
        memset(key, 0, strlen(key));
    free(key);
    free(cert);
    if (rc != GLR_OK) {
        log_error("%s", err);
        auth_close(auth);
        svc_close(svc);
        return EXIT_FAILURE;
    }
    const char *open_bracket = strchr(o.host, ':') ? "[" : "";
    const char *close_bracket = strchr(o.host, ':') ? "]" : "";
    printf("listening on %s://%s%s%s:%u\n", o.tls_cert ? "https" : "http", open_bracket, o.host,
           close_bracket, api_port(api));
    fflush(stdout);
    log_info("greedylrd %s serving %s with %u threads, sync %s, %zu API tokens", PACKAGE_VERSION,
             o.db, o.threads, o.sync == STORE_SYNC_FULL ? "full" : "normal", auth_count(auth));
    notify("READY=1\nSTATUS=serving");
    if (o.tls_cert)
        tls_warn_validity(&validity, o.tls_cert, glr_clock_wall_ms());
    int64_t next_tls_check_ms = glr_clock_mono_ms() + TLS_CHECK_EVERY_S * (int64_t)1000;

    /* Tokens changed from the command line are picked up on SIGHUP or every few seconds. */
    int signal_number = 0;
    for (;;) {
        struct timespec reload = {AUTH_RELOAD_S, 0};
        signal_number = sigtimedwait(&stop_signals, NULL, &reload);
        if (signal_number == SIGINT || signal_number == SIGTERM)
            break;
        if (signal_number < 0 && errno == EINTR)
            continue;
        if (o.tls_cert && glr_clock_mono_ms() >= next_tls_check_ms) {
            tls_warn_validity(&validity, o.tls_cert, glr_clock_wall_ms());
            next_tls_check_ms += TLS_CHECK_EVERY_S * (int64_t)1000;
        }
        size_t before = auth_count(auth);
        if (auth_reload(auth, err) != GLR_OK)
            log_error("reloading the API tokens: %s", err);
        else if (signal_number == SIGHUP || auth_count(auth) != before)
            log_info("API tokens reloaded: %zu", auth_count(auth));
    }
    log_info("%s: stopping", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    notify("STOPPING=1");
    api_stop(api);
    auth_close(auth);
    svc_close(svc);
    log_info("stopped cleanly");
    return EXIT_SUCCESS;
}
