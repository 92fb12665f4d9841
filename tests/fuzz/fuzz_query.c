/*
 * Fuzzes the query strings of the routes that read one (req.h, and the page tokens the
 * service reads from them), and the Content-Type check. The first byte picks the parser
 * (list, history, lr, media type); the rest is a query string "name=value&..." as
 * libmicrohttpd hands it over after decoding (values may hold any byte but NUL), or the
 * Content-Type header's value, which also goes to the Accept-Encoding reader.
 */
#include <string.h>

#include "fuzz.h"
#include "http/req.h"

/* Most parameters one input carries. */
#define FUZZ_PARAMS_MAX 16

struct params {
    size_t n;
    const char *names[FUZZ_PARAMS_MAX];
    const char *values[FUZZ_PARAMS_MAX];
};

/* The first value of name, as libmicrohttpd's lookup answers. */
static const char *get(void *ctx, const char *name)
{
    const struct params *p = ctx;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->names[i], name) == 0)
            return p->values[i];
    return NULL;
}

/* Splits text (modified in place) at '&' and each part at its first '='. */
static void split(char *text, struct params *p)
{
    p->n = 0;
    for (char *part = text; part && p->n < FUZZ_PARAMS_MAX;) {
        char *next = strchr(part, '&');
        if (next)
            *next++ = '\0';
        char *eq = strchr(part, '=');
        if (eq)
            *eq++ = '\0';
        p->names[p->n] = part;
        p->values[p->n++] = eq ? eq : ""; /* "?name" reads as an empty value */
        part = next;
    }
}

static int parse(int which, const struct req_query *query, char *err)
{
    int rc;
    if (which == 0) {
        struct req_list list;
        rc = req_parse_list(query, &list, err);
        if (rc == GLR_OK) {
            FUZZ_CHECK(list.q.page_size >= 1 && list.q.page_size <= SVC_LIST_PAGE_MAX);
            FUZZ_CHECK(!list.q.tag_key ||
                       (strlen(list.q.tag_key) >= 1 && strlen(list.q.tag_key) <= SVC_TAG_KEY_MAX));
            /* The service reads the page token next. */
            int64_t after = -1;
            rc = svc_list_token_parse(list.q.page_token, &after, err);
            FUZZ_CHECK(rc != GLR_OK || after >= 0);
        }
    } else if (which == 1) {
        struct req_history history;
        rc = req_parse_history(query, &history, err);
        if (rc == GLR_OK) {
            const struct svc_history_query *q = &history.q;
            FUZZ_CHECK(q->from_step >= 0 && q->from_step <= q->to_step &&
                       q->to_step <= GLR_MAX_STEP);
            FUZZ_CHECK(q->page_size >= 1 && q->page_size <= SVC_HISTORY_PAGE_MAX);
            FUZZ_CHECK(q->max_points >= 0 && q->max_points <= SVC_MAX_POINTS_MAX);
            int64_t step = q->from_step, rank = 0;
            rc = svc_history_token_parse(q->page_token, &step, &rank, err);
            FUZZ_CHECK(rc != GLR_OK || (step >= 0 && rank >= 0));
        }
    } else {
        struct req_lr lr;
        rc = req_parse_lr(query, &lr, err);
        if (rc == GLR_OK)
            FUZZ_CHECK(lr.step >= 0 && lr.step <= GLR_MAX_STEP && lr.wait_ms >= 0 &&
                       lr.wait_ms <= SVC_WAIT_MAX_MS);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    int which = data[0] & 3;
    if (which == 3) {
        (void)req_is_json_media_type(text);
        (void)req_accepts_gzip(text);
    } else {
        struct params p;
        split(text, &p);
        struct req_query query = {.get = get, .ctx = &p};
        char err[GLR_ERR_MAX] = "";
        int rc = parse(which, &query, err);
        FUZZ_CHECK(rc == GLR_OK || rc == GLR_EINVAL);
        if (rc)
            FUZZ_CHECK(err[0] != '\0' && strlen(err) < GLR_ERR_MAX);
    }
    free(text);
    return 0;
}
