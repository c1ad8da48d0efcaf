/* cli - subcommands implemented in cli/ itself. */
#ifndef CLI_H
#define CLI_H

/* `drover up`: broker + N workers in one process tree. */
int up_main(int argc, char **argv);

/* `drover cancel ID` and `drover status` (through the broker). */
int cancel_main(int argc, char **argv);
int status_main(int argc, char **argv);

/* Queue control through the broker: `drover retry`, `pause`, `resume`,
 * `purge`, `limit`. */
int retry_main(int argc, char **argv);
int pause_main(int argc, char **argv);
int resume_main(int argc, char **argv);
int purge_main(int argc, char **argv);
int limit_main(int argc, char **argv);
int drain_main(int argc, char **argv);

/* `drover keygen NAME`: a CurveZMQ certificate pair (cli/keygen.c). */
int keygen_main(int argc, char **argv);

/* `drover check`: the broker compares its memory with its store. */
int check_main(int argc, char **argv);

/* Commands that ask the collector (cli/monitor.c): `drover status` (falls
 * back to the broker's own view), `workers`, `queues`, `jobs`, `job`,
 * `result`, `watch`, `health`; the live view `drover top` (cli/top.c).
 * Entries of the command table (cli_cmd.h). `keys` (cli/keys.c) still
 * parses its own. */
#include "cli_cmd.h"
extern const cli_cmd_t cli_status;
extern const cli_cmd_t cli_workers;
extern const cli_cmd_t cli_queues;
extern const cli_cmd_t cli_jobs;
extern const cli_cmd_t cli_job;
extern const cli_cmd_t cli_result;
extern const cli_cmd_t cli_watch;
extern const cli_cmd_t cli_health;
extern const cli_cmd_t cli_top;
int keys_main(int argc, char **argv);

#endif
