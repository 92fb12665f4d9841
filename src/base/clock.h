/*
 * The two clocks of the project, named once. Wall time (CLOCK_REALTIME) is what a record
 * says a thing happened: stored times, logs, answers. Monotonic time (CLOCK_MONOTONIC) is
 * what every wait and deadline is measured on, so that a step of the system clock moves
 * none of them.
 */
#ifndef GLR_CLOCK_H
#define GLR_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Room for an RFC 3339 time with milliseconds, whatever the year. */
#define GLR_TIME_TEXT_MAX 64

/* The wall time now, in Unix milliseconds. */
int64_t glr_clock_wall_ms(void);

/* The monotonic time now, in milliseconds from an unspecified start (rounded down). */
int64_t glr_clock_mono_ms(void);

/*
 * The monotonic time after_ms from now, rounded up: a deadline that glr_clock_mono_ms()
 * reaches only once at least after_ms have passed.
 */
int64_t glr_clock_mono_deadline(int64_t after_ms);

/* A monotonic time in milliseconds as the timespec pthread_cond_timedwait() takes. */
struct timespec glr_clock_mono_timespec(int64_t mono_ms);

/* Formats Unix milliseconds as RFC 3339 in UTC, e.g. 2026-11-28T17:35:37.123Z. */
void glr_clock_format(int64_t wall_ms, char text[GLR_TIME_TEXT_MAX]);

#endif
