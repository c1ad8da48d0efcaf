#include "dv_backoff.h"

#include <math.h>
#include <sys/random.h>

int64_t
dv_backoff_delay(const dv_backoff_t *b, int attempt, int64_t retry_after_ms,
                 double rnd01)
{
    if (attempt < 1)
        attempt = 1;
    double factor = b->factor < 1.0 ? 1.0 : b->factor;
    double d = (double)b->base_ms * pow(factor, attempt - 1);
    if (!isfinite(d) || d > (double)b->cap_ms)
        d = (double)b->cap_ms;
    if (d < 0)
        d = 0;
    if (b->jitter)
        d = d * rnd01;
    int64_t delay = (int64_t)d;
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
