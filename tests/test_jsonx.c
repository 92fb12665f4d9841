/* Exact double <-> JSON text conversion (src/base/jsonx.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonstrict.h"
#include "base/jsonx.h"
#include "base/status.h"
#include "testutil.h"

static double from_bits(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

START_TEST(random_doubles_round_trip)
{
    uint64_t state = 0x9E3779B97F4A7C15u;
    for (int i = 0; i < 50000; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        double v = from_bits(state);
        if (!isfinite(v))
            continue;
        char buf[JSONX_DOUBLE_MAX];
        size_t len = jsonx_format_double(v, buf);
        if (len >= JSONX_DOUBLE_MAX || strlen(buf) != len)
            ck_abort_msg("length %zu for %a", len, v);
        double back = strtod(buf, NULL);
        if (memcmp(&back, &v, sizeof(v)) != 0)
            ck_abort_msg("%s does not read back as %a", buf, v);
    }
}
END_TEST

START_TEST(shortest_form_is_chosen)
{
    char buf[JSONX_DOUBLE_MAX];
    jsonx_format_double(0.1, buf);
    ck_assert_str_eq(buf, "0.1");
    jsonx_format_double(1e-8, buf);
    ck_assert_str_eq(buf, "1e-08");
    jsonx_format_double(0.95, buf);
    ck_assert_str_eq(buf, "0.95");
    jsonx_format_double(0.1 + 0.2, buf);
    ck_assert_str_eq(buf, "0.30000000000000004");
    jsonx_format_double(-2.2250738585072014e-308, buf);
    ck_assert_str_eq(buf, "-2.2250738585072014e-308");
}
END_TEST

/*
 * The definition jsonx_format_double() must meet, written the plain way: the shortest of
 * %.15g, %.16g and %.17g that reads back. The library's fast way must give the same text.
 */
static void shortest_by_printf(double v, char buf[JSONX_DOUBLE_MAX])
{
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(buf, JSONX_DOUBLE_MAX, "%.*g", precision, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void expect_printf_text(double v)
{
    char fast[JSONX_DOUBLE_MAX], plain[JSONX_DOUBLE_MAX];
    jsonx_format_double(v, fast);
    shortest_by_printf(v, plain);
    if (strcmp(fast, plain) != 0)
        ck_abort_msg("%a: formatted %s, printf gives %s", v, fast, plain);
}

START_TEST(fast_formatting_matches_printf)
{
    /* Edges of the fast way's range, ties at 15 and 16 digits, powers of two and ten. */
    const double edges[] = {1e-6,
                            0.99999999999999995e-6,
                            1e-5,
                            1e-4,
                            0.5,
                            1,
                            2,
                            1e15,
                            1e16,
                            9.999999999999999e15,
                            1234567890123455.0,
                            1234567890123445.0,
                            9007199254740991.0,
                            4503599627370496.5,
                            0.30000000000000004,
                            0.1,
                            0.95,
                            1e-7,
                            123456789012345678.0,
                            5e-324,
                            2.2250738585072014e-308,
                            -0.0,
                            0.0};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        expect_printf_text(edges[i]);
        expect_printf_text(-edges[i]);
    }
    uint64_t state = 0x243F6A8885A308D3u;
    int count = 30000 / testutil_slow();
    for (int i = 0; i < count; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        /* Losses and learning rates: every magnitude from 1e-8 to 1e12, and lr decays. */
        double v = (double)(state >> 11) / 9007199254740992.0 * pow(10, (int)(state % 20) - 8);
        expect_printf_text(i % 2 ? v : -v);
        expect_printf_text(0.1 * pow(0.95, (double)(state % 5000)));
        if (isfinite(from_bits(state)))
            expect_printf_text(from_bits(state));
    }
}
END_TEST

START_TEST(integers_match_printf)
{
    const int64_t values[] = {0, 1, -1, 9, 10, -10, 123456789, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char fast[JSONX_INTEGER_MAX], plain[32];
        size_t len = jsonx_format_integer(values[i], fast);
        snprintf(plain, sizeof(plain), "%lld", (long long)values[i]);
        ck_assert_str_eq(fast, plain);
        ck_assert_uint_eq(len, strlen(plain));
    }
}
END_TEST

START_TEST(non_finite_values_are_named)
{
    char buf[JSONX_DOUBLE_MAX];
    jsonx_format_double(NAN, buf);
    ck_assert_str_eq(buf, "NaN");
    jsonx_format_double(INFINITY, buf);
    ck_assert_str_eq(buf, "Infinity");
    jsonx_format_double(-INFINITY, buf);
    ck_assert_str_eq(buf, "-Infinity");

    cJSON *item = jsonx_number(-INFINITY);
    ck_assert(cJSON_IsString(item));
    ck_assert_str_eq(item->valuestring, "-Infinity");
    cJSON_Delete(item);
    item = jsonx_number_or_null(INFINITY);
    ck_assert(cJSON_IsNull(item));
    cJSON_Delete(item);
}
END_TEST

START_TEST(printed_tree_reads_back_exactly)
{
    /* cJSON's own printer keeps only 15 digits when they are "close enough". */
    const double values[] = {0.043491836794039403, 1.0 / 3.0, 0.1 + 0.2, 5e-324, 1e308};
    cJSON *object = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char key[8];
        snprintf(key, sizeof(key), "v%zu", i);
        ck_assert(jsonx_add_number(object, key, values[i]));
    }
    ck_assert(jsonx_add_number(object, "inf", INFINITY));
    char *text = cJSON_PrintUnformatted(object);
    cJSON_Delete(object);
    cJSON *parsed = testutil_parse(text);
    free(text);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char key[8];
        snprintf(key, sizeof(key), "v%zu", i);
        double v = 0;
        ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(parsed, key), &v));
        ck_assert_msg(v == values[i], "%s: %.17g != %.17g", key, v, values[i]);
    }
    double inf = 0;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(parsed, "inf"), &inf));
    ck_assert(isinf(inf) && inf > 0);
    cJSON_Delete(parsed);
}
END_TEST

