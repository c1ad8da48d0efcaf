/* drover - one executable, one subcommand per component: the command
 * table (cli/cli_cmd.h describes an entry). A command whose entry has
 * .own still parses its own argv (the daemons from the same .flags table
 * their entry has); the rest are parsed from their tables. */
#include <stddef.h>

#include "broker.h"
#include "cli.h"
#include "cli_cmd.h"
#include "collector.h"
#include "dv_daemon.h"
#include "submit.h"
#include "batch.h"
#include "worker.h"

/* The daemons parse their own argv (dv_daemon) against the tables given
 * here, so help, man page and completion list every flag they take. */
static const cli_cmd_t s_broker = {
    .name = "broker",
    .summary = "run the broker daemon",
    .about = broker_about,
    .notes = broker_notes,
    .exits = broker_exits,
    .flags = broker_flags,
    .shared = CLI_DAEMON,
    .own = broker_main,
};

static const cli_cmd_t s_worker = {
    .name = "worker",
    .summary = "run a worker supervisor and its process pool",
    .about = worker_about,
    .notes = worker_notes,
    .exits = worker_exits,
    .flags = worker_flags,
    .shared = CLI_DAEMON,
    .own = worker_main,
};

static const cli_cmd_t s_collector = {
    .name = "collector",
    .summary = "run the collector: job history, /metrics",
    .about = collector_about,
    .notes = collector_notes,
    .exits = dv_daemon_exits,
    .flags = collector_flags,
    .shared = CLI_DAEMON,
    .own = collector_main,
};

const cli_cmd_t *const cli_commands[] = {
    &s_broker,   &s_worker,     &s_collector,     &cli_submit,     &cli_up,
    &cli_cancel, &cli_status,   &cli_top,         &cli_workers,    &cli_queues,
    &cli_jobs,   &cli_job,      &cli_result,      &cli_keys,       &cli_watch,
    &cli_health, &cli_retry,    &cli_pause,       &cli_resume,     &cli_purge,
    &cli_limit,  &cli_drain,    &cli_check,       &cli_schedule,   &cli_bench,
    &cli_keygen, &cli_help_cmd, &cli_version_cmd, &cli_completion, &cli_man,
    &cli_batch,
};
const size_t cli_ncommands = sizeof cli_commands / sizeof cli_commands[0];

int
main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
