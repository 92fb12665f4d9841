/* The project's clocks (see clock.h). */
#include "base/clock.h"

#include <stdio.h>

static int64_t ms_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t glr_clock_wall_ms(void)
{
    return ms_of(CLOCK_REALTIME);
}

int64_t glr_clock_mono_ms(void)
{
    return ms_of(CLOCK_MONOTONIC);
}

int64_t glr_clock_mono_deadline(int64_t after_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
    return ms + after_ms;
}

struct timespec glr_clock_mono_timespec(int64_t mono_ms)
{
    return (struct timespec){.tv_sec = (time_t)(mono_ms / 1000),
                             .tv_nsec = (long)(mono_ms % 1000) * 1000000L};
}

/* Writes v as exactly width digits (v >= 0) and returns the end. */
static char *digits(char *p, int v, int width)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + width;
}

void glr_clock_format(int64_t wall_ms, char text[GLR_TIME_TEXT_MAX])
{
    /* Floor division, so that a time before 1970 keeps its milliseconds positive. */
    int64_t seconds = wall_ms / 1000, ms = wall_ms % 1000;
    if (ms < 0) {
        seconds--;
        ms += 1000;
    }
    time_t t = (time_t)seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999) { /* RFC 3339 has four digits of year; say what it was */
        snprintf(text, GLR_TIME_TEXT_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
        return;
    }
    /* By hand: it runs for every line of the request log, and printf cost twice as much. */
    char *p = digits(text, year, 4);
    *p++ = '-';
    p = digits(p, tm.tm_mon + 1, 2);
    *p++ = '-';
    p = digits(p, tm.tm_mday, 2);
    *p++ = 'T';
    p = digits(p, tm.tm_hour, 2);
    *p++ = ':';
    p = digits(p, tm.tm_min, 2);
    *p++ = ':';
    p = digits(p, tm.tm_sec, 2);
    *p++ = '.';
    p = digits(p, (int)ms, 3);
    *p++ = 'Z';
    *p = '\0';
}
