/* worker - the worker daemon (`drover worker`): a supervisor that talks to
 * the broker and a prefork pool of child processes that run handlers. */
#ifndef WORKER_H
#define WORKER_H

#include "dv_flags.h"

/* Runs the worker until drained or killed. Returns the process exit code. */
int worker_main(int argc, char **argv);

/* Its flags (every one an FN flag applied in worker_config.c, with its
 * help and default; --log-level and --log-format are dv_daemon_flags),
 * what it does, the notes after the options and its exit status: `drover
 * worker --help`, and the command table's entry (help, man page,
 * completion). */
extern const dv_flag_t worker_flags[];
extern const char worker_about[];
extern const char worker_notes[];
extern const char worker_exits[];

#endif
