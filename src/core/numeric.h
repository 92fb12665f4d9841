/*
 * Numerics the core's learners share (tune.c, learn.c): a Cholesky factorization with its
 * triangular solves, and how a family's outcomes are put on one scale.
 *
 * Matrices are row-major n x n arrays of doubles, owned by the caller. Pure: no I/O; only
 * numeric_cholesky() allocates (a copy, freed before it returns).
 */
#ifndef GLR_NUMERIC_H
#define GLR_NUMERIC_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The Cholesky factor L (lower, the upper triangle zeroed) of the symmetric matrix a, in
 * place. A matrix computed in floating point may be a hair short of positive definite: a
 * little is added to the diagonal until the factorization succeeds. Returns GLR_OK;
 * GLR_EINVAL when a is not positive definite even then (a becomes the identity, which a
 * caller may take as independent draws); GLR_ENOMEM.
 */
int numeric_cholesky(double *a, size_t n);

/* Solves L x = b in place (L lower triangular). */
void numeric_solve_lower(const double *l, size_t n, double *b);

/* Solves L^T x = b in place. */
void numeric_solve_upper(const double *l, size_t n, double *b);

/*
 * How outcomes (lower is better) are standardized: z = (f(outcome) - center) / scale, f
 * the log when every finite outcome is positive, else the identity. Outcomes that are not
 * finite (diverged runs) are left out of the fit.
 */
struct numeric_scale {
    bool log;
    double center, scale;
};

struct numeric_scale numeric_scale_fit(const double *outcomes, size_t n);
double numeric_scale_forward(const struct numeric_scale *s, double outcome);
double numeric_scale_backward(const struct numeric_scale *s, double z);

#endif
