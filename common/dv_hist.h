/* dv_hist - a latency histogram with bounded relative error.
 *
 * Values (e.g. microseconds) go into log-linear buckets: 16 linear
 * sub-buckets per power of two, so a percentile read back is within 1/16
 * (6.25 %) of the true value, in a fixed 8 KiB, with O(1) record. */
#ifndef DV_HIST_H
#define DV_HIST_H

#include <stdint.h>

#define DV_HIST_SUB     16
#define DV_HIST_BUCKETS (64 * DV_HIST_SUB)

typedef struct {
    uint64_t counts[DV_HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
} dv_hist_t;

void dv_hist_reset(dv_hist_t *h);
void dv_hist_record(dv_hist_t *h, uint64_t value);

/* The value at quantile q (0..1) by nearest rank (the ceil(q * n)-th
 * smallest): the upper edge of the bucket holding it, never more than the
 * largest value recorded, never less than the value at that rank. 0 if
 * empty. */
uint64_t dv_hist_quantile(const dv_hist_t *h, double q);

#endif
