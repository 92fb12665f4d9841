/* Exact double <-> JSON text conversion for greedylr (see jsonx.h). */
#include "jsonx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *nonfinite_name(double v)
{
    if (isnan(v))
        return "NaN";
    return v > 0 ? "Infinity" : "-Infinity";
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
    int len = 0;
    for (int precision = 15; precision <= 17; precision++) {
        len = snprintf(buf, JSONX_DOUBLE_MAX, "%.*g", precision, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return (size_t)len;
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

bool jsonx_add_number_or_null(cJSON *object, const char *key, double v)
{
    cJSON *item = jsonx_number_or_null(v);
    if (!item || !cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

size_t jsonx_utf8_check(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
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
            return i;
        }
        if (i + n > len || p[i + 1] < lo || p[i + 1] > hi)
            return i;
        for (size_t k = 2; k < n; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                return i;
        i += n;
    }
    return len;
}