START_TEST(get_double_refuses_other_items)
{
    double v = 42;
    cJSON *s = cJSON_CreateString("infinity");
    ck_assert(!jsonx_get_double(s, &v));
    cJSON_Delete(s);
    cJSON *b = cJSON_CreateTrue();
    ck_assert(!jsonx_get_double(b, &v));
    cJSON_Delete(b);
    ck_assert(!jsonx_get_double(NULL, &v));
    ck_assert(v == 42);
    cJSON *nan = cJSON_CreateString("NaN");
    ck_assert(jsonx_get_double(nan, &v));
    ck_assert(isnan(v));
    cJSON_Delete(nan);
}
END_TEST

/* The cases of RFC 3629 that decoders have got wrong: each must be refused where it starts. */
START_TEST(utf8_is_checked)
{
    static const struct {
        const char *text;
        size_t bad; /* SIZE_MAX: valid */
    } cases[] = {
        {"plain ascii", SIZE_MAX},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", SIZE_MAX},
        {"a\xff", 1},            /* never in UTF-8 */
        {"a\xc0\xaf", 1},        /* overlong '/' */
        {"\xe0\x80\xaf", 0},     /* overlong, three bytes */
        {"\xed\xa0\x80", 0},     /* a surrogate */
        {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */
        {"ok\xe2\x82", 2},       /* cut short */
        {"\xc3(", 0},            /* a bad continuation byte */
        {"\x80", 0},             /* a lone continuation byte */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].text);
        size_t want = cases[i].bad == SIZE_MAX ? len : cases[i].bad;
        ck_assert_msg(jsonx_utf8_check(cases[i].text, len) == want, "case %zu", i);
    }
}
END_TEST

