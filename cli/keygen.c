/* `drover keygen NAME [--dir DIR]`: a CurveZMQ certificate pair for a
 * broker, a worker, a client, an operator or an observer (docs/security.md).
 * Writes DIR/NAME.key (public: copy it into the broker's allow-list of the
 * role) and DIR/NAME.key_secret (secret, mode 0600: it stays on the host
 * that uses it). Never overwrites a pair. One-shot; blocks on file I/O. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dv_curve.h"

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: drover keygen NAME [--dir DIR]\n"
            "\n"
            "Makes a CurveZMQ certificate pair named NAME:\n"
            "  DIR/NAME.key         public: copy it into the broker's "
            "allow-list\n"
            "                       directory of the role NAME will have\n"
            "  DIR/NAME.key_secret  secret, mode 0600: keep it on the host "
            "that\n"
            "                       uses it (--curve-secret)\n"
            "\n"
            "  --dir DIR   where to write them (.)\n"
            "  -h, --help\n"
            "\n"
            "A worker's certificate must be named after the worker (its "
            "--name).\n"
            "An existing pair is never overwritten. See docs/security.md.\n");
}

int
keygen_main(int argc, char **argv)
{
    const char *name = NULL, *dir = ".";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strncmp(a, "--dir=", 6)) {
            dir = a + 6;
        } else if (a[0] != '-' && !name) {
            name = a;
        } else {
            fprintf(stderr,
                    "drover keygen: unexpected '%s' (see drover "
                    "keygen --help)\n",
                    a);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "drover keygen: needs a NAME (see drover keygen "
                        "--help)\n");
        return 2;
    }
    char err[512];
    if (dv_curve_keygen(dir, name, err, sizeof err) != 0) {
        fprintf(stderr, "drover keygen: %s\n", err);
        return 1;
    }
    printf("%s/%s.key\n%s/%s.key_secret\n", dir, name, dir, name);
    return 0;
}
