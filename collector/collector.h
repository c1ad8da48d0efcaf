/* collector - the collector daemon (`drover collector`): subscribes to one
 * or more brokers' events, keeps live state and job history, answers
 * queries on a ROUTER socket and serves /metrics and /api over HTTP. */
#ifndef COLLECTOR_H
#define COLLECTOR_H

#include "dv_flags.h"

/* Runs the collector until SIGINT/SIGTERM. Returns the process exit code:
 * 0 after a clean stop, 1 if it could not start, 2 on a usage error. */
int collector_main(int argc, char **argv);

/* Its flags (with their help and defaults; --log-level and --log-format
 * are dv_daemon_flags), what it does and the notes after the options:
 * `drover collector --help`, and the command table's entry (help, man page,
 * completion). Its exit status is dv_daemon_exits. */
extern const dv_flag_t collector_flags[];
extern const char collector_about[];
extern const char collector_notes[];

#endif