/* Invalid bytes become U+FFFD, valid text is kept, and a full buffer cuts between characters. */
START_TEST(utf8_is_repaired)
{
    static const struct {
        const char *text;
        size_t size;
        const char *want;
    } cases[] = {
        {"caf\xc3\xa9", 64, "caf\xc3\xa9"},
        {"a\xff-", 64, "a\xef\xbf\xbd-"},
        {"ok\xe2\x82", 64, "ok\xef\xbf\xbd\xef\xbf\xbd"},             /* a character cut short */
        {"\xed\xa0\x80", 64, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"\xc3\xa9\xc3\xa9", 4, "\xc3\xa9"},                          /* no half of the second */
        {"ab\xff", 4, "ab"},                                          /* no half of U+FFFD */
        {"", 1, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        jsonx_utf8_repair(cases[i].text, out, cases[i].size);
        ck_assert_msg(strcmp(out, cases[i].want) == 0, "case %zu", i);
        ck_assert_uint_eq(jsonx_utf8_check(out, strlen(out)), strlen(out));
    }
}
END_TEST

/* ---- strict JSON (src/base/jsonstrict.h) ------------------------------------------------- */

/* jsonstrict_check() over len bytes of text, at the depth bound request bodies have. */
static int strict(const char *text, size_t len, char err[GLR_ERR_MAX])
{
    err[0] = '\0';
    return jsonstrict_check(text, len, 32, err);
}

START_TEST(strict_json_is_accepted)
{
    static const char *const texts[] = {
        "{}",
        " [ ] ",
        "\t{\"a\" : [1, -0, 0, 0.5, 1e5, 1E-5, -1.5e+3, true, false, null]}\r\n",
        "{\"s\":\"x\\n\\t\\\"\\\\\\/\\b\\f\\r\\u00e9\\ud83d\\ude00 caf\xc3\xa9\"}",
        "\"just a string\"",
        "0",
        /* Near zero and subnormal are doubles all the same; so is the largest double. */
        "[1e-400, 4.9e-324, 2.2e-308, 1.7976931348623157e308, -1.7976931348623157e308]",
        "[0e999999999999999, 0.000e400, -0.0e99999]",
        "{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1}]}",
    };
    char err[GLR_ERR_MAX];
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        ck_assert_msg(strict(texts[i], strlen(texts[i]), err) == GLR_OK, "text %zu: %s", i, err);
    /* 32 levels are allowed, 33 are not: at the bracket that opens the 33rd. */
    char deep[80];
    memset(deep, '[', 33);
    memset(deep + 33, ']', 33);
    ck_assert_int_eq(strict(deep + 1, 64, err), GLR_OK);
    ck_assert_int_eq(strict(deep, 66, err), GLR_EMALFORMED);
    ck_assert_msg(strstr(err, "byte 32: ") && strstr(err, "deeper than 32 levels"), "%s", err);
}
END_TEST

/* What cJSON reads leniently is refused, at the byte at fault, saying what is wrong. */
START_TEST(lenient_json_is_refused)
{
    static const struct {
        const char *text;
        size_t len; /* 0: strlen(text) */
        size_t at;
        const char *says;
    } cases[] = {
        {"{\"step\":09}", 0, 8, "leading zero in a number"},
        {"{\"step\":-01}", 0, 8, "leading zero in a number"},
        {"{\"step\":1.}", 0, 10, "decimal point without digits"},
        {"{\"step\":1e}", 0, 10, "exponent without digits"},
        {"{\"step\":1e+}", 0, 11, "exponent without digits"},
        {"{\"step\":-}", 0, 9, "minus sign"},
        {"{\"step\":.5}", 0, 8, "'.' where a value"},
        {"{\"step\":+1}", 0, 8, "'+' where a value"},
        {"{\"loss\":NaN}", 0, 8, "'N' where a value"},
        {"{\"loss\":tru}", 0, 8, "'t' where a value"},
        {"{\"k\":\"a\tb\"}", 0, 7, "control character 0x09"},
        {"{\"k\":\"a\nb\"}", 0, 7, "control character 0x0a"},
        {"{\"k\":\"a\0b\"}", 11, 7, "a NUL byte in a string"},
        {"{\"step\":1}\0", 11, 10, "a NUL byte after the JSON value"},
        {"{\"step\":1,\0\"loss\":2}", 20, 10, "a NUL byte where a key"},
        {"\0{\"step\":1}", 11, 0, "a NUL byte where a value"},
        {"\xef\xbb\xbf{\"step\":1}", 0, 0, "byte-order mark"},
        {"{\"step\":1,}", 0, 10, "where a key"},
        {"[1,]", 0, 3, "where a value"},
        {"[1 2]", 0, 3, "',' or ']'"},
        {"{\"a\" 1}", 0, 5, "':'"},
        {"{'a':1}", 0, 1, "where a key"},
        {"{\"k\":\"\\x\"}", 0, 6, "\\x is not an escape"},
        {"{\"k\":\"\\u12\"}", 0, 6, "four hex digits"},
        {"{\"k\":\"\\ud800\"}", 0, 6, "does not end"},
        {"{\"k\":\"\\ud800\\u0041\"}", 0, 6, "does not end"},
        {"{\"k\":\"\\udc00\"}", 0, 6, "no beginning"},
        {"{\"k\":\"abc", 0, 5, "not closed"},
        {"{\"k\":\"\xff\"}", 0, 6, "not UTF-8"},
        {"{\"step\":1} {}", 0, 11, "text after the JSON value"},
        {"{\"step\":1", 0, 9, "ends where ',' or '}'"},
        {"", 0, 0, "ends where a value"},
        {"  \r\n", 0, 4, "ends where a value"},
    };
    char err[GLR_ERR_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        int rc = strict(cases[i].text, len, err);
        char at[32];
        snprintf(at, sizeof(at), "byte %zu: ", cases[i].at);
        ck_assert_msg(rc == GLR_EMALFORMED, "case %zu: %d %s", i, rc, err);
        ck_assert_msg(strncmp(err, at, strlen(at)) == 0 && strstr(err, cases[i].says),
                      "case %zu: \"%s\", expected %s...%s", i, err, at, cases[i].says);
    }
}
END_TEST

/* Well-formed values no field takes are GLR_EINVAL naming the field, after the grammar. */
START_TEST(unrepresentable_values_name_the_field)
{
    static const struct {
        const char *text;
        const char *says;
    } cases[] = {
        {"{\"step\":1,\"loss\":1e309}", "\"loss\" is 1e309, beyond the range of a double"},
        {"{\"loss\":-1e309}", "\"loss\" is -1e309"},
        {"{\"lr\":[0.1,1.8e308]}", "\"lr[1]\" is 1.8e308"},
        {"{\"config\":{\"patience\":2E+308}}", "\"config.patience\" is 2E+308"},
        {"{\"a\":[[1],[2,{\"b\":1e99999999999999999999}]]}", "\"a[1][1].b\""},
        {"1e400", "the number is 1e400"},
        {"{\"tags\":{\"k\":\"a\\u0000b\"}}", "\"tags.k\" holds an escaped NUL"},
        {"{\"tags\":{\"a\\u0000\":\"v\"}}", "a key in \"tags\" holds an escaped NUL"},
        {"{\"a\\u0000\":1}", "a key holds an escaped NUL"},
        {"[\"\\u0000\"]", "\"[0]\" holds an escaped NUL"},
    };
    char err[GLR_ERR_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = strict(cases[i].text, strlen(cases[i].text), err);
        ck_assert_msg(rc == GLR_EINVAL && strstr(err, cases[i].says), "case %zu: %d \"%s\"", i, rc,
                      err);
    }
    /* A fault of the grammar after such a value is what the text is refused for. */
    ck_assert_int_eq(strict("{\"loss\":1e309,}", 15, err), GLR_EMALFORMED);
    ck_assert_int_eq(strict("{\"k\":\"\\u0000\"", 13, err), GLR_EMALFORMED);
}
END_TEST

/*
 * Whether a number is beyond a double is decided from its digits; strtod is the judge.
 * The numbers are around 2^1024 - 2^970, where rounding turns to infinity, written in
 * several ways: digit for digit, cut, with a fraction, and scaled by the exponent.
 */
START_TEST(double_range_matches_strtod)
{
    const char *h = "17976931348623158079372897140530341507993413271003782693617377898044496829"
                    "27647509466490179775872070963302864166928879109465555478519404026306574886"
                    "71505820681908902000708383676273854845817711531764475730270069855571366959"
                    "62284291481986083493647529271907416844436551070434271155969950809304288017"
                    "7904174497792";
    ck_assert_uint_eq(strlen(h), 309);
    char text[1024], err[GLR_ERR_MAX];
    uint32_t seed = 12345;
    for (int i = 0; i < 4000; i++) {
        /* The first n digits of h, the last of them moved by -1, 0 or +1, more digits after. */
        size_t n = 1 + testutil_next_random(&seed) % 309;
        int move = (int)(testutil_next_random(&seed) % 3) - 1;
        char digits[400];
        memcpy(digits, h, n);
        digits[n] = '\0';
        char *last = &digits[n - 1];
        if (move && n > 1) /* within 0 to 9 */
            *last = (char)(*last + (*last == '9' ? -1 : *last == '0' ? 1 : move));
        if (testutil_next_random(&seed) % 2)
            snprintf(digits + n, sizeof(digits) - n, "%u", testutil_next_random(&seed) % 1000);
        strcat(digits, "0"); /* a fraction below always has a digit */
        int total = (int)strlen(digits);
        int form = (int)(testutil_next_random(&seed) % 3);
        int scale = (int)(testutil_next_random(&seed) % 5);
        if (scale > total - 2)
            scale = total - 2;
        const char *sign = i % 2 ? "-" : "";
        if (form == 0) /* d.ddd e308, the point moved scale digits right */
            snprintf(text, sizeof(text), "%s%.*s.%se%d", sign, 1 + scale, digits,
                     digits + 1 + scale, 308 - scale);
        else if (form == 1) /* 0.000ddd e(309 + zeros) */
            snprintf(text, sizeof(text), "%s0.%.*s%se%d", sign, scale, "0000", digits, 309 + scale);
        else /* all the digits, then an exponent that puts the point after the first */
            snprintf(text, sizeof(text), "%s%se%d", sign, digits, 309 - total);
        bool infinite = isinf(strtod(text, NULL));
        int rc = strict(text, strlen(text), err);
        ck_assert_msg(rc == (infinite ? GLR_EINVAL : GLR_OK), "%s: strtod says %s, check %d %s",
                      text, infinite ? "infinite" : "finite", rc, err);
    }
    /* h itself is the tie, which rounds to even: to 2^1024, infinite. */
    ck_assert(isinf(strtod(h, NULL)));
    ck_assert_int_eq(strict(h, 309, err), GLR_EINVAL);
}
END_TEST

/* A key twice in one object is refused at any depth, after escapes are read. */
START_TEST(repeated_keys_are_refused)
{
    static const struct {
        const char *text;
        const char *says; /* NULL: no key repeats */
    } cases[] = {
        {"{\"step\":1,\"step\":2}", "duplicate key \"step\" in the request body"},
        {"{\"tags\":{\"a\":\"1\",\"\\u0061\":\"2\"}}", "duplicate key \"a\" in \"tags\" of the"},
        {"{\"lr\":[0.1,{\"x\":1,\"y\":2,\"x\":3}]}", "duplicate key \"x\" in \"lr\""},
        {"{\"a\":{\"b\":{\"c\":1,\"c\":1}}}", "duplicate key \"c\" in \"b\""},
        {"{\"a\":{\"b\":1},\"b\":{\"b\":2},\"c\":[{\"b\":3},{\"b\":4}]}", NULL},
        {"{\"A\":1,\"a\":2}", NULL},
    };
    char err[GLR_ERR_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *tree = cJSON_Parse(cases[i].text);
        ck_assert_ptr_nonnull(tree);
        err[0] = '\0';
        int rc = jsonstrict_unique_keys(tree, "the request body", err);
        cJSON_Delete(tree);
        if (!cases[i].says)
            ck_assert_msg(rc == GLR_OK, "case %zu: %s", i, err);
        else
            ck_assert_msg(rc == GLR_EMALFORMED && strstr(err, cases[i].says), "case %zu: %s", i,
                          err);
    }
    /* Objects too large to compare pairwise are sorted: the repeat is found wherever it is. */
    for (int repeat = 0; repeat < 2; repeat++) {
        char text[8192];
        size_t len = (size_t)snprintf(text, sizeof(text), "{");
        for (int k = 0; k < 300; k++)
            len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\"k%d\":%d", k ? "," : "",
                                    repeat && k == 299 ? 7 : k, k);
        snprintf(text + len, sizeof(text) - len, "}");
        cJSON *tree = cJSON_Parse(text);
        ck_assert_ptr_nonnull(tree);
        int rc = jsonstrict_unique_keys(tree, "the request body", err);
        cJSON_Delete(tree);
        ck_assert_int_eq(rc, repeat ? GLR_EMALFORMED : GLR_OK);
        if (repeat)
            ck_assert_msg(strstr(err, "duplicate key \"k7\""), "%s", err);
    }
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("jsonx");
    TCase *tc = tcase_create("jsonx");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, random_doubles_round_trip);
    tcase_add_test(tc, shortest_form_is_chosen);
    tcase_add_test(tc, fast_formatting_matches_printf);
    tcase_add_test(tc, integers_match_printf);
    tcase_add_test(tc, non_finite_values_are_named);
    tcase_add_test(tc, printed_tree_reads_back_exactly);
    tcase_add_test(tc, get_double_refuses_other_items);
    tcase_add_test(tc, utf8_is_checked);
    tcase_add_test(tc, utf8_is_repaired);
    suite_add_tcase(suite, tc);
    TCase *strict_tc = tcase_create("jsonstrict");
    tcase_set_timeout(strict_tc, 60);
    tcase_add_test(strict_tc, strict_json_is_accepted);
    tcase_add_test(strict_tc, lenient_json_is_refused);
    tcase_add_test(strict_tc, unrepresentable_values_name_the_field);
    tcase_add_test(strict_tc, double_range_matches_strtod);
    tcase_add_test(strict_tc, repeated_keys_are_refused);
    suite_add_tcase(suite, strict_tc);
    return testutil_run(suite);
}
