#include "dv_hist.h"

#include <math.h>
#include <string.h>

void
dv_hist_reset(dv_hist_t *h)
{
    memset(h, 0, sizeof *h);
}

/* Bucket index: values below DV_HIST_SUB map 1:1; above, the power of two
 * picks the group and the next 4 bits below the top bit the sub-bucket. */
static unsigned
s_index(uint64_t v)
{
    if (v < DV_HIST_SUB)
        return (unsigned)v;
    int top = 63 - __builtin_clzll(v); /* >= 4 */
    unsigned sub = (unsigned)((v >> (top - 4)) & (DV_HIST_SUB - 1));
    return (unsigned)(top - 3) * DV_HIST_SUB + sub;
}

static uint64_t
s_upper(unsigned idx)
{
    if (idx < DV_HIST_SUB)
        return idx;
    unsigned group = idx / DV_HIST_SUB, sub = idx % DV_HIST_SUB;
    int top = (int)group + 3;
    uint64_t base = (1ULL << top) | ((uint64_t)sub << (top - 4));
    return base + (1ULL << (top - 4)) - 1;
}

void
dv_hist_record(dv_hist_t *h, uint64_t value)
{
    unsigned i = s_index(value);
    if (i >= DV_HIST_BUCKETS)
        i = DV_HIST_BUCKETS - 1;
    h->counts[i]++;
    h->total++;
    if (value > h->max)
        h->max = value;
}

uint64_t
dv_hist_quantile(const dv_hist_t *h, double q)
{
    if (!h->total)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* The nearest rank: the ceil(q * n)-th smallest value (1-based), so a
     * quantile is never below the value at its rank (with 2 values, p99
     * is the larger). */
    double rank = ceil(q * (double)h->total);
    uint64_t want = rank > 1 ? (uint64_t)rank - 1 : 0, seen = 0;
    for (unsigned i = 0; i < DV_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > want) {
            uint64_t u = s_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}
