/* drover - one executable, one subcommand per component. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cli.h"
#include "collector.h"
#include "dv_curve_client.h"
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
    { "keys", keys_main,
      "fleet API keys: limits, cooldowns, health; enable a key" },
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

/* Commands that talk to the broker's clients socket: they also take the
 * CurveZMQ options after their name. status and job ask the collector
 * first, and keys falls back to it (an older broker), so they take
 * --collector-curve-server too. */
static const char *const s_broker_commands[] = {
    "submit", "cancel", "status", "job",   "retry", "pause", "resume",
    "purge",  "limit",  "drain",  "check", "keys",  NULL,
};

/* Commands that ask only the collector: after their name, --curve-server
 * is the collector's certificate (the one server they talk to). */
static const char *const s_collector_commands[] = {
    "workers", "queues", "jobs", "watch", "health", "top", NULL,
};

typedef struct {
    const char *flag, *env;
} s_curve_opt_t;

/* Before the command, and after a broker command. */
static const s_curve_opt_t s_broker_opts[] = {
    { "--curve-secret", DV_CURVE_ENV_SECRET },
    { "--curve-server", DV_CURVE_ENV_SERVER },
    { "--collector-curve-server", DV_CURVE_ENV_COLLECTOR_SERVER },
    { NULL, NULL },
};

/* After a collector command. */
static const s_curve_opt_t s_collector_opts[] = {
    { "--curve-secret", DV_CURVE_ENV_SECRET },
    { "--curve-server", DV_CURVE_ENV_COLLECTOR_SERVER },
    { "--collector-curve-server", DV_CURVE_ENV_COLLECTOR_SERVER },
    { NULL, NULL },
};

/* If argv[i] is one of opts' flags (with its value next or after '='),
 * exports the value as the variable libdrover and the collector queries
 * read (a flag beats the environment), removes it from argv and returns 1;
 * 0 if it is another argument; -1 when the value is missing. */
static int
s_take_curve(const s_curve_opt_t *opts, int *argc, char **argv, int i)
{
    for (size_t k = 0; opts[k].flag; k++) {
        size_t n = strlen(opts[k].flag);
        if (strncmp(argv[i], opts[k].flag, n) != 0 ||
            (argv[i][n] != '\0' && argv[i][n] != '='))
            continue;
        int used = argv[i][n] == '=' ? 1 : 2;
        const char *v = used == 1 ? argv[i] + n + 1 : argv[i + 1];
        if (!v || (used == 2 && i + 1 >= *argc)) {
            fprintf(stderr, "drover: %s needs a FILE\n", opts[k].flag);
            return -1;
        }
        setenv(opts[k].env, v, 1);
        memmove(argv + i, argv + i + used,
                (size_t)(*argc - i - used + 1) * sizeof *argv);
        *argc -= used;
        return 1;
    }
    return 0;
}

static bool
s_listed(const char *const *list, const char *cmd)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(cmd, list[i]))
            return true;
    return false;
}

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
    fprintf(out,
            "\n'drover COMMAND --help' describes each command.\n"
            "\n"
            "CurveZMQ (before the command, or after it for the commands that\n"
            "talk to a broker or a collector):\n"
            "  --curve-secret FILE   our certificate's secret file (drover\n"
            "                        keygen; mode 0600)\n"
            "  --curve-server FILE   the broker's public certificate; after\n"
            "                        workers, queues, jobs, watch, health\n"
            "                        or top: the collector's\n"
            "  --collector-curve-server FILE  the collector's public\n"
            "                        certificate (without it, collector\n"
            "                        queries are plain)\n"
            "\n"
            "Environment: DROVER_BROKER, DROVER_WORKER_ENDPOINT, "
            "DROVER_EVENTS,\nDROVER_COLLECTOR, DROVER_CURVE_SECRET, "
            "DROVER_CURVE_SERVER,\nDROVER_COLLECTOR_CURVE_SERVER.\n");
}

int
main(int argc, char **argv)
{
    /* Global options before the command. */
    int took;
    while (argc > 1 &&
           (took = s_take_curve(s_broker_opts, &argc, argv, 1)) != 0)
        if (took < 0)
            return 2;
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
    const s_curve_opt_t *opts =
        s_listed(s_broker_commands, argv[1])      ? s_broker_opts
        : s_listed(s_collector_commands, argv[1]) ? s_collector_opts
                                                  : NULL;
    if (opts)
        for (int i = 2; i < argc && strcmp(argv[i], "--");) {
            took = s_take_curve(opts, &argc, argv, i);
            if (took < 0)
                return 2;
            if (took == 0)
                i++;
        }
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (!strcmp(argv[1], s_commands[i].name))
            return s_commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "drover: unknown command '%s'\n\n", argv[1]);
    s_usage(stderr);
    return 2;
}
