/* The summary of a stretch of history (see summary.h). */
#include "base/summary.h"

#include <math.h>
#include <string.h>

bool summary_lrs_differ(const double *a, const double *b, size_t groups)
{
    return memcmp(a, b, groups * sizeof(double)) != 0;
}

void summary_add_row(struct summary *s, int64_t step, double loss, bool changed)
{
    struct summary row = {
        .first_step = step,
        .last_step = step,
        .rows = 1,
        .changes = changed ? 1 : 0,
        .change_step = step,
        .have_low = true,
        .low_step = step,
        .low_loss = loss,
        .have_high = !isnan(loss),
        .high_step = step,
        .high_loss = loss,
    };
    summary_merge(s, &row);
}

void summary_merge(struct summary *s, const struct summary *part)
{
    if (part->rows == 0)
        return;
    if (s->rows == 0) {
        *s = *part;
        return;
    }
    s->last_step = part->last_step;
    s->rows += part->rows;
    if (s->changes == 0 && part->changes > 0)
        s->change_step = part->change_step;
    s->changes += part->changes;
    /* A NaN lowest stands only until a real loss comes; ties keep the earlier row. */
    if (part->have_low && !isnan(part->low_loss) &&
        (isnan(s->low_loss) || part->low_loss < s->low_loss)) {
        s->low_step = part->low_step;
        s->low_loss = part->low_loss;
    }
    if (part->have_high && (!s->have_high || part->high_loss > s->high_loss)) {
        s->have_high = true;
        s->high_step = part->high_step;
        s->high_loss = part->high_loss;
    }
}
