/* keys_view - `drover keys` text from the broker's answers, without any
 * I/O but the FILE* given (cli/keys.c asks, cli_keys_test checks). */
#ifndef KEYS_VIEW_H
#define KEYS_VIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* The table of the broker's "keys" answer ({"now", "keys": [...]}, see
 * docs/operations.md): one row per key, then a line per key whose
 * workers' key files disagree ("conflict"), then what the columns count.
 * width (columns; <= 0: 80) bounds the WORKERS column, which shows the
 * worker count and as many whole names as fit; ids longer than the KEY
 * column are cut with "...". Text from the wire is printed with control
 * characters replaced by '?'. */
void keys_view_table(FILE *out, const json_t *body, int width, bool wide);

/* The line for the broker's "keys.enable" answer ({"id", "hash", "was"}):
 * "key-2 (3fa2c0d1) enabled (was disabled)". asked names the key when the
 * answer lacks an id. */
void keys_view_enabled(FILE *out, const json_t *body, const char *asked);

/* A key's window in the table's short form, into buf (size >= 32):
 * "60s", "5m", "1h", "1.5s" (counts and durations: cli_out.h). */
const char *keys_view_window(long long ms, char *buf, size_t size);

#endif
