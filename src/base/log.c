/* Leveled logging to standard error, as text or JSON lines (see log.h). */
#include "base/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/jsonx.h"

static volatile int current_level = LOG_INFO;
static volatile int current_format = LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"text", "json"};

void log_set_level(enum log_level level)
{
    current_level = (int)level;
}

int log_parse_level(const char *name, enum log_level *level)
{
    for (int i = 0; i <= LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_format(enum log_format format)
{
    current_format = (int)format;
}

int log_parse_format(const char *name, enum log_format *format)
{
    for (int i = 0; i <= LOG_JSON; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *format = (enum log_format)i;
            return 0;
        }
    }
    return -1;
}

int log_enabled(enum log_level level)
{
    return (int)level <= current_level;
}

/* A line being built; it never overflows, and remembers whether it had to cut. */
struct line {
    char text[LOG_LINE_MAX];
    size_t len;
};

static void add(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct line *l, const char *fmt, ...)
{
    size_t room = sizeof(l->text) - l->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->len, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < room ? (size_t)n : room - 1;
}

/*
 * Appends s as the inside of a JSON string: quotes, backslashes and control characters
 * escaped, invalid UTF-8 replaced by U+FFFD. Stops before an escape or character that
 * would not fit whole in the line, leaving reserve bytes free for what closes it.
 */
static void add_json_string(struct line *l, const char *s, size_t reserve)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left > 0) {
        char piece[8];
        size_t used = 1;
        size_t n = 0;
        if (*p == '"' || *p == '\\') {
            n = (size_t)snprintf(piece, sizeof(piece), "\\%c", *p);
        } else if (*p == '\n') {
            n = (size_t)snprintf(piece, sizeof(piece), "\\n");
        } else if (*p == '\t') {
            n = (size_t)snprintf(piece, sizeof(piece), "\\t");
        } else if (*p < 0x20 || *p == 0x7f) {
            n = (size_t)snprintf(piece, sizeof(piece), "\\u%04x", *p);
        } else if ((used = jsonx_utf8_sequence(p, left)) == 0) {
            used = 1;
            n = (size_t)snprintf(piece, sizeof(piece), "\\ufffd");
        } else {
            memcpy(piece, p, used);
            n = used;
        }
        if (l->len + n + reserve >= sizeof(l->text))
            return;
        memcpy(l->text + l->len, piece, n);
        l->len += n;
        p += used;
        left -= used;
    }
}

/* The start of every line: time and level, as text or as the first JSON members. */
static void add_prefix(struct line *l, enum log_level level)
{
    char time_text[GLR_TIME_TEXT_MAX];
    glr_clock_format(glr_clock_wall_ms(), time_text);
    if (current_format == LOG_JSON)
        add(l, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", time_text, level_names[level]);
    else
        add(l, "%s %s ", time_text, level_names[level]);
}

/* One fputs per line keeps lines from different threads whole. */
static void emit(struct line *l)
{
    l->text[l->len < sizeof(l->text) - 1 ? l->len : sizeof(l->text) - 2] = '\n';
    l->text[l->len < sizeof(l->text) - 1 ? l->len + 1 : sizeof(l->text) - 1] = '\0';
    fputs(l->text, stderr);
}

/* Room kept for the end of a JSON line: the longest fields of log_request and "}\n". */
#define LOG_JSON_TAIL 160

void log_write(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char message[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    struct line l = {.len = 0};
    add_prefix(&l, level);
    if (current_format == LOG_JSON) {
        add_json_string(&l, message, 4);
        add(&l, "\"}");
    } else {
        add(&l, "%s", message);
    }
    emit(&l);
}

void log_request(const char *method, const char *route, unsigned status, double seconds)
{
    if (!log_enabled(LOG_INFO))
        return;
    struct line l = {.len = 0};
    add_prefix(&l, LOG_INFO);
    double ms = seconds * 1e3;
    if (current_format == LOG_JSON) {
        add(&l, "request\",\"method\":\"");
        add_json_string(&l, method, LOG_JSON_TAIL);
        add(&l, "\",\"route\":\"");
        add_json_string(&l, route, LOG_JSON_TAIL);
        add(&l, "\",\"status\":%u,\"duration_ms\":%.3f}", status, ms);
    } else {
        /* The method comes from the client: only its printable characters are shown. */
        char shown[17];
        size_t n = 0;
        for (const char *p = method; *p && n < sizeof(shown) - 1; p++)
            shown[n++] = *p > ' ' && *p < 0x7f ? *p : '?';
        shown[n] = '\0';
        add(&l, "request method=%s route=%s status=%u duration_ms=%.3f", shown, route, status, ms);
    }
    emit(&l);
}
