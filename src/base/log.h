/*
 * Logging to standard error, one line per message, filtered by level, as text or as one
 * JSON object per line. Standard output is kept for the single "listening on" line that
 * scripts and tests read.
 */
#ifndef GLR_LOG_H
#define GLR_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

enum log_format {
    LOG_TEXT, /* 2024-05-01T12:00:00.000Z info message */
    LOG_JSON, /* {"time":"2024-05-01T12:00:00.000Z","level":"info","msg":"message"} */
};

/* Longest line written, in bytes; longer messages are cut (JSON lines stay valid). */
#define LOG_LINE_MAX 1024

/* Sets the most verbose level that is written (LOG_INFO at start). */
void log_set_level(enum log_level level);

/* Parses "error", "warn", "info" or "debug"; returns 0, or -1 for anything else. */
int log_parse_level(const char *name, enum log_level *level);

/* Sets how lines are written (LOG_TEXT at start); call before threads start. */
void log_set_format(enum log_format format);

/* Parses "text" or "json"; returns 0, or -1 for anything else. */
int log_parse_format(const char *name, enum log_format *format);

/* True when messages of this level are written. */
int log_enabled(enum log_level level);

/* Writes one line: time, level, message. */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Writes the line of one completed request at info level: method, route (the template,
 * never a job id), HTTP status (0 when the client went away first) and duration. As text:
 * `... info request method=GET route=/v1/jobs/{id} status=200 duration_ms=0.412`; as JSON
 * the same fields, status a number.
 */
void log_request(const char *method, const char *route, unsigned status, double seconds);

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)

#endif
