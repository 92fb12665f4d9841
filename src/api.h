/*
 * The HTTP/JSON API of greedylrd: routes, request parsing, and answers in JSON or
 * RFC 9457 problem+json. It translates between HTTP and the service (svc.h) and holds no
 * scheduling or storage logic of its own.
 */
#ifndef GLR_API_H
#define GLR_API_H

#include <stdint.h>

#include "svc.h"

/* Largest request body accepted (bytes); larger bodies are answered 413. */
#define API_BODY_MAX (1024 * 1024)
/* Longest listen host accepted on the command line. */
#define API_HOST_MAX 64
/* Most server threads. */
#define API_THREADS_MAX 256
/* Longest wait at shutdown for requests in flight to be answered, in milliseconds. */
#define API_DRAIN_MS 10000
/* Seconds an idle connection is kept open. */
#define API_IDLE_TIMEOUT_S 120

struct api;

struct api_options {
    const char *host; /* numeric IPv4 or IPv6 address */
    uint16_t port;    /* 0: the system picks one (see api_port()) */
    unsigned threads; /* 1 to API_THREADS_MAX */
};

/*
 * Starts serving svc (borrowed; it must outlive the api) on a thread pool. On success
 * *out is the caller's (api_stop()). Returns GLR_OK, GLR_EINVAL (a bad address) or
 * GLR_EIO (the socket could not be bound).
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
