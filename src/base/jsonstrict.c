/*
 * RFC 8259 held strictly (see jsonstrict.h): a scan of the raw text that follows the
 * grammar with a stack of small frames, and a walk of the parsed tree for repeated keys.
 */
#include "base/jsonstrict.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "base/status.h"

/* One open array or object, and where the scan is in it, to name a field in a message. */
struct frame {
    bool object;
    size_t index;   /* members or elements begun so far */
    size_t key;     /* the current member's key: offset of its first byte after the quote */
    size_t key_len; /* its length as written, escapes and all */
};

struct scan {
    const unsigned char *p;
    size_t len;
    size_t i; /* the next byte to read */
    struct frame frames[JSONSTRICT_DEPTH_MAX];
    size_t depth;
    size_t depth_max;
    bool in_key; /* the string being read is a key */
    int soft;    /* GLR_EINVAL once a well-formed value that no field takes was seen */
    char *err;
};

/* Room for a field's name in a message, and for a number quoted there. */
#define FIELD_NAME_MAX   128
#define NUMBER_QUOTE_MAX 32

/* An exponent is read up to this; past it, any number is far beyond a double already. */
#define EXPONENT_CAP 1000000000

/*
 * The digits of 2^1024 - 2^970, halfway between the largest double and 2^1024: a decimal
 * at or past it rounds (to even, on the tie) to infinity, anything below to a finite
 * double. Comparing digits decides it exactly, at any length, without strtod.
 */
static const char halfway[] =
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475"
    "09466490179775872070963302864166928879109465555478519404026306574886715058206819"
    "08902000708383676273854845817711531764475730270069855571366959622842914819860834"
    "936475292719074168444365510704342711559699508093042880177904174497792";
#define HALFWAY_DIGITS   (sizeof(halfway) - 1)
#define HALFWAY_EXPONENT 308 /* halfway is 1.79...e308 */
_Static_assert(HALFWAY_DIGITS == HALFWAY_EXPONENT + 1, "2^1024 has 309 digits");

/* Fails the scan: a fault of the grammar at byte at. */
__attribute__((format(printf, 3, 4))) static int hard(struct scan *s, size_t at, const char *fmt,
                                                      ...)
{
    char what[GLR_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return glr_fail(s->err, GLR_EMALFORMED, "byte %zu: %s", at, what);
}

/*
 * Writes the name of the field being read into out, quoted ("\"config.patience\"",
 * "\"lr[1]\""), from the outermost level down to levels; "" for the top of the text.
 */
static void field_name(const struct scan *s, size_t levels, char out[FIELD_NAME_MAX])
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t d = 0; d < levels && o < FIELD_NAME_MAX - 2; d++) {
        const struct frame *f = &s->frames[d];
        size_t room = FIELD_NAME_MAX - 1 - o; /* a byte is kept for the closing quote */
        int n;
        if (f->object) {
            int quoted =
                f->key_len < JSONSTRICT_KEY_QUOTE_MAX ? (int)f->key_len : JSONSTRICT_KEY_QUOTE_MAX;
            n = snprintf(out + o, room, "%s%.*s", o ? "." : "\"", quoted,
                         (const char *)s->p + f->key);
        } else {
            n = snprintf(out + o, room, "%s[%zu]", o ? "" : "\"", f->index - 1);
        }
        if (n < 0)
            break;
        o += (size_t)n < room ? (size_t)n : room - 1;
    }
    if (o > 0) {
        out[o++] = '"';
        out[o] = '\0';
    }
}

/* Number 0x30.. as its value, or -1 when c is not a decimal digit. */
static int digit(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : -1;
}

