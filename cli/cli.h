/* cli - subcommands implemented in cli/ itself. */
#ifndef CLI_H
#define CLI_H

#include "cli_cmd.h"

/* `drover up`: broker, collector and N workers in one process tree
 * (cli/up.c). */
extern const cli_cmd_t cli_up;

/* Control through the broker (cli/ctl.c): `drover cancel`, `retry`,
 * `pause`, `resume`, `purge`, `limit`, `drain`, `check`. */
extern const cli_cmd_t cli_cancel;
extern const cli_cmd_t cli_retry;
extern const cli_cmd_t cli_pause;
extern const cli_cmd_t cli_resume;
extern const cli_cmd_t cli_purge;
extern const cli_cmd_t cli_limit;
extern const cli_cmd_t cli_drain;
extern const cli_cmd_t cli_check;

/* Periodic jobs the broker keeps (cli/schedule.c): `drover schedule`. */
extern const cli_cmd_t cli_schedule;

/* `drover bench`: N no-op jobs through a running broker, end to end
 * (cli/bench.c). */
extern const cli_cmd_t cli_bench;

/* `drover keys [enable KEY]` (cli/keys.c) and `drover keygen NAME`: a
 * CurveZMQ certificate pair (cli/keygen.c). */
extern const cli_cmd_t cli_keys;
extern const cli_cmd_t cli_keygen;

/* Commands that ask the collector (cli/monitor.c): `drover status` (falls
 * back to the broker's own view), `workers`, `queues`, `jobs`, `job`,
 * `result`, `watch`, `health`; the live view `drover top` (cli/top.c). */
extern const cli_cmd_t cli_status;
extern const cli_cmd_t cli_workers;
extern const cli_cmd_t cli_queues;
extern const cli_cmd_t cli_jobs;
extern const cli_cmd_t cli_job;
extern const cli_cmd_t cli_result;
extern const cli_cmd_t cli_watch;
extern const cli_cmd_t cli_health;
extern const cli_cmd_t cli_top;

#endif
