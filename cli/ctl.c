/* Control verbs that go through the broker: `drover cancel`, `drover
 * status`. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "drover.h"
#include "dv_util.h"

#define CLI_EXIT_UNREACHABLE 3

static int
s_parse(int argc, char **argv, const char *usage, const char **broker,
        int *json)
{
    static const struct option opts[] = {
        { "broker", required_argument, 0, 'b' },
        { "json", no_argument, 0, 'j' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': *broker = optarg; break;
        case 'j': *json = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    return -1;
}

static int
s_fail(drover_client_t *c, const char *what, int rc)
{
    fprintf(stderr, "drover %s: %s\n", what,
            c ? drover_last_error(c) : drover_strerror(rc));
    return rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT
               ? CLI_EXIT_UNREACHABLE
               : 1;
}

int
cancel_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover cancel [--broker EP] JOB_ID...\n"
        "\n"
        "Cancels jobs: queued or scheduled ones never run; a running one is\n"
        "stopped on its worker. Exit 0 when every job was cancelled, 1 when\n"
        "any could not be (already ended, unknown), 3 if the broker is\n"
        "unreachable.\n";
    const char *broker = NULL;
    int json = 0;
    int r = s_parse(argc, argv, usage, &broker, &json);
    if (r >= 0)
        return r;
    if (optind >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    drover_client_t *c = drover_connect(broker, 5000);
    if (!c)
        return s_fail(NULL, "cancel", DROVER_EUNREACHABLE);
    int exit_code = 0;
    for (int i = optind; i < argc; i++) {
        int rc = drover_cancel(c, argv[i]);
        if (rc == DROVER_OK) {
            printf("%s cancelled\n", argv[i]);
        } else if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT) {
            exit_code = s_fail(c, "cancel", rc);
            break;
        } else {
            fprintf(stderr, "drover cancel: %s: %s\n", argv[i], drover_last_error(c));
            exit_code = 1;
        }
    }
    drover_close(&c);
    return exit_code;
}

int
status_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover status [--broker EP] [--json]\n"
        "\n"
        "Shows the broker's queues (queued, scheduled, running), its workers\n"
        "and counters. Exit 3 if the broker is unreachable.\n";
    const char *broker = NULL;
    int json = 0;
    int r = s_parse(argc, argv, usage, &broker, &json);
    if (r >= 0)
        return r;
    drover_client_t *c = drover_connect(broker, 3000);
    char *body = NULL;
    int rc = c ? drover_ctrl(c, "status", NULL, NULL, &body) : DROVER_EUNREACHABLE;
    if (rc != DROVER_OK) {
        int code = s_fail(c, "status", rc);
        drover_close(&c);
        return code;
    }
    drover_close(&c);
    if (json) {
        printf("%s\n", body);
        free(body);
        return 0;
    }
    json_error_t err;
    json_t *st = json_loads(body, 0, &err);
    free(body);
    if (!st) {
        fprintf(stderr, "drover status: unreadable answer: %s\n", err.text);
        return 1;
    }
    json_t *counters = json_object_get(st, "counters");
    printf("broker %s  store %s  up %llds\n",
           json_string_value(json_object_get(st, "broker")),
           json_string_value(json_object_get(st, "store")),
           (long long)json_integer_value(json_object_get(st, "uptime_ms")) / 1000);
    printf("\n%-24s %10s %10s %10s\n", "QUEUE", "QUEUED", "SCHEDULED", "RUNNING");
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(st, "queues"), i, q) {
        printf("%-24.24s %10lld %10lld %10lld%s\n",
               json_string_value(json_object_get(q, "name")),
               (long long)json_integer_value(json_object_get(q, "queued")),
               (long long)json_integer_value(json_object_get(q, "scheduled")),
               (long long)json_integer_value(json_object_get(q, "running")),
               json_is_true(json_object_get(q, "paused")) ? "  paused" : "");
    }
    printf("\n%-30s %6s %7s %10s %8s\n", "WORKER", "SLOTS", "RUNNING", "PROCESSED",
           "FAILED");
    json_t *w;
    json_array_foreach(json_object_get(st, "workers"), i, w) {
        printf("%-30.30s %6lld %7lld %10lld %8lld\n",
               json_string_value(json_object_get(w, "name")),
               (long long)json_integer_value(json_object_get(w, "concurrency")),
               (long long)json_integer_value(json_object_get(w, "running")),
               (long long)json_integer_value(json_object_get(w, "processed")),
               (long long)json_integer_value(json_object_get(w, "failed")));
    }
    printf("\nsubmitted %lld  succeeded %lld  failed attempts %lld  retried %lld  "
           "dead %lld  cancelled %lld  lost %lld\n",
           (long long)json_integer_value(json_object_get(counters, "submitted")),
           (long long)json_integer_value(json_object_get(counters, "succeeded")),
           (long long)json_integer_value(json_object_get(counters, "failed")),
           (long long)json_integer_value(json_object_get(counters, "retried")),
           (long long)json_integer_value(json_object_get(counters, "dead")),
           (long long)json_integer_value(json_object_get(counters, "cancelled")),
           (long long)json_integer_value(json_object_get(counters, "lost")));
    json_decref(st);
    return 0;
}
