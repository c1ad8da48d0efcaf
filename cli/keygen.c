/* `drover keygen NAME [--dir DIR]`: a CurveZMQ certificate pair for a
 * broker, a worker, a client, an operator or an observer (docs/security.md).
 * Writes DIR/NAME.key (public: copy it into the broker's allow-list of the
 * role) and DIR/NAME.key_secret (secret, mode 0600: it stays on the host
 * that uses it). Never overwrites a pair. One-shot; blocks on file I/O. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_cmd.h"
#include "dv_curve.h"

static struct {
    const char *dir;
} s_o;

static const dv_flag_t s_flags[] = {
    DV_FLAG_STR("dir", &s_o.dir, .arg = "DIR", .dflt = ".",
                .complete = DV_COMPLETE_DIR,
                .help = "the directory to write the pair into"),
    DV_FLAG_TABLE_END,
};

static int
s_keygen(cli_t *c, int argc, char **argv)
{
    (void)argc;
    const char *name = argv[0], *dir = s_o.dir && *s_o.dir ? s_o.dir : ".";
    char err[512];
    if (dv_curve_keygen(dir, name, err, sizeof err) != 0)
        return cli_fail(c, CLI_FAILED, NULL, "%s", err);
    char pub[4096], sec[4096];
    snprintf(pub, sizeof pub, "%s/%s.key", dir, name);
    snprintf(sec, sizeof sec, "%s/%s.key_secret", dir, name);
    if (c->json) {
        json_t *j = json_pack("{s:s, s:s, s:s}", "name", name, "public", pub,
                              "secret", sec);
        cli_print_json(j);
        json_decref(j);
    } else {
        printf("%s\n%s\n", pub, sec);
    }
    return 0;
}

const cli_cmd_t cli_keygen = {
    .name = "keygen",
    .summary = "make a CurveZMQ certificate pair (security)",
    .args = "NAME",
    .min_args = 1,
    .max_args = 1,
    .about = "Makes a CurveZMQ certificate pair named NAME: DIR/NAME.key, "
             "public (copy it into the broker's allow-list directory of the "
             "role NAME will have), and DIR/NAME.key_secret, secret, mode "
             "0600 (keep it on the host that uses it: --curve-secret). "
             "Prints the two paths.\n\n"
             "A worker's certificate must be named after the worker (its "
             "--name). An existing pair is never overwritten (exit 1). See "
             "docs/security.md.\n\n"
             "--json prints {\"name\", \"public\", \"secret\"}: the "
             "files written.",
    .examples = "  drover keygen broker --dir /etc/drover/keys\n"
                "  drover keygen host1-default\n",
    .flags = s_flags,
    .shared = CLI_JSON,
    .run = s_keygen,
};
