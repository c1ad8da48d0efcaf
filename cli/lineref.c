/* lineref - line references and --after ids of `drover submit`
 * (lineref.h). */
#include "lineref.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dv_id.h"
#include "dv_proto.h"
#include "jobline.h"

size_t
lineref_job_at(const unsigned *lines, size_t n, unsigned line)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (lines[mid] < line)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && lines[lo] == line ? lo : SIZE_MAX;
}

/* The i-th id of job's after and after_any, in that order. */
static const char **
s_slot(const drover_job_t *job, size_t i)
{
    /* The arrays are jobline's, in its arena: ours to rewrite. */
    return (const char **)(i < job->nafter ? &job->after[i]
                                           : &job->after_any[i - job->nafter]);
}

int
lineref_check(const unsigned *lines, size_t n, const drover_job_t *job,
              unsigned line, char *why, size_t why_size)
{
    for (size_t i = 0; i < job->nafter + job->nafter_any; i++) {
        unsigned ref = jobline_line_ref(*s_slot(job, i));
        if (!ref)
            continue;
        if (ref >= line || lineref_job_at(lines, n, ref) == SIZE_MAX) {
            snprintf(why, why_size,
                     "%s: line %u is not an earlier line with a job (a line "
                     "may wait only for the jobs of lines before it)",
                     i < job->nafter ? "after" : "after_any", ref);
            return -1;
        }
    }
    return 0;
}

size_t
lineref_resolve(drover_job_t *jobs, const unsigned *lines, size_t n,
                char (*ids)[DROVER_ID_SIZE], size_t base, size_t *m,
                unsigned *ref)
{
    for (size_t k = base; k < base + *m; k++) {
        drover_job_t *job = &jobs[k];
        for (size_t d = 0; d < job->nafter + job->nafter_any; d++) {
            const char **slot = s_slot(job, d);
            unsigned r = jobline_line_ref(*slot);
            if (!r)
                continue;
            size_t at = lineref_job_at(lines, n, r);
            if (at >= base) { /* checked earlier: at < k, so k > base */
                *m = k - base;
                return SIZE_MAX;
            }
            if (!ids[at][0]) {
                *m = k - base;
                *ref = r;
                return k;
            }
            *slot = ids[at];
        }
    }
    return SIZE_MAX;
}

int
lineref_parse_ids(int slot, const char *text, const char *const **out,
                  size_t *nout, char *why, size_t why_size)
{
    static const char *ptrs[2][DV_AFTER_MAX];
    static char bufs[2][DV_AFTER_MAX * (DV_ID_TEXT_LEN + 1) + 1];
    int w = slot ? 1 : 0;
    size_t len = strlen(text);
    if (len >= sizeof bufs[w]) {
        snprintf(why, why_size, "takes at most %d ids", DV_AFTER_MAX);
        return -1;
    }
    memcpy(bufs[w], text, len + 1);
    size_t k = 0;
    for (char *save = NULL, *t = strtok_r(bufs[w], ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (strlen(t) != DV_ID_TEXT_LEN) {
            snprintf(why, why_size, "'%.64s' is not a job id", t);
            return -1;
        }
        if (k == DV_AFTER_MAX) {
            snprintf(why, why_size, "takes at most %d ids", DV_AFTER_MAX);
            return -1;
        }
        ptrs[w][k++] = t;
    }
    if (!k) {
        snprintf(why, why_size, "needs job ids");
        return -1;
    }
    *out = ptrs[w];
    *nout = k;
    return 0;
}
