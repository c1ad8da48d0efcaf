/* drover - one executable, one subcommand per component. */
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "cli.h"
#include "collector.h"
#include "submit.h"
#include "worker.h"

typedef struct {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *help;
} s_command_t;

static const s_command_t s_commands[] = {
    { "broker", broker_main, "run the broker daemon" },
    { "worker", worker_main, "run a worker supervisor and its process pool" },
    { "collector", collector_main, "run the collector: job history, /metrics" },
    { "submit", submit_main, "submit one job, or many from JSON Lines" },
    { "up", up_main, "run broker + workers in one process tree (dev, demos)" },
    { "cancel", cancel_main, "cancel a job" },
    { "status", monitor_status_main, "one screen: workers, queues, failures" },
    { "top", top_main, "live view of workers, queues, rates and failures" },
    { "workers", workers_main, "list workers and what they run" },
    { "queues", queues_main, "list queues: depth, rates, latency" },
    { "jobs", jobs_main, "list jobs from the collector's history" },
    { "job", job_main, "one job and every attempt, with failure hints" },
    { "keys", keys_main, "API key health as the workers report it" },
    { "watch", watch_main, "follow a batch: progress bar and ETA" },
    { "health", health_main, "exit 0 healthy, 1 degraded, 2 down" },
    { "retry", retry_main, "retry a dead job, or every dead job of a queue" },
    { "pause", pause_main, "stop starting jobs of a queue" },
    { "resume", resume_main, "start jobs of a paused queue again" },
    { "purge", purge_main, "cancel every waiting job of a queue" },
    { "limit", limit_main, "set a queue's fleet-wide rate and running limits" },
    { "drain", drain_main, "tell a worker to finish its jobs and leave" },
    { "check", check_main, "does the broker's store say what its memory says" },
    { "keygen", keygen_main, "make a CurveZMQ certificate pair (security)" },
};

static void
s_usage(FILE *out)
{
    fprintf(
        out,
        "usage: drover COMMAND [OPTIONS]\n"
        "\n"
        "drover is a job queue: a broker keeps jobs durably and hands them\n"
        "to pools of worker processes, with retries, backoff and progress.\n"
        "\n"
        "commands:\n");
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        fprintf(out, "  %-9s %s\n", s_commands[i].name, s_commands[i].help);
    fprintf(out, "\n'drover COMMAND --help' describes each command.\n"
                 "Environment: DROVER_BROKER, DROVER_WORKER_ENDPOINT, "
                 "DROVER_EVENTS,\nDROVER_COLLECTOR.\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        s_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        s_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("drover 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (!strcmp(argv[1], s_commands[i].name))
            return s_commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "drover: unknown command '%s'\n\n", argv[1]);
    s_usage(stderr);
    return 2;
}
