/* drover - one executable, one subcommand per component: the command
 * table (cli/cli_cmd.h describes an entry). A command whose entry has
 * .own still parses its own argv; the rest are parsed from their tables. */
#include <stddef.h>

#include "broker.h"
#include "cli.h"
#include "cli_cmd.h"
#include "collector.h"
#include "submit.h"
#include "worker.h"

static const cli_cmd_t s_broker = {
    .name = "broker",
    .summary = "run the broker daemon",
    .own = broker_main,
};

static const cli_cmd_t s_worker = {
    .name = "worker",
    .summary = "run a worker supervisor and its process pool",
    .own = worker_main,
};

static const cli_cmd_t s_collector = {
    .name = "collector",
    .summary = "run the collector: job history, /metrics",
    .own = collector_main,
};

static const cli_cmd_t s_submit = {
    .name = "submit",
    .summary = "submit one job, or many from JSON Lines",
    .own = submit_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_up = {
    .name = "up",
    .summary = "run broker + workers in one process tree (dev, demos)",
    .own = up_main,
};

static const cli_cmd_t s_status = {
    .name = "status",
    .summary = "one screen: workers, queues, failures",
    .own = monitor_status_main,
    .shared = CLI_BROKER | CLI_COLLECTOR,
};

static const cli_cmd_t s_top = {
    .name = "top",
    .summary = "live view of workers, queues, rates and failures",
    .own = top_main,
    .shared = CLI_COLLECTOR,
};

static const cli_cmd_t s_workers = {
    .name = "workers",
    .summary = "list workers and what they run",
    .own = workers_main,
    .shared = CLI_COLLECTOR,
};

static const cli_cmd_t s_queues = {
    .name = "queues",
    .summary = "list queues: depth, rates, latency",
    .own = queues_main,
    .shared = CLI_COLLECTOR,
};

static const cli_cmd_t s_jobs = {
    .name = "jobs",
    .summary = "list jobs from the collector's history",
    .own = jobs_main,
    .shared = CLI_COLLECTOR,
};

static const cli_cmd_t s_job = {
    .name = "job",
    .summary = "one job and every attempt, with failure hints",
    .own = job_main,
    .shared = CLI_BROKER | CLI_COLLECTOR,
};

static const cli_cmd_t s_watch = {
    .name = "watch",
    .summary = "follow a batch: progress bar and ETA",
    .own = watch_main,
    .shared = CLI_COLLECTOR,
};

static const cli_cmd_t s_health = {
    .name = "health",
    .summary = "exit 0 healthy, 1 degraded, 2 down",
    .own = health_main,
    .shared = CLI_COLLECTOR,
};

const cli_cmd_t *const cli_commands[] = {
    &s_broker,       &s_worker,  &s_collector, &s_submit,     &s_up,
    &cli_cancel,     &s_status,  &s_top,       &s_workers,    &s_queues,
    &s_jobs,         &s_job,     &cli_keys,    &s_watch,      &s_health,
    &cli_retry,      &cli_pause, &cli_resume,  &cli_purge,    &cli_limit,
    &cli_drain,      &cli_check, &cli_keygen,  &cli_help_cmd, &cli_version_cmd,
    &cli_completion, &cli_man,
};
const size_t cli_ncommands = sizeof cli_commands / sizeof cli_commands[0];

int
main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
