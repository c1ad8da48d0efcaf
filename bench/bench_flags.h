/* bench_flags - the benchmarks' command lines: one dv_flags table each,
 * parsed and documented the way drover's commands are (common/dv_flags.h).
 */
#ifndef BENCH_FLAGS_H
#define BENCH_FLAGS_H

#include "dv_flags.h"

/* Sets table's defaults and parses argv against it. Returns -1 to go on,
 * or the exit code after printing help (0) or the reason and the usage
 * (2) for the program called name. */
int bench_flags(const char *name, const dv_flag_t *table, int argc,
                char **argv);

#endif
