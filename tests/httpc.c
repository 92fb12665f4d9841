/* A small HTTP/1.1 client for the tests (see httpc.h). */
#include "httpc.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

void httpc_init(struct httpc *c, int port)
{
    c->port = port;
    c->fd = -1;
    c->bearer = NULL;
}

void httpc_close(struct httpc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int httpc_connect(int port, const char *source)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (source) {
        struct sockaddr_in from = {.sin_family = AF_INET};
        inet_pton(AF_INET, source, &from.sin_addr);
        if (bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A growable receive buffer over the connection. */
struct rbuf {
    int fd;
    char *data;
    size_t len; /* bytes held */
    size_t pos; /* bytes consumed */
};

/* Makes at least `need` unconsumed bytes available; returns -1 at EOF or error. */
static int fill(struct rbuf *b, size_t need)
{
    while (b->len - b->pos < need) {
        char chunk[65536];
        ssize_t n = recv(b->fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        if (b->len + (size_t)n > HTTPC_RESPONSE_MAX)
            return -1;
        char *grown = realloc(b->data, b->len + (size_t)n + 1);
        if (!grown)
            return -1;
        b->data = grown;
        memcpy(b->data + b->len, chunk, (size_t)n);
        b->len += (size_t)n;
        b->data[b->len] = '\0';
    }
    return 0;
}

/* Returns the offset just past the next CRLF from b->pos, reading as needed; -1 if none. */
static long find_line(struct rbuf *b)
{
    for (;;) {
        if (b->data) {
            char *crlf = strstr(b->data + b->pos, "\r\n");
            if (crlf)
                return crlf - b->data + 2;
        }
        if (fill(b, b->len - b->pos + 1) != 0)
            return -1;
    }
}

static int read_response(int fd, const char *method, struct httpc_response *r, int *keep)
{
    struct rbuf b = {.fd = fd};
    char *end = NULL;
    for (;;) {
        if (b.data && (end = strstr(b.data, "\r\n\r\n")))
            break;
        if (fill(&b, b.len - b.pos + 1) != 0) {
            free(b.data);
            return -1;
        }
    }
    size_t header_len = (size_t)(end - b.data) + 4;
    r->headers = strndup(b.data, header_len);
    b.pos = header_len;
    if (sscanf(b.data, "HTTP/1.%*d %d", &r->status) != 1) {
        free(b.data);
        return -1;
    }
    char value[64];
    const char *length = httpc_header(r, "Content-Length", value, sizeof(value));
    size_t content_length = length ? strtoul(length, NULL, 10) : 0;
    char te[64];
    bool chunked =
        httpc_header(r, "Transfer-Encoding", te, sizeof(te)) && strcasecmp(te, "chunked") == 0;
    char connection[64];
    *keep = !(httpc_header(r, "Connection", connection, sizeof(connection)) &&
              strcasecmp(connection, "close") == 0);

    char *body = NULL;
    size_t body_len = 0;
    bool no_body = strcmp(method, "HEAD") == 0 || r->status == 204 || r->status == 304;
    if (no_body) {
        body = strdup("");
    } else if (chunked) {
        body = calloc(1, 1);
        for (;;) {
            long line_end = find_line(&b);
            if (line_end < 0)
                goto fail;
            size_t size = strtoul(b.data + b.pos, NULL, 16);
            b.pos = (size_t)line_end;
            if (size == 0) {
                /* Trailers, then the final CRLF. */
                while ((line_end = find_line(&b)) >= 0 && (size_t)line_end != b.pos + 2)
                    b.pos = (size_t)line_end;
                if (line_end < 0)
                    goto fail;
                b.pos = (size_t)line_end;
                break;
            }
            if (fill(&b, size + 2) != 0)
                goto fail;
            char *grown = realloc(body, body_len + size + 1);
            if (!grown)
                goto fail;
            body = grown;
            memcpy(body + body_len, b.data + b.pos, size);
            body_len += size;
            body[body_len] = '\0';
            b.pos += size + 2;
        }
    } else if (length) {
        if (fill(&b, content_length) != 0)
            goto fail;
        body = strndup(b.data + b.pos, content_length);
        body_len = content_length;
    } else {
        /* No length: the body runs to the end of the connection. */
        while (fill(&b, b.len - b.pos + 1) == 0)
            ;
        body_len = b.len - b.pos;
        body = strndup(b.data + b.pos, body_len);
        *keep = 0;
    }
    free(b.data);
    r->body = body;
    r->len = body_len;
    return body ? 0 : -1;
fail:
    free(body);
    free(b.data);
    return -1;
}

int httpc_request(struct httpc *c, const char *method, const char *path, const char *content_type,
                  const char *body, size_t body_len, struct httpc_response *r)
{
    memset(r, 0, sizeof(*r));
    size_t head_cap = strlen(path) + (c->bearer ? strlen(c->bearer) : 0) + 512;
    char *head = malloc(head_cap);
    ck_assert_ptr_nonnull(head);
    int head_len =
        snprintf(head, head_cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", method, path, c->port);
    if (c->bearer)
        head_len += snprintf(head + head_len, head_cap - (size_t)head_len,
                             "Authorization: Bearer %s\r\n", c->bearer);
    if (content_type)
        head_len += snprintf(head + head_len, head_cap - (size_t)head_len, "Content-Type: %s\r\n",
                             content_type);
    if (body)
        head_len += snprintf(head + head_len, head_cap - (size_t)head_len,
                             "Content-Length: %zu\r\n", body_len);
    head_len += snprintf(head + head_len, head_cap - (size_t)head_len, "\r\n");

    int result = -1;
    for (int attempt = 0; attempt < 2 && result != 0; attempt++) {
        bool reused = c->fd >= 0;
        if (c->fd < 0 && (c->fd = connect_to(c->port)) < 0)
            break;
        int keep = 0;
        /*
         * A server may answer before it has read the whole body (413) and close: read its
         * answer even when sending failed part way.
         */
        bool sent = send_all(c->fd, head, (size_t)head_len) == 0 &&
                    (!body || send_all(c->fd, body, body_len) == 0);
        if (read_response(c->fd, method, r, &keep) == 0) {
            if (!sent)
                keep = 0;
            result = 0;
            if (!keep)
                httpc_close(c);
        } else {
            httpc_response_free(r);
            httpc_close(c);
            if (!reused)
                break; /* a fresh connection failed: do not try again */
        }
    }
    free(head);
    return result;
}

void httpc_json(struct httpc *c, const char *method, const char *path, const char *body,
                struct httpc_response *r)
{
    int rc = httpc_request(c, method, path, body ? "application/json" : NULL, body,
                           body ? strlen(body) : 0, r);
    ck_assert_msg(rc == 0, "%s %s: no answer", method, path);
}

int httpc_status(struct httpc *c, const char *method, const char *path, const char *body,
                 char *detail, size_t size)
{
    struct httpc_response r;
    httpc_json(c, method, path, body, &r);
    if (detail) {
        /* Only a problem has a detail; any other body leaves it empty. */
        cJSON *answer = r.body[0] == '{' ? cJSON_Parse(r.body) : NULL;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(answer, "detail");
        snprintf(detail, size, "%s", cJSON_IsString(d) ? d->valuestring : "");
        cJSON_Delete(answer);
    }
    int status = r.status;
    httpc_response_free(&r);
    return status;
}

const char *httpc_header(const struct httpc_response *r, const char *name, char *out, size_t size)
{
    size_t name_len = strlen(name);
    for (const char *line = strstr(r->headers, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= size)
                n = size - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

cJSON *httpc_body_json(const struct httpc_response *r)
{
    cJSON *tree = cJSON_Parse(r->body);
    ck_assert_msg(tree != NULL, "the answer is not JSON: %.200s", r->body);
    return tree;
}

int httpc_raw(int port, const char *source, const char *data, size_t len, char *reply, size_t size,
              int timeout_ms)
{
    reply[0] = '\0';
    int fd = httpc_connect(port, source);
    if (fd < 0)
        return -1;
    send_all(fd, data, len); /* the server may answer and close before it has read it all */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t got = 0;
    while (got + 1 < size) {
        ssize_t n = recv(fd, reply + got, size - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    reply[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    return status;
}

void httpc_response_free(struct httpc_response *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

cJSON *httpc_expect(struct httpc *c, const char *method, const char *path, const char *body,
                    int status)
{
    struct httpc_response r;
    httpc_json(c, method, path, body, &r);
    ck_assert_msg(r.status == status, "%s %s: status %d, expected %d: %.300s", method, path,
                  r.status, status, r.body);
    cJSON *tree = r.len ? httpc_body_json(&r) : NULL;
    httpc_response_free(&r);
    return tree;
}

bool httpc_next_page(const cJSON *page, char *token, size_t size)
{
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "next_page_token");
    if (!cJSON_IsString(next))
        return false;
    snprintf(token, size, "%s", next->valuestring);
    return true;
}

char *httpc_get_text(int port, const char *path)
{
    struct httpc c;
    httpc_init(&c, port);
    struct httpc_response r;
    httpc_json(&c, "GET", path, NULL, &r);
    ck_assert_msg(r.status == 200, "GET %s: status %d", path, r.status);
    char *text = strdup(r.body);
    ck_assert_ptr_nonnull(text);
    httpc_response_free(&r);
    httpc_close(&c);
    return text;
}
