/*
 * Logging to standard error, one line per message, filtered by level. Standard output
 * is kept for the single "listening on" line that scripts and tests read.
 */
#ifndef GLR_LOG_H
#define GLR_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Sets the most verbose level that is written (LOG_INFO at start). */
void log_set_level(enum log_level level);

/* Parses "error", "warn", "info" or "debug"; returns 0, or -1 for anything else. */
int log_parse_level(const char *name, enum log_level *level);

/* True when messages of this level are written. */
int log_enabled(enum log_level level);

/* Writes one line: time, level, message. */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)

#endif
