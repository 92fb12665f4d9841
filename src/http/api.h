/*
 * The HTTP/JSON API of greedylrd: routes, request parsing, and answers in JSON or
 * RFC 9457 problem+json. It translates between HTTP and the service (svc.h) and holds no
 * scheduling or storage logic of its own.
 */
#ifndef GLR_API_H
#define GLR_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/auth.h"
#include "svc/svc.h"

/* Largest request body accepted (bytes); larger bodies are answered 413. */
#define API_BODY_MAX (1024 * 1024)
/*
 * Most parameters a query may have; a longer one is answered 414. No route reads more
 * than six, and each one parsed takes libmicrohttpd about 64 bytes of the connection's
 * memory (API_CONNECTION_MEMORY_DEFAULT): a query of a few hundred once used it all, after
 * which not even an error fitted and the client got no answer.
 */
#define API_QUERY_PARAMS_MAX 32
/*
 * Longest query, in bytes (after the '?'), likewise answered 414. The longest a route
 * reads, a tag of 64 + 256 bytes all percent-encoded with a page token, is under 1.5 KiB;
 * a longer query near the connection's memory left no room for even one parameter.
 */
#define API_QUERY_BYTES_MAX 4096
/* Longest listen host accepted on the command line. */
#define API_HOST_MAX 64
/* Most server threads. */
#define API_THREADS_MAX 256
/* Longest wait at shutdown for requests in flight to be answered, in milliseconds. */
#define API_DRAIN_MS 10000
/* Seconds an idle connection is kept open, by default. */
#define API_IDLE_TIMEOUT_S 120
/*
 * Seconds a request's line, headers and body may take to arrive, by default: counted from
 * the connection's accept, or from the end of the request before it on a kept-alive
 * connection, whatever the client sends meanwhile (each byte restarts the idle timeout).
 */
#define API_REQUEST_TIMEOUT_S 30
/*
 * A chunked body (whose size is not declared) that passes API_BODY_MAX is read on and
 * dropped for at most this many more bytes, to answer it 413 at its end; past that the
 * connection is closed. (libmicrohttpd 0.9.75 cannot answer before a body has been read.)
 */
#define API_BODY_DISCARD_MAX (1024 * 1024)
/* Connections open at once, by default (each server thread takes an equal share). */
#define API_CONNECTIONS_DEFAULT 1000
/* Connections open at once from one client address, by default. */
#define API_CONNECTIONS_PER_IP_DEFAULT 100
/*
 * Bytes of memory for one connection, by default and at least: the request line and
 * headers must fit (else 431, or 414 for a long URL), beside the buffer of the body.
 * libmicrohttpd zeroes all of it after every request, so it is no larger than clients
 * need: 16 KiB of headers is what Node.js allows by default, and halving the 32 KiB of
 * before took 5% off the CPU time of a report.
 */
#define API_CONNECTION_MEMORY_DEFAULT (16 * 1024)
#define API_CONNECTION_MEMORY_MIN     (8 * 1024)
#define API_CONNECTION_MEMORY_MAX     (1024 * 1024)
/* TLS versions and ciphers offered: GnuTLS's defaults, TLS 1.2 and 1.3 only. */
#define API_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct api;

struct api_options {
    const char *host;                /* numeric IPv4 or IPv6 address */
    uint16_t port;                   /* 0: the system picks one (see api_port()) */
    unsigned threads;                /* 1 to API_THREADS_MAX */
    struct auth *auth;               /* borrowed; NULL: no token is ever asked for */
    double rate;                     /* requests/s per token (or client address); 0: no limit */
    const char *tls_cert;            /* PEM certificate chain; NULL: plain HTTP */
    const char *tls_key;             /* PEM private key of tls_cert */
    unsigned max_connections;        /* 0: API_CONNECTIONS_DEFAULT */
    unsigned max_connections_per_ip; /* 0: no limit per address */
    unsigned idle_timeout_s;         /* 0: API_IDLE_TIMEOUT_S */
    unsigned request_timeout_s;      /* 0: API_REQUEST_TIMEOUT_S */
    size_t connection_memory;        /* 0: API_CONNECTION_MEMORY_DEFAULT */
    const char *dashboard_dir;       /* the dashboard's static files; NULL: none */
    bool dashboard_optional;         /* a dashboard_dir that does not open is no error */
    const char *cors_origin;         /* the one other origin let in (CORS); NULL: none */
};

/*
 * Starts serving svc (borrowed; it must outlive the api) on a thread pool, over TLS when
 * options->tls_cert is set. On success *out is the caller's (api_stop()). Returns GLR_OK,
 * GLR_EINVAL (a bad address or option, or TLS asked of a libmicrohttpd without it) or
 * GLR_EIO (the socket could not be bound, or the certificate was refused).
 */
int api_start(struct svc *svc, const struct api_options *options, struct api **out, char *err);

/* The port the server listens on. */
uint16_t api_port(const struct api *api);

/*
 * Stops accepting connections, lets requests in flight finish, and frees the api;
 * NULL is accepted.
 */
void api_stop(struct api *api);

#endif
