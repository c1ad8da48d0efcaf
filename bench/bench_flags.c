/* bench_flags - the benchmarks' command lines, parsed by dv_flags like
 * every other drover command; see bench_flags.h. */
#include "bench_flags.h"

#include <stdio.h>

int
bench_flags(const char *name, const dv_flag_t *table, int argc, char **argv)
{
    const dv_flag_t *tables[] = { table };
    char err[256] = "";
    if (dv_flags_reset(tables, 1, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 2;
    }
    dv_flags_rc_t rc =
        dv_flags_parse(tables, 1, argc, argv, false, NULL, err, sizeof err);
    if (rc == DV_FLAGS_OK)
        return -1;
    FILE *out = rc == DV_FLAGS_HELP ? stdout : stderr;
    if (rc == DV_FLAGS_ERROR)
        fprintf(stderr, "%s: %s\n", name, err);
    fprintf(out, "usage: %s [OPTIONS]\n", name);
    dv_flags_help(tables, 1, out);
    return rc == DV_FLAGS_HELP ? 0 : 2;
}
