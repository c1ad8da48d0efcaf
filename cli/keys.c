/* `drover keys` and `drover keys enable KEY`: the fleet's API keys as the
 * broker holds them (budget per window, cooldown, disabled, learned
 * limit), through its "keys" and "keys.enable" ctrl verbs. A broker that
 * does not serve "keys" (one older than fleet-wide keys) answers
 * unknown_verb; then the collector's view, from the workers' heartbeats,
 * is shown instead. The text comes from cli/keys_view.c. */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "cli_cmd.h"
#include "drover.h"
#include "keys_view.h"
#include "monitor.h"

#define S_TIMEOUT_MS 3000

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

/* Sends verb (with key id) to the broker. On success returns 0 with *body
 * the answer (an empty object when it has none). Else returns the exit
 * code after saying why, except for a broker that does not know the verb:
 * -1, quietly. */
static int
s_ask(const cli_t *c, const char *verb, const char *id, json_t **body)
{
    *body = NULL;
    drover_client_t *d = drover_connect(c->broker, S_TIMEOUT_MS);
    if (!d)
        return cli_fail(c, CLI_USAGE, NULL, "%s", drover_last_error(NULL));
    /* The key goes in args: a ctrl's id is a job's. */
    json_t *args = id ? json_pack("{s:s}", "key", id) : NULL;
    char *args_text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    drover_ctrl_t req = { .verb = verb, .args_json = args_text };
    char *text = NULL;
    int rc = id && !args_text ? DROVER_ENOMEM : drover_ctrl_ex(d, &req, &text);
    free(args_text);
    int code = 0;
    const char *why = drover_last_code(d);
    cli_exit_t e = cli_exit_of(rc, why);
    if (rc == DROVER_EREJECTED && why && !strcmp(why, "unknown_verb")) {
        code = -1;
    } else if (e == CLI_NOT_FOUND) {
        code = cli_fail(c, e, why,
                        "the broker knows no key '%s' ('drover keys' lists "
                        "them by id and hash)",
                        id ? id : "");
    } else if (rc != DROVER_OK) {
        code = cli_fail(c, e, e == CLI_UNREACHABLE ? NULL : why, "%s",
                        drover_last_error(d));
    } else {
        json_error_t err;
        *body = text ? json_loads(text, 0, &err) : json_object();
        if (!json_is_object(*body)) {
            code =
                cli_fail(c, CLI_FAILED, "unreadable", "unreadable answer: %s",
                         *body ? "not an object" : err.text);
            json_decref(*body);
            *body = NULL;
        }
    }
    free(text);
    drover_close(&d);
    return code;
}

static int
s_list(const cli_t *c)
{
    json_t *body;
    int code = s_ask(c, "keys", NULL, &body);
    if (code < 0)
        return monitor_keys(c->collector, c->json,
                            "the broker does not serve `keys` (it is older "
                            "than fleet-wide keys): this is the workers' own "
                            "view, from the collector");
    if (code)
        return code;
    if (c->json)
        cli_print_json(body);
    else
        keys_view_table(stdout, body, s_width(), c->wide);
    json_decref(body);
    return 0;
}

static int
s_enable(const cli_t *c, const char *key)
{
    json_t *body;
    int code = s_ask(c, "keys.enable", key, &body);
    if (code < 0)
        return cli_fail(c, CLI_FAILED, "unknown_verb",
                        "the broker does not serve `keys.enable` (it is "
                        "older than fleet-wide keys); a worker re-reads its "
                        "keys when it restarts");
    if (code)
        return code;
    if (c->json)
        cli_print_json(body);
    else
        keys_view_enabled(stdout, body, key);
    json_decref(body);
    return 0;
}

static int
s_keys(cli_t *c, int argc, char **argv)
{
    if (argc == 0)
        return s_list(c);
    if (strcmp(argv[0], "enable") != 0)
        return cli_usage(c, NULL,
                         "unexpected argument '%s' (did you mean "
                         "'keys enable KEY'?)",
                         argv[0]);
    if (argc != 2 || !argv[1][0])
        return cli_usage(c, NULL,
                         "keys enable needs a KEY (its id or hash, "
                         "as 'drover keys' shows them)");
    return s_enable(c, argv[1]);
}

const cli_cmd_t cli_keys = {
    .name = "keys",
    .summary = "fleet API keys: limits, cooldowns, health; enable a key",
    .args = "[enable KEY]",
    .max_args = 2,
    .about =
        "The fleet's API keys as the broker holds them, one row per key: "
        "KEY and HASH (its id and the first 8 hex digits of its SHA-256; "
        "the key itself is never shown); STATE (ok; unproven: no 2xx or "
        "429 yet, one request at a time; cooling, with the cooldown left; "
        "disabled, with the 401/403 that disabled it); LIMIT (the working "
        "limit per window, \"learned\" when 429s taught the broker a lower "
        "one than the key file's rpm); REQS, TOKENS and SHARE (requests "
        "and tokens in the last window, and the key's share of all keys' "
        "requests in it); 429s and ERRORS (since the broker started); "
        "WORKERS (how many workers use it, and their names if they fit). "
        "A line under the table names keys whose workers' key files "
        "disagree (rpm, tpm or window).\n\n"
        "'keys enable KEY' enables KEY (its id or its hash) at the broker: "
        "a disabled key (after a 401/403) or a cooling one is usable again "
        "at once, fleet-wide, with its unproven one-at-a-time start. An id "
        "two keys share is refused: give the hash.\n\n"
        "A broker older than fleet-wide keys does not know the verb: then "
        "the collector's view is shown, as the workers report their keys, "
        "with a note saying so.\n\n"
        "--json prints the broker's answer: {\"now\", \"keys\": [...]} "
        "(docs/keys.md), and for 'keys enable' {\"id\", \"hash\", "
        "\"was\"}. Exit 4 when the broker knows no such key.",
    .examples = "  drover keys\n"
                "  drover keys enable key-2\n"
                "  drover keys --json | jq '.keys[] | select(.state != "
                "\"ok\")'\n",
    .shared = CLI_BROKER | CLI_COLLECTOR | CLI_JSON | CLI_WIDE,
    .run = s_keys,
};
