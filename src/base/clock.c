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
    snprintf(text, GLR_TIME_TEXT_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
}
