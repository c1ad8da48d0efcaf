/* broker - the broker daemon (`drover broker`). */
#ifndef BROKER_H
#define BROKER_H

#include "dv_flags.h"

/* Runs the broker until SIGINT/SIGTERM. Returns the process exit code. */
int broker_main(int argc, char **argv);

/* Its flags (with their help, defaults and variables; --log-level and
 * --log-format are dv_daemon_flags), what it does, the notes after the
 * options and its exit status: `drover broker --help`, and the command
 * table's entry (help, man page, completion). */
extern const dv_flag_t broker_flags[];
extern const char broker_about[];
extern const char broker_notes[];
extern const char broker_exits[];

#endif
