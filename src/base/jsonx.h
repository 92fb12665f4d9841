/*
 * JSON helpers that cJSON lacks: doubles written so that they read back bit for bit
 * (cJSON's own printer may drop the last digits), and non-finite numbers spelled the way
 * Python and JavaScript spell them ("NaN", "Infinity", "-Infinity").
 */
#ifndef GLR_JSONX_H
#define GLR_JSONX_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the longest shortest-round-trip text of a double plus its NUL. */
#define JSONX_DOUBLE_MAX 32

/*
 * Writes the shortest decimal text that strtod() reads back as exactly v into buf
 * (JSONX_DOUBLE_MAX bytes) and returns its length. Non-finite values are written as
 * NaN, Infinity or -Infinity, which are not JSON numbers: callers that emit JSON use
 * jsonx_number() instead.
 */
size_t jsonx_format_double(double v, char buf[JSONX_DOUBLE_MAX]);

/* The text of jsonx_format_double(), held by value. */
struct jsonx_text {
    char s[JSONX_DOUBLE_MAX];
};

/*
 * v's shortest text as a value, for messages: `glr_fail(err, ..., "got %s", jsonx_text(v).s)`.
 * The array lives until the end of the full expression that called jsonx_text() (C11
 * 6.2.4), so it may be passed to printf-like calls, not kept.
 */
struct jsonx_text jsonx_text(double v);

/*
 * Returns a new cJSON item for v: a number written with jsonx_format_double() when v is
 * finite, else the string "NaN", "Infinity" or "-Infinity". Returns NULL when out of
 * memory. The caller owns the item.
 */
cJSON *jsonx_number(double v);

/* Returns a new array of n items made by jsonx_number(), or NULL when out of memory. */
cJSON *jsonx_number_array(const double *values, size_t n);

/*
 * Parses text (JSON this program wrote) with every number made a raw item as
 * jsonx_number() makes it, so that printing the tree again keeps each number's digits
 * (cJSON's own printing may change the last one). NULL when text is not JSON or out of
 * memory. The caller owns the tree.
 */
cJSON *jsonx_parse_exact(const char *text);

/*
 * A learning rate as clients write it: one number (as_array false: values[0]) or an
 * array of n (one per parameter group). NULL when out of memory.
 */
cJSON *jsonx_lr(const double *values, size_t n, bool as_array);

/*
 * Reads item as an integer from min to max: a JSON number with no fraction in that range
 * (2.0 is 2; 2.5, "2" and 1e300 are not). Returns false, leaving *out alone, otherwise.
 */
bool jsonx_get_integer(const cJSON *item, int64_t min, int64_t max, int64_t *out);

/* Like jsonx_number(), but a non-finite v becomes JSON null. */
cJSON *jsonx_number_or_null(double v);

/*
 * Reads a double from a cJSON number or from one of the strings "NaN", "Infinity",
 * "-Infinity". Returns false (leaving *out alone) for any other item, NULL included.
 */
bool jsonx_get_double(const cJSON *item, double *out);

/*
 * Adds v to object under key with jsonx_number(). Returns false when out of memory;
 * the object is then unchanged.
 */
bool jsonx_add_number(cJSON *object, const char *key, double v);

/* Room for any int64_t in decimal, with its sign and a NUL. */
#define JSONX_INTEGER_MAX 21

/* Writes v in decimal and a NUL to buf and returns its length; faster than printf. */
size_t jsonx_format_integer(int64_t v, char buf[JSONX_INTEGER_MAX]);

/*
 * Adds the integer v to object under key, printed by this module (cJSON prints numbers
 * with printf and reads them back with sscanf, slowly); false when out of memory.
 */
bool jsonx_add_integer(cJSON *object, const char *key, int64_t v);

/* Adds v to object under key with jsonx_number_or_null(); false when out of memory. */
bool jsonx_add_number_or_null(cJSON *object, const char *key, double v);

/*
 * Checks that len bytes of text are UTF-8 as RFC 3629 defines it (no overlong forms, no
 * surrogates, nothing past U+10FFFF), which JSON text must be. Returns len when they are,
 * else the offset of the first byte at fault.
 */
size_t jsonx_utf8_check(const char *text, size_t len);

/*
 * The length (1 to 4) of the valid UTF-8 sequence at s, of which avail bytes (at least 1)
 * may be read; 0 when the bytes there begin none.
 */
size_t jsonx_utf8_sequence(const unsigned char *s, size_t avail);

/* Bytes jsonx_utf8_repair() writes at most for n bytes of text, with its terminator. */
#define JSONX_UTF8_REPAIRED_MAX(n) (3 * (n) + 1)

/*
 * Copies the NUL-terminated text into out (size bytes, at least 1) as UTF-8 that JSON
 * accepts: each byte that does not begin a valid sequence becomes U+FFFD. A message cut
 * inside a character, or quoting bytes a client sent, becomes text any JSON parser
 * reads. Stops at a character boundary when out is full.
 */
void jsonx_utf8_repair(const char *text, char *out, size_t size);

#endif
