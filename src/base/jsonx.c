/* Exact double <-> JSON text conversion for greedylr (see jsonx.h). */
#include "base/jsonx.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *nonfinite_name(double v)
{
    if (isnan(v))
        return "NaN";
    return v > 0 ? "Infinity" : "-Infinity";
}

/*
 * The reference way: the shortest of printf's %.15g, %.16g and %.17g that reads back
 * as v (17 significant digits always do). Exact for every double, but each try formats
 * with multi-precision arithmetic and parses back, about 5 microseconds a number.
 */
static size_t format_by_printf(double v, char buf[JSONX_DOUBLE_MAX])
{
    int len = 0;
    for (int precision = 15; precision <= 17; precision++) {
        len = snprintf(buf, JSONX_DOUBLE_MAX, "%.*g", precision, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return (size_t)len;
}

/*
 * The fast way gives exactly what format_by_printf() gives, with 128-bit integers, for
 * the doubles a training run is made of: a normal v = m * 2^e with e < 0 and 1e-6 <= |v|
 * < 2^53 (losses, learning rates, most settings). Each candidate of p digits, N * 10^-k,
 * is v * 10^k = m * 10^k / 2^s (s = -e) rounded to an integer, half to even, as printf
 * rounds; m * 10^k stays below 2^128 because k <= 22. Whether the candidate reads back
 * as v is decided exactly too: it does when it lies closer to v than half the gap to
 * either neighbouring double (strtod rounds to nearest, ties to the even significand).
 */
typedef unsigned __int128 u128;

/* The largest k the fast way takes: m * 10^22 < 2^53 * 2^73.1 < 2^128. */
#define FAST_POW10_MAX 22

static u128 pow10_u128(int k)
{
    static const uint64_t small[20] = {1,
                                       10,
                                       100,
                                       1000,
                                       10000,
                                       100000,
                                       1000000,
                                       10000000,
                                       100000000,
                                       1000000000,
                                       10000000000,
                                       100000000000,
                                       1000000000000,
                                       10000000000000,
                                       100000000000000,
                                       1000000000000000,
                                       10000000000000000,
                                       100000000000000000,
                                       1000000000000000000,
                                       10000000000000000000u};
    return k < 20 ? (u128)small[k] : (u128)small[19] * small[k - 19];
}

/* One candidate of p digits, for a guess d of v's decimal exponent. */
struct candidate {
    uint64_t digits; /* p digits: 10^(p-1) <= digits < 10^p */
    int exponent;    /* v ~ digits * 10^(exponent - p + 1) */
    bool reads_back;
};

/*
 * Rounds m * 2^-s to p significant digits. Returns 0, or 1 when the exponent guess d was
 * too high, -1 when too low (the caller guesses again), 2 when out of the fast range.
 */
static int candidate_for(uint64_t m, int s, bool even, bool closer_below, int p, int d,
                         struct candidate *c)
{
    int k = p - 1 - d;
    if (k < 0 || k > FAST_POW10_MAX)
        return 2;
    u128 scale = pow10_u128(k);
    u128 x = (u128)m * scale; /* v * 10^k, in units of 2^-s */
    u128 one = (u128)1 << s;
    u128 floor_q = x >> s, rest = x & (one - 1);
    u128 twice_rest = rest << 1;
    bool up = twice_rest > one || (twice_rest == one && (floor_q & 1));
    u128 n = floor_q + (up ? 1 : 0);
    u128 low = pow10_u128(p - 1), high = low * 10;
    if (n < low)
        return 1;
    if (n > high)
        return -1;
    /* Distance from the candidate to v and half the gap to the double on that side. */
    u128 distance = up ? one - rest : rest;
    u128 twice_distance = distance << 1;
    bool reads_back;
    if (!up && closer_below) /* below a power of two, the next double is half as far */
        reads_back = (twice_distance << 1) <= scale;
    else
        reads_back = twice_distance < scale || (twice_distance == scale && even);
    if (n == high) { /* rounding carried into one more digit: 10^p * 10^-k = 10^(p-1) * 10^-(k-1) */
        n = low;
        d++;
    }
    c->digits = (uint64_t)n;
    c->exponent = d;
    c->reads_back = reads_back;
    return 0;
}

/* Writes digits (p of them) as printf's %.{p}g would: trailing zeros dropped. */
static size_t write_like_g(const struct candidate *c, int p, bool negative,
                           char buf[JSONX_DOUBLE_MAX])
{
    char digits[24];
    uint64_t rest = c->digits;
    for (int i = p - 1; i >= 0; i--, rest /= 10)
        digits[i] = (char)('0' + (int)(rest % 10));
    int used = p;
    while (used > 1 && digits[used - 1] == '0')
        used--;
    size_t len = 0;
    if (negative)
        buf[len++] = '-';
    int x = c->exponent;
    if (x < -4 || x >= p) {
        buf[len++] = digits[0];
        if (used > 1) {
            buf[len++] = '.';
            memcpy(buf + len, digits + 1, (size_t)(used - 1));
            len += (size_t)(used - 1);
        }
        len += (size_t)snprintf(buf + len, JSONX_DOUBLE_MAX - len, "e%c%02d", x < 0 ? '-' : '+',
                                x < 0 ? -x : x);
        return len;
    }
    if (x < 0) {
        buf[len++] = '0';
        buf[len++] = '.';
        for (int i = 0; i < -x - 1; i++)
            buf[len++] = '0';
        memcpy(buf + len, digits, (size_t)used);
        len += (size_t)used;
    } else {
        memcpy(buf + len, digits, (size_t)(x + 1));
        len += (size_t)(x + 1);
        if (used > x + 1) {
            buf[len++] = '.';
            memcpy(buf + len, digits + x + 1, (size_t)(used - x - 1));
            len += (size_t)(used - x - 1);
        }
    }
    buf[len] = '\0';
    return len;
}

/* The fast way, or 0 when v is outside its range. */
static size_t format_fast(double v, char buf[JSONX_DOUBLE_MAX])
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    int biased = (int)((bits >> 52) & 0x7ff);
    if (biased == 0 || biased == 0x7ff)
        return 0; /* zero, subnormal, infinite, NaN */
    uint64_t fraction = bits & ((UINT64_C(1) << 52) - 1);
    uint64_t m = fraction | (UINT64_C(1) << 52);
    int s = 1075 - biased; /* v = m * 2^-s */
    if (s < 1 || s > 120)
        return 0;
    bool closer_below = fraction == 0 && biased > 1;
    double magnitude = fabs(v);
    if (magnitude < 1e-6)
        return 0;
    int guess = (int)floor(log10(magnitude));
    for (int p = 15; p <= 17; p++) {
        struct candidate c;
        int d = guess, rc;
        for (int tries = 0; (rc = candidate_for(m, s, (m & 1) == 0, closer_below, p, d, &c));
             tries++) {
            if (rc == 2 || tries == 2)
                return 0;
            d += rc == 1 ? -1 : 1;
        }
        guess = d;
        if (c.reads_back || p == 17)
            return write_like_g(&c, p, bits >> 63, buf);
    }
    return 0;
}

size_t jsonx_format_double(double v, char buf[JSONX_DOUBLE_MAX])
{
    if (!isfinite(v)) {
        const char *name = nonfinite_name(v);
        size_t len = strlen(name);
        memcpy(buf, name, len + 1);
        return len;
    }
    /* 17 significant digits always round-trip; fewer usually do and read better. */
    size_t len = format_fast(v, buf);
    return len ? len : format_by_printf(v, buf);
}

struct jsonx_text jsonx_text(double v)
{
    struct jsonx_text text;
    jsonx_format_double(v, text.s);
    return text;
}

cJSON *jsonx_number(double v)
{
    if (!isfinite(v))
        return cJSON_CreateString(nonfinite_name(v));
    char buf[JSONX_DOUBLE_MAX];
    jsonx_format_double(v, buf);
    /* A raw item is printed verbatim, so the digits chosen above reach the output. */
    return cJSON_CreateRaw(buf);
}

cJSON *jsonx_number_array(const double *values, size_t n)
{
    cJSON *array = cJSON_CreateArray();
    for (size_t i = 0; array && i < n; i++) {
        cJSON *item = jsonx_number(values[i]);
        if (!item || !cJSON_AddItemToArray(array, item)) {
            cJSON_Delete(item);
            cJSON_Delete(array);
            array = NULL;
        }
    }
    return array;
}

/* Makes every number under item a raw item of its shortest exact digits; false when out of memory.
 */
static bool numbers_to_raw(cJSON *item)
{
    for (cJSON *child = item->child; child; child = child->next) {
        if (cJSON_IsNumber(child)) {
            cJSON *raw = jsonx_number(child->valuedouble);
            /* In an object the replacement takes the key: ReplaceItemViaPointer copies none. */
            bool replaced =
                raw && (cJSON_IsObject(item)
                            ? cJSON_ReplaceItemInObjectCaseSensitive(item, child->string, raw)
                            : cJSON_ReplaceItemViaPointer(item, child, raw));
            if (!replaced) {
                cJSON_Delete(raw);
                return false;
            }
            child = raw;
        } else if ((cJSON_IsArray(child) || cJSON_IsObject(child)) && !numbers_to_raw(child)) {
            return false;
        }
    }
    return true;
}

cJSON *jsonx_parse_exact(const char *text)
{
    cJSON *tree = cJSON_Parse(text);
    if (!tree)
        return NULL;
    if (cJSON_IsNumber(tree)) {
        cJSON *raw = jsonx_number(tree->valuedouble);
        cJSON_Delete(tree);
        return raw;
    }
    if (!numbers_to_raw(tree)) {
        cJSON_Delete(tree);
        return NULL;
    }
    return tree;
}

cJSON *jsonx_lr(const double *values, size_t n, bool as_array)
{
    return as_array ? jsonx_number_array(values, n) : jsonx_number(values[0]);
}

bool jsonx_get_integer(const cJSON *item, int64_t min, int64_t max, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    /* 2^63 is the first double past INT64_MAX; (double)INT64_MAX rounds up to it. */
    if (!(v >= (double)min && v <= (double)max && v < 9223372036854775808.0) || v != floor(v))
        return false;
    *out = (int64_t)v;
    return true;
}

cJSON *jsonx_number_or_null(double v)
{
    return isfinite(v) ? jsonx_number(v) : cJSON_CreateNull();
}

bool jsonx_get_double(const cJSON *item, double *out)
{
    if (cJSON_IsNumber(item)) {
        *out = item->valuedouble;
        return true;
    }
    if (cJSON_IsRaw(item) && item->valuestring) {
        /* Raw items are ones this module made: read the digits back. */
        char *end = NULL;
        double v = strtod(item->valuestring, &end);
        if (end == item->valuestring || *end != '\0')
            return false;
        *out = v;
        return true;
    }
    if (!cJSON_IsString(item) || !item->valuestring)
        return false;
    if (strcmp(item->valuestring, "NaN") == 0)
        *out = NAN;
    else if (strcmp(item->valuestring, "Infinity") == 0)
        *out = INFINITY;
    else if (strcmp(item->valuestring, "-Infinity") == 0)
        *out = -INFINITY;
    else
        return false;
    return true;
}

bool jsonx_add_number(cJSON *object, const char *key, double v)
{
    cJSON *item = jsonx_number(v);
    if (!item)
        return false;
    if (!cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

size_t jsonx_format_integer(int64_t v, char buf[JSONX_INTEGER_MAX])
{
    char digits[JSONX_INTEGER_MAX];
    char *p = digits + sizeof(digits);
    /* Digits from the last, in unsigned arithmetic so that INT64_MIN negates. */
    uint64_t magnitude = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + (int)(magnitude % 10));
        magnitude /= 10;
    } while (magnitude);
    if (v < 0)
        *--p = '-';
    size_t len = (size_t)(digits + sizeof(digits) - p);
    memcpy(buf, p, len);
    buf[len] = '\0';
    return len;
}

bool jsonx_add_integer(cJSON *object, const char *key, int64_t v)
{
    char buf[JSONX_INTEGER_MAX];
    jsonx_format_integer(v, buf);
    cJSON *item = cJSON_CreateRaw(buf);
    if (!item || !cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

bool jsonx_add_number_or_null(cJSON *object, const char *key, double v)
{
    cJSON *item = jsonx_number_or_null(v);
    if (!item || !cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

size_t jsonx_utf8_sequence(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    /* The length of the sequence, and the range its second byte must be in. */
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below U+0800 */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates U+D800..U+DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (n > avail || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xbf)
            return 0;
    return n;
}

size_t jsonx_utf8_check(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) { /* most bodies are ASCII: no call for those bytes */
            i++;
            continue;
        }
        size_t n = jsonx_utf8_sequence(p + i, len - i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

void jsonx_utf8_repair(const char *text, char *out, size_t size)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    size_t len = strlen(text), o = 0;
    while (len > 0) {
        size_t good = jsonx_utf8_check(text, len);
        /* The valid run, cut back to a character boundary if out cannot take it all. */
        size_t take = good < size - 1 - o ? good : size - 1 - o;
        while (take > 0 && take < good && ((unsigned char)text[take] & 0xc0) == 0x80)
            take--;
        memcpy(out + o, text, take);
        o += take;
        if (take < good || good == len || o + 3 > size - 1)
            break;
        memcpy(out + o, replacement, 3);
        o += 3;
        text += good + 1;
        len -= good + 1;
    }
    out[o] = '\0';
}
