/* collector - the collector daemon (`drover collector`): subscribes to one
 * or more brokers' events, keeps live state and job history, answers
 * queries on a ROUTER socket and serves /metrics and /api over HTTP. */
#ifndef COLLECTOR_H
#define COLLECTOR_H

/* Runs the collector until SIGINT/SIGTERM. Returns the process exit code:
 * 0 after a clean stop, 1 if it could not start, 2 on a usage error. */
int collector_main(int argc, char **argv);

#endif
