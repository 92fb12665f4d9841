/*
 * Numerics the core's learners share (see numeric.h).
 */
#include "core/numeric.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

/* The factorization of numeric_cholesky() without its retries; false when a is not positive
 * definite. */
static bool try_cholesky(double *a, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double s = a[j * n + j];
        for (size_t k = 0; k < j; k++)
            s -= a[j * n + k] * a[j * n + k];
        if (!(s > 0))
            return false;
        double root = sqrt(s);
        a[j * n + j] = root;
        for (size_t i = j + 1; i < n; i++) {
            double t = a[i * n + j];
            for (size_t k = 0; k < j; k++)
                t -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = t / root;
        }
        for (size_t i = 0; i < j; i++)
            a[i * n + j] = 0;
    }
    return true;
}

int numeric_cholesky(double *a, size_t n)
{
    double *copy = malloc(n * n * sizeof(double));
    if (!copy)
        return GLR_ENOMEM;
    int rc = GLR_OK;
    memcpy(copy, a, n * n * sizeof(double));
    double jitter = 1e-10;
    while (!try_cholesky(a, n)) {
        memcpy(a, copy, n * n * sizeof(double));
        if (jitter > 1) { /* not positive definite at all: the identity */
            memset(a, 0, n * n * sizeof(double));
            for (size_t i = 0; i < n; i++)
                a[i * n + i] = 1;
            rc = GLR_EINVAL;
            break;
        }
        for (size_t i = 0; i < n; i++)
            a[i * n + i] += jitter;
        jitter *= 10;
    }
    free(copy);
    return rc;
}

void numeric_solve_lower(const double *l, size_t n, double *b)
{
    for (size_t i = 0; i < n; i++) {
        double s = b[i];
        for (size_t k = 0; k < i; k++)
            s -= l[i * n + k] * b[k];
        b[i] = s / l[i * n + i];
    }
}

void numeric_solve_upper(const double *l, size_t n, double *b)
{
    for (size_t i = n; i-- > 0;) {
        double s = b[i];
        for (size_t k = i + 1; k < n; k++)
            s -= l[k * n + i] * b[k];
        b[i] = s / l[i * n + i];
    }
}

double numeric_scale_forward(const struct numeric_scale *s, double outcome)
{
    return ((s->log ? log(outcome) : outcome) - s->center) / s->scale;
}

double numeric_scale_backward(const struct numeric_scale *s, double z)
{
    double y = s->center + s->scale * z;
    return s->log ? exp(y) : y;
}

struct numeric_scale numeric_scale_fit(const double *outcomes, size_t n)
{
    struct numeric_scale s = {true, 0, 1};
    size_t finite = 0;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(outcomes[i])) {
            finite++;
            s.log = s.log && outcomes[i] > 0;
        }
    }
    if (finite == 0)
        return s;
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(outcomes[i])) {
            double y = s.log ? log(outcomes[i]) : outcomes[i];
            sum += y;
            sum2 += y * y;
        }
    }
    s.center = sum / (double)finite;
    double var = finite > 1 ? (sum2 - sum * s.center) / (double)(finite - 1) : 0;
    /*
     * With one run, or runs that all ended alike, there is no spread to learn from: a
     * factor of e in the outcome (or 1 in its units) is taken as one deviation.
     */
    s.scale = var > 1e-12 ? sqrt(var) : (s.log ? 1.0 : fmax(fabs(s.center), 1.0));
    return s;
}
