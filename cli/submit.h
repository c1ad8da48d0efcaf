/* submit - the `drover submit` command: one job from flags, or many from a
 * JSON Lines file, optionally waiting for the results.
 *
 * Talks to the broker through libdrover; writes job ids or results on stdout
 * (or --out), messages for people on stderr. docs/producer.md describes the
 * flags, the line format and the output. */
#ifndef SUBMIT_H
#define SUBMIT_H

/* Runs `drover submit` with argv[0] == "submit". Blocks until the jobs are
 * submitted (and, with --wait, have ended). Returns the process exit code:
 * 0 all accepted (with --wait: all succeeded), 1 with --wait: some job did
 * not succeed or the wait timed out, 2 usage error, 3 broker unreachable,
 * 4 rejected input (bad line, or jobs the broker refused). Not reentrant
 * (getopt). */
int submit_main(int argc, char **argv);

#endif
