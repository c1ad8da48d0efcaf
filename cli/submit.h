/* submit - the `drover submit` command: one job from flags and arguments,
 * or many from a JSON Lines file, optionally waiting for the results.
 *
 * Talks to the broker through libdrover; writes job ids or results on stdout
 * (or --out), messages for people on stderr; with --json one document on
 * stdout (docs/json.md). docs/producer.md describes the flags, the line
 * format and the output. */
#ifndef SUBMIT_H
#define SUBMIT_H

#include "cli_cmd.h"

/* `drover submit [TYPE [PAYLOAD]]`, an entry of the command table. Blocks
 * until the jobs are submitted (and, with --wait, have ended). Exit codes:
 * 0 all accepted (with --wait: all succeeded), 1 some refused or (with
 * --wait) some did not succeed, 2 usage error or a bad line (nothing
 * submitted), 3 broker unreachable, 6 --wait-timeout passed first. */
extern const cli_cmd_t cli_submit;

#endif
