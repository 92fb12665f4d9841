/*
 * Test helper: a small HTTP/1.1 client over a real socket, with keep-alive, Content-Length
 * and chunked bodies. Enough to drive greedylrd the way any client would.
 */
#ifndef GLR_TEST_HTTPC_H
#define GLR_TEST_HTTPC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest response accepted (bytes of headers plus body). */
#define HTTPC_RESPONSE_MAX (64 * 1024 * 1024)

struct httpc {
    int port;
    int fd;             /* -1 when not connected */
    const char *bearer; /* a token sent as "Authorization: Bearer" with every request; NULL */
};

struct httpc_response {
    int status;
    char *headers; /* the raw header block, NUL-terminated */
    char *body;    /* NUL-terminated */
    size_t len;
};

/* Prepares a client for 127.0.0.1:port, without a token; it connects on first use. */
void httpc_init(struct httpc *c, int port);

/* Closes the connection, if any. */
void httpc_close(struct httpc *c);

/*
 * Sends one request (body may be NULL; content_type NULL sends none) and reads the
 * answer into *r (httpc_response_free()). Reconnects once if the server closed a
 * kept-alive connection. Returns 0, or -1 when no answer could be had.
 */
int httpc_request(struct httpc *c, const char *method, const char *path, const char *content_type,
                  const char *body, size_t body_len, struct httpc_response *r);

/* A request with a JSON body (NULL for none); fails the test when there is no answer. */
void httpc_json(struct httpc *c, const char *method, const char *path, const char *body,
                struct httpc_response *r);

/*
 * httpc_json(), for the status alone: returns it, and copies the problem's detail into
 * detail (size bytes; "" for an answer that is not a problem) unless detail is NULL.
 */
int httpc_status(struct httpc *c, const char *method, const char *path, const char *body,
                 char *detail, size_t size);

/* The value of a response header (case-insensitive name) copied into out, or NULL. */
const char *httpc_header(const struct httpc_response *r, const char *name, char *out, size_t size);

/* Parses the body as JSON; fails the test when it is not. The caller deletes the tree. */
cJSON *httpc_body_json(const struct httpc_response *r);

void httpc_response_free(struct httpc_response *r);

/*
 * Connects to 127.0.0.1:port (from the loopback address source, NULL for any), sends len
 * bytes of data as they are, and reads what comes back until the server closes, size-1
 * bytes arrive, or timeout_ms passes without a byte. reply is NUL-terminated. Returns the
 * HTTP status of the reply, 0 when none came, or -1 when the connection failed.
 */
int httpc_raw(int port, const char *source, const char *data, size_t len, char *reply, size_t size,
              int timeout_ms);

/* Opens a connection to 127.0.0.1:port from source (NULL for any); -1 on failure. */
int httpc_connect(int port, const char *source);

/*
 * Copies the next_page_token of a page of a paged answer into token (size bytes).
 * Returns false on the last page (the token is null).
 */
bool httpc_next_page(const cJSON *page, char *token, size_t size);

/*
 * One call: sends method/path with a JSON body, asserts the status, and returns the
 * parsed body (NULL for an empty one). The caller deletes the tree.
 */
cJSON *httpc_expect(struct httpc *c, const char *method, const char *path, const char *body,
                    int status);

/*
 * GETs path on a connection of its own, asserts 200, and returns the body exactly as it
 * came (for comparing answers as text). The caller frees it.
 */
char *httpc_get_text(int port, const char *path);

#endif