/* Reads four hex digits at at into *out; false when they are not there. */
static bool hex4(const struct scan *s, size_t at, unsigned *out)
{
    if (at + 4 > s->len)
        return false;
    unsigned v = 0;
    for (size_t k = at; k < at + 4; k++) {
        unsigned char c = s->p[k];
        int d = digit(c);
        if (d < 0 && c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (d < 0 && c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        if (d < 0)
            return false;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return true;
}

/* Notes a string with an escaped NUL: well formed, but cJSON would cut it there. */
static void escaped_nul(struct scan *s)
{
    if (s->soft)
        return;
    char field[FIELD_NAME_MAX];
    field_name(s, s->in_key ? s->depth - 1 : s->depth, field);
    if (s->in_key)
        s->soft = glr_fail(s->err, GLR_EINVAL,
                           "a key %s%s%sholds an escaped NUL (\\u0000), which no name may hold",
                           field[0] ? "in " : "", field, field[0] ? " " : "");
    else
        s->soft = glr_fail(s->err, GLR_EINVAL,
                           "%s holds an escaped NUL (\\u0000), which no string here may hold",
                           field[0] ? field : "the text");
}

/* Reads the escape whose backslash is at s->i, leaving s->i past it. */
static int escape(struct scan *s)
{
    size_t at = s->i;
    if (at + 1 >= s->len)
        return hard(s, at, "a string that ends inside an escape");
    unsigned char e = s->p[at + 1];
    if (e && strchr("\"\\/bfnrt", e)) {
        s->i += 2;
        return GLR_OK;
    }
    if (e != 'u') {
        if (e > 0x20 && e < 0x7f)
            return hard(s, at, "\\%c is not an escape of JSON", e);
        return hard(s, at, "a backslash followed by byte 0x%02x is not an escape of JSON", e);
    }
    unsigned u, low;
    if (!hex4(s, at + 2, &u))
        return hard(s, at, "\\u needs four hex digits");
    s->i = at + 6;
    if (u >= 0xdc00 && u <= 0xdfff)
        return hard(s, at, "\\u%04x ends a surrogate pair that has no beginning", u);
    if (u >= 0xd800 && u <= 0xdbff) {
        /* UTF-8 has no form for half a pair: cJSON would refuse it, or write bad bytes. */
        if (!(s->i + 1 < s->len && s->p[s->i] == '\\' && s->p[s->i + 1] == 'u' &&
              hex4(s, s->i + 2, &low) && low >= 0xdc00 && low <= 0xdfff))
            return hard(s, at, "\\u%04x begins a surrogate pair that does not end", u);
        s->i += 6;
    }
    if (u == 0)
        escaped_nul(s);
    return GLR_OK;
}

/* Reads the string whose opening quote is at s->i, leaving s->i past its closing quote. */
static int string(struct scan *s)
{
    size_t start = s->i++;
    while (s->i < s->len) {
        unsigned char c = s->p[s->i];
        if (c == '"') {
            s->i++;
            return GLR_OK;
        }
        if (c == 0)
            return hard(s, s->i, "a NUL byte in a string");
        if (c < 0x20)
            return hard(s, s->i, "control character 0x%02x in a string, which must be escaped", c);
        if (c == '\\') {
            int rc = escape(s);
            if (rc)
                return rc;
        } else if (c >= 0x80) {
            size_t n = jsonx_utf8_sequence(s->p + s->i, s->len - s->i);
            if (n == 0)
                return hard(s, s->i, "a string that is not UTF-8");
            s->i += n;
        } else {
            s->i++;
        }
    }
    return hard(s, start, "a string that is not closed");
}

/*
 * True when the digits of a number (its integer part from int_start to int_end, its
 * fraction from frac_start to frac_end, and its exponent) round beyond the largest double.
 * One that rounds to a subnormal or to zero is a double all the same.
 */
static bool beyond_double(const struct scan *s, size_t int_start, size_t int_end, size_t frac_start,
                          size_t frac_end, int64_t exponent)
{
    const unsigned char *p = s->p;
    size_t first = int_start;
    while (first < int_end && p[first] == '0')
        first++;
    int64_t e; /* the number is d.ddd... * 10^e, d its first digit that is not 0 */
    if (first < int_end) {
        e = (int64_t)(int_end - first - 1) + exponent;
    } else {
        first = frac_start;
        while (first < frac_end && p[first] == '0')
            first++;
        if (first == frac_end)
            return false; /* zero */
        e = exponent - (int64_t)(first - frac_start + 1);
    }
    if (e != HALFWAY_EXPONENT)
        return e > HALFWAY_EXPONENT;
    /* The same power of ten: compare the digits, skipping the decimal point. */
    size_t runs[2][2] = {{first, int_end}, {frac_start, frac_end}};
    if (first >= int_end) { /* 0.000ddd: the digits begin in the fraction */
        runs[0][0] = runs[0][1] = 0;
        runs[1][0] = first;
    }
    size_t k = 0;
    for (int r = 0; r < 2; r++) {
        for (size_t j = runs[r][0]; j < runs[r][1]; j++, k++) {
            char d = (char)p[j];
            if (k >= HALFWAY_DIGITS) {
                if (d != '0')
                    return true;
                continue;
            }
            if (d != halfway[k])
                return d > halfway[k];
        }
    }
    /* halfway ends in 2: a number that stops sooner is below it, one that equals it is not. */
    return k >= HALFWAY_DIGITS;
}

/* Reads the number at s->i (a '-' or a digit is there), leaving s->i past it. */
static int number(struct scan *s)
{
    const unsigned char *p = s->p;
    size_t len = s->len, start = s->i, i = s->i;
    if (p[i] == '-')
        i++;
    if (i >= len || digit(p[i]) < 0)
        return hard(s, i, "a minus sign without digits after it");
    size_t int_start = i;
    if (p[i] == '0') {
        if (++i < len && digit(p[i]) >= 0)
            return hard(s, start, "leading zero in a number");
    } else {
        while (i < len && digit(p[i]) >= 0)
            i++;
    }
    size_t int_end = i, frac_start = i, frac_end = i;
    if (i < len && p[i] == '.') {
        frac_start = ++i;
        while (i < len && digit(p[i]) >= 0)
            i++;
        frac_end = i;
        if (frac_end == frac_start)
            return hard(s, i, "a decimal point without digits after it");
    }
    int64_t exponent = 0;
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        bool negative = false;
        if (++i < len && (p[i] == '+' || p[i] == '-'))
            negative = p[i++] == '-';
        size_t exponent_start = i;
        for (; i < len && digit(p[i]) >= 0; i++)
            if (exponent < EXPONENT_CAP)
                exponent = exponent * 10 + digit(p[i]);
        if (i == exponent_start)
            return hard(s, i, "an exponent without digits");
        if (negative)
            exponent = -exponent;
    }
    s->i = i;
    if (!s->soft && beyond_double(s, int_start, int_end, frac_start, frac_end, exponent)) {
        char field[FIELD_NAME_MAX];
        field_name(s, s->depth, field);
        size_t n = i - start;
        s->soft = glr_fail(
            s->err, GLR_EINVAL, "%s is %.*s%s, beyond the range of a double (about 1.8e308)",
            field[0] ? field : "the number", n < NUMBER_QUOTE_MAX ? (int)n : NUMBER_QUOTE_MAX,
            (const char *)p + start, n < NUMBER_QUOTE_MAX ? "" : "...");
    }
    return GLR_OK;
}

static void skip_space(struct scan *s)
{
    while (s->i < s->len) {
        unsigned char c = s->p[s->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        s->i++;
    }
}

/* Fails the scan at s->i, where wanted was expected, saying what stands there instead. */
static int unexpected(struct scan *s, const char *wanted)
{
    if (s->i >= s->len)
        return hard(s, s->i, "the text ends where %s was expected", wanted);
    unsigned char c = s->p[s->i];
    if (c == 0)
        return hard(s, s->i, "a NUL byte where %s was expected", wanted);
    if (c > 0x20 && c < 0x7f)
        return hard(s, s->i, "'%c' where %s was expected", c, wanted);
    return hard(s, s->i, "byte 0x%02x where %s was expected", c, wanted);
}

/* Reads the literal word (true, false, null) at s->i. */
static int literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if (s->len - s->i < n || memcmp(s->p + s->i, word, n) != 0)
        return unexpected(s, "a value");
    s->i += n;
    return GLR_OK;
}

/* Reads a value that is a string, number or literal, or opens an array or object. */
static int value_start(struct scan *s, bool *opened)
{
    *opened = false;
    if (s->i >= s->len)
        return unexpected(s, "a value");
    unsigned char c = s->p[s->i];
    if (c == '{' || c == '[') {
        if (s->depth >= s->depth_max)
            return hard(s, s->i, "arrays and objects nest deeper than %zu levels", s->depth_max);
        s->frames[s->depth++] = (struct frame){.object = c == '{'};
        s->i++;
        *opened = true;
        return GLR_OK;
    }
    if (c == '"')
        return string(s);
    if (c == '-' || digit(c) >= 0)
        return number(s);
    if (c == 't')
        return literal(s, "true");
    if (c == 'f')
        return literal(s, "false");
    if (c == 'n')
        return literal(s, "null");
    return unexpected(s, "a value");
}

/* Reads `"key":` of a member of the innermost object, leaving s->i at its value. */
static int member_key(struct scan *s)
{
    struct frame *f = &s->frames[s->depth - 1];
    skip_space(s);
    if (s->i >= s->len || s->p[s->i] != '"')
        return unexpected(s, "a key (a string)");
    size_t at = s->i;
    s->in_key = true;
    int rc = string(s);
    s->in_key = false;
    if (rc)
        return rc;
    f->key = at + 1;
    f->key_len = s->i - at - 2;
    f->index++;
    skip_space(s);
    if (s->i >= s->len || s->p[s->i] != ':')
        return unexpected(s, "':'");
    s->i++;
    return GLR_OK;
}

/*
 * After a value: closes the arrays and objects that end there, and reads the comma (and
 * the next key) before the next value. Returns 1 when a value comes next, 0 at the end of
 * the text, or a status.
 */
static int after_value(struct scan *s)
{
    for (;;) {
        skip_space(s);
        if (s->depth == 0) {
            if (s->i == s->len)
                return 0;
            if (s->p[s->i] == 0)
                return hard(s, s->i, "a NUL byte after the JSON value");
            return hard(s, s->i, "text after the JSON value");
        }
        struct frame *f = &s->frames[s->depth - 1];
        unsigned char close = f->object ? '}' : ']';
        if (s->i < s->len && s->p[s->i] == close) {
            s->i++;
            s->depth--;
            continue;
        }
        if (s->i >= s->len || s->p[s->i] != ',')
            return unexpected(s, f->object ? "',' or '}'" : "',' or ']'");
        s->i++;
        if (!f->object) {
            f->index++;
            return 1;
        }
        int rc = member_key(s);
        return rc ? rc : 1;
    }
}

int jsonstrict_check(const char *text, size_t len, size_t depth_max, char *err)
{
    struct scan s = {
        .p = (const unsigned char *)text,
        .len = len,
        .depth_max = depth_max < JSONSTRICT_DEPTH_MAX ? depth_max : JSONSTRICT_DEPTH_MAX,
        .err = err,
    };
    /* RFC 8259 8.1: a JSON text has no byte-order mark; cJSON would refuse it anyway. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        return hard(&s, 0, "a byte-order mark, which JSON text must not begin with");
    skip_space(&s);
    for (;;) {
        bool opened;
        int rc = value_start(&s, &opened);
        if (rc)
            return rc;
        if (opened) {
            struct frame *f = &s.frames[s.depth - 1];
            skip_space(&s);
            bool empty = s.i < len && s.p[s.i] == (f->object ? '}' : ']');
            if (!empty) {
                if (f->object && (rc = member_key(&s)) != 0)
                    return rc;
                if (!f->object)
                    f->index++;
                skip_space(&s);
                continue;
            }
            s.i++;
            s.depth--;
        }
        rc = after_value(&s);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return s.soft;
        skip_space(&s);
    }
}

/* ---- repeated keys ---------------------------------------------------------------------- */

/* Objects with up to this many members are compared pairwise; larger ones are sorted. */
#define PAIRWISE_MAX 16

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *name_of(const cJSON *item)
{
    return item->string ? item->string : "";
}

/* Sets *repeated to a name two members of object share, or NULL. */
static int find_repeated(const cJSON *object, const char **repeated)
{
    *repeated = NULL;
    size_t n = 0;
    for (const cJSON *c = object->child; c; c = c->next)
        n++;
    if (n <= PAIRWISE_MAX) {
        for (const cJSON *a = object->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (strcmp(name_of(a), name_of(b)) == 0) {
                    *repeated = name_of(a);
                    return GLR_OK;
                }
        return GLR_OK;
    }
    /* A copy of the names, sorted, so that an object of many members costs n log n. */
    const char **names = malloc(n * sizeof(*names));
    if (!names)
        return GLR_ENOMEM;
    size_t k = 0;
    for (const cJSON *c = object->child; c; c = c->next)
        names[k++] = name_of(c);
    qsort(names, n, sizeof(*names), compare_names);
    for (k = 1; k < n && !*repeated; k++)
        if (strcmp(names[k - 1], names[k]) == 0)
            *repeated = names[k];
    free(names);
    return GLR_OK;
}

/* Checks item and what it holds; holder is the key of the member item is in, or NULL. */
static int unique_in(const cJSON *item, const char *holder, const char *what, char *err)
{
    if (cJSON_IsObject(item)) {
        const char *repeated;
        if (find_repeated(item, &repeated))
            return glr_fail(err, GLR_ENOMEM, "checking the keys of %s: out of memory", what);
        if (repeated && holder)
            return glr_fail(err, GLR_EMALFORMED, "duplicate key \"%.*s\" in \"%.*s\" of %s",
                            JSONSTRICT_KEY_QUOTE_MAX, repeated, JSONSTRICT_KEY_QUOTE_MAX, holder,
                            what);
        if (repeated)
            return glr_fail(err, GLR_EMALFORMED, "duplicate key \"%.*s\" in %s",
                            JSONSTRICT_KEY_QUOTE_MAX, repeated, what);
    }
    for (const cJSON *c = item->child; c; c = c->next) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c))
            continue;
        int rc = unique_in(c, cJSON_IsObject(item) ? name_of(c) : holder, what, err);
        if (rc)
            return rc;
    }
    return GLR_OK;
}

int jsonstrict_unique_keys(const cJSON *tree, const char *what, char *err)
{
    return tree ? unique_in(tree, NULL, what, err) : GLR_OK;
}
