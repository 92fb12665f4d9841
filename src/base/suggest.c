/* Near misses of unknown names (see suggest.h). */
#include "base/suggest.h"

#include <string.h>

/* Levenshtein distance of two short names; SUGGEST_NAME_MAX for a longer one. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= SUGGEST_NAME_MAX || lb >= SUGGEST_NAME_MAX)
        return SUGGEST_NAME_MAX;
    size_t row[SUGGEST_NAME_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t cost = diagonal + (a[i - 1] != b[j - 1]);
            size_t best = above + 1 < row[j - 1] + 1 ? above + 1 : row[j - 1] + 1;
            row[j] = cost < best ? cost : best;
            diagonal = above;
        }
    }
    return row[lb];
}

const char *suggest_closest(const char *word, const char *const *known, size_t count)
{
    const char *closest = NULL;
    size_t closest_distance = SUGGEST_DISTANCE_MAX + 1;
    for (size_t i = 0; i < count; i++) {
        size_t d = edit_distance(known[i], word);
        if (d < closest_distance) {
            closest_distance = d;
            closest = known[i];
        }
    }
    return closest;
}
