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

static const cli_cmd_t s_cancel = {
    .name = "cancel",
    .summary = "cancel a job",
    .own = cancel_main,
    .shared = CLI_BROKER,
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

static const cli_cmd_t s_keys = {
    .name = "keys",
    .summary = "fleet API keys: limits, cooldowns, health; enable a key",
    .own = keys_main,
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

static const cli_cmd_t s_retry = {
    .name = "retry",
    .summary = "retry a dead job, or every dead job of a queue",
    .own = retry_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_pause = {
    .name = "pause",
    .summary = "stop starting jobs of a queue",
    .own = pause_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_resume = {
    .name = "resume",
    .summary = "start jobs of a paused queue again",
    .own = resume_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_purge = {
    .name = "purge",
    .summary = "cancel every waiting job of a queue",
    .own = purge_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_limit = {
    .name = "limit",
    .summary = "set a queue's fleet-wide rate and running limits",
    .own = limit_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_drain = {
    .name = "drain",
    .summary = "tell a worker to finish its jobs and leave",
    .own = drain_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_check = {
    .name = "check",
    .summary = "does the broker's store say what its memory says",
    .own = check_main,
    .shared = CLI_BROKER,
};

static const cli_cmd_t s_keygen = {
    .name = "keygen",
    .summary = "make a CurveZMQ certificate pair (security)",
    .own = keygen_main,
};

const cli_cmd_t *const cli_commands[] = {
    &s_broker,       &s_worker, &s_collector, &s_submit,     &s_up,
    &s_cancel,       &s_status, &s_top,       &s_workers,    &s_queues,
    &s_jobs,         &s_job,    &s_keys,      &s_watch,      &s_health,
    &s_retry,        &s_pause,  &s_resume,    &s_purge,      &s_limit,
    &s_drain,        &s_check,  &s_keygen,    &cli_help_cmd, &cli_version_cmd,
    &cli_completion, &cli_man,
};
const size_t cli_ncommands = sizeof cli_commands / sizeof cli_commands[0];

int
main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
