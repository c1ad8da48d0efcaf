#include "dv_backoff.h"

#include <math.h>
#include <sys/random.h>

int64_t
dv_backoff_delay(const dv_backoff_t *b, int attempt, int64_t retry_after_ms,
                 double rnd01)
{
    if (attempt < 1)
        attempt = 1;
    /* Written so NaN falls to the safe side of every comparison. */
    double factor = b->factor >= 1.0 ? b->factor : 1.0;
    int64_t cap = b->cap_ms > 0 ? b->cap_ms : 0;
    double d = (double)b->base_ms * pow(factor, attempt - 1);
    int64_t delay;
    /* Compare in double, convert only values below the cap: (double)cap can
     * round up past INT64_MAX, and converting that back is undefined. */
    if (!(d < (double)cap))
        delay = cap;
    else if (d <= 0)
        delay = 0;
    else
        delay = (int64_t)d;
    if (b->jitter) {
        if (!(rnd01 >= 0.0))
            rnd01 = 0.0;
        if (rnd01 >= 1.0)
            rnd01 = nextafter(1.0, 0.0);
        delay = (int64_t)((double)delay * rnd01);
    }
    if (retry_after_ms > delay)
        delay = retry_after_ms;
    return delay;
}

double
dv_rand01(void)
{
    static uint64_t s;
    if (s == 0) {
        if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s || s == 0)
            s = 0x9e3779b97f4a7c15ULL;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / (double)(1ULL << 53);
}
