/* Exact double <-> JSON text conversion (src/base/jsonx.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
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
    return testutil_run(suite);
}
