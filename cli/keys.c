/* `drover keys` and `drover keys enable KEY`: the fleet's API keys as the
 * broker holds them (budget per window, cooldown, disabled, learned
 * limit), through its "keys" and "keys.enable" ctrl verbs. A broker that
 * does not serve "keys" (one older than fleet-wide keys) answers
 * unknown_verb; then the collector's view, from the workers' heartbeats,
 * is shown instead. The text comes from cli/keys_view.c. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "drover.h"
#include "keys_view.h"
#include "monitor.h"

#define S_EXIT_UNREACHABLE 3
#define S_TIMEOUT_MS       3000

static const char s_usage[] =
    "usage: drover keys [--broker EP] [--collector EP] [--json]\n"
    "       drover keys enable KEY [--broker EP] [--json]\n"
    "\n"
    "The fleet's API keys as the broker holds them, one row per key:\n"
    "  KEY, HASH  its id and the first 8 hex digits of its SHA-256 (the\n"
    "             key itself is never shown)\n"
    "  STATE      ok; unproven (no 2xx or 429 yet: one request at a time);\n"
    "             cooling, with the cooldown left; disabled, with the\n"
    "             401/403 that disabled it\n"
    "  LIMIT      the working limit per window; \"learned\" when 429s taught\n"
    "             the broker a lower one than the key file's rpm\n"
    "  REQS, TOKENS, SHARE  requests and tokens in the last window, and the\n"
    "             key's share of all keys' requests in it\n"
    "  429s, ERRORS  since the broker started\n"
    "  WORKERS    how many workers use it, and their names if they fit\n"
    "A line under the table names keys whose workers' key files disagree\n"
    "(rpm, tpm or window). --json prints the broker's answer as one object.\n"
    "\n"
    "A broker older than fleet-wide keys does not know the verb: then the\n"
    "collector's view (--collector EP, DROVER_COLLECTOR) is shown, as the\n"
    "workers report their keys, with a note saying so.\n"
    "\n"
    "Exit 0; 1 the broker (or collector) refused or answered something\n"
    "unreadable; 2 usage; 3 unreachable.\n"
    "\n"
    "`drover keys enable --help` tells about enabling a key.\n";

static const char s_enable_usage[] =
    "usage: drover keys enable KEY [--broker EP] [--json]\n"
    "\n"
    "Enables KEY (its id or its hash, as `drover keys` shows them) at the\n"
    "broker: a disabled key (after a 401/403) or a cooling one is usable\n"
    "again at once, fleet-wide, with its unproven one-at-a-time start.\n"
    "Prints \"ID (HASH) enabled (was STATE)\"; --json prints the broker's\n"
    "answer. An id two keys share is refused: give the hash.\n"
    "\n"
    "Exit 0; 1 no such key, or refused; 2 usage; 3 the broker is\n"
    "unreachable.\n";

/* The terminal's width when stdout is one, else $COLUMNS, else 80. */
static int
s_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
        ws.ws_col > 0)
        return ws.ws_col;
    const char *env = getenv("COLUMNS");
    int cols = env ? atoi(env) : 0;
    return cols > 0 ? cols : 80;
}

/* Sends verb (with id) to the broker. On success returns 0 with *body the
 * answer (an empty object when it has none). Else returns the exit code
 * after saying why, except for a broker that does not know the verb:
 * -1, quietly. */
static int
s_ask(const char *broker, const char *cmd, const char *verb, const char *id,
      json_t **body)
{
    *body = NULL;
    drover_client_t *c = drover_connect(broker, S_TIMEOUT_MS);
    if (!c) {
        fprintf(stderr, "drover %s: %s\n", cmd, drover_last_error(NULL));
        return 2;
    }
    /* The key goes in args: a ctrl's id is a job's. */
    json_t *args = id ? json_pack("{s:s}", "key", id) : NULL;
    char *args_text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    drover_ctrl_t req = { .verb = verb, .args_json = args_text };
    char *text = NULL;
    int rc = id && !args_text ? DROVER_ENOMEM : drover_ctrl_ex(c, &req, &text);
    free(args_text);
    int code = 0;
    const char *why = drover_last_code(c);
    if (rc == DROVER_EREJECTED && why && !strcmp(why, "unknown_verb")) {
        code = -1;
    } else if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT) {
        fprintf(stderr, "drover %s: %s\n", cmd, drover_last_error(c));
        code = S_EXIT_UNREACHABLE;
    } else if (rc == DROVER_EREJECTED && why && !strcmp(why, "not_found")) {
        fprintf(stderr,
                "drover %s: the broker knows no key '%s' (`drover keys` "
                "lists them by id and hash)\n",
                cmd, id ? id : "");
        code = 1;
    } else if (rc != DROVER_OK) {
        fprintf(stderr, "drover %s: %s\n", cmd, drover_last_error(c));
        code = 1;
    } else {
        json_error_t err;
        *body = text ? json_loads(text, 0, &err) : json_object();
        if (!json_is_object(*body)) {
            fprintf(stderr, "drover %s: unreadable answer: %s\n", cmd,
                    *body ? "not an object" : err.text);
            json_decref(*body);
            *body = NULL;
            code = 1;
        }
    }
    free(text);
    drover_close(&c);
    return code;
}

static int
s_list(const char *broker, const char *collector, bool json)
{
    json_t *body;
    int code = s_ask(broker, "keys", "keys", NULL, &body);
    if (code < 0)
        return monitor_keys(collector, json,
                            "the broker does not serve `keys` (it is older "
                            "than fleet-wide keys): this is the workers' own "
                            "view, from the collector");
    if (code)
        return code;
    if (json)
        keys_view_json(stdout, body);
    else
        keys_view_table(stdout, body, s_width());
    json_decref(body);
    return 0;
}

static int
s_enable(const char *broker, const char *key, bool json)
{
    json_t *body;
    int code = s_ask(broker, "keys enable", "keys.enable", key, &body);
    if (code < 0) {
        fprintf(stderr, "drover keys enable: the broker does not serve "
                        "`keys.enable` (it is older than fleet-wide keys); a "
                        "worker re-reads its keys when it restarts\n");
        return 1;
    }
    if (code)
        return code;
    if (json)
        keys_view_json(stdout, body);
    else
        keys_view_enabled(stdout, body, key);
    json_decref(body);
    return 0;
}

int
keys_main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "broker", required_argument, 0, 'b' },
        { "collector", required_argument, 0, 'c' },
        { "json", no_argument, 0, 'j' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    bool enable = false;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "enable"))
            enable = true;
    const char *usage = enable ? s_enable_usage : s_usage;
    const char *broker = NULL, *collector = NULL;
    bool json = false;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            broker = optarg;
            break;
        case 'c':
            collector = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    int nargs = argc - optind;
    if (nargs == 0 && !enable)
        return s_list(broker, collector, json);
    if (nargs == 2 && !strcmp(argv[optind], "enable") && !collector &&
        argv[optind + 1][0])
        return s_enable(broker, argv[optind + 1], json);
    fputs(usage, stderr);
    return 2;
}
