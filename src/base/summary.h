/*
 * summary: what a stretch of a job's history looks like from afar: how many rows, where
 * the learning rates changed, and its lowest and highest loss. The store keeps one per
 * block of STORE_BLOCK_ROWS rows as the rows are written; downsampled history merges
 * them, or single rows, into its buckets. Both go through these functions, so that a
 * bucket made of blocks has the same extremes as the bucket made of their rows.
 *
 * The rules are those of a chart: a NaN loss is never the lowest or the highest, but a
 * stretch whose losses are all NaN keeps its first row as the lowest; among equal losses
 * the first row wins; a row is a change when any group's lr differs, bit for bit, from
 * the row before it.
 */
#ifndef GLR_SUMMARY_H
#define GLR_SUMMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct summary {
    int64_t first_step, last_step;
    int64_t rows;        /* 0: empty, and nothing below holds */
    int64_t changes;     /* rows whose lrs differ from the row before them */
    int64_t change_step; /* the first of them, when changes > 0 */
    bool have_low;       /* always, once a row is in */
    int64_t low_step;
    double low_loss;
    bool have_high; /* false while every loss is NaN */
    int64_t high_step;
    double high_loss;
};

/* True when any of the groups' learning rates differ, bit for bit. */
bool summary_lrs_differ(const double *a, const double *b, size_t groups);

/* Appends one row, which comes after every row already in s. */
void summary_add_row(struct summary *s, int64_t step, double loss, bool changed);

/* Appends the stretch part, which comes after every row already in s. */
void summary_merge(struct summary *s, const struct summary *part);

#endif
