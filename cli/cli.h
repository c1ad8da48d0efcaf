/* cli - subcommands implemented in cli/ itself. */
#ifndef CLI_H
#define CLI_H

/* `drover up`: broker + N workers in one process tree. */
int up_main(int argc, char **argv);

/* `drover cancel ID` and `drover status` (through the broker). */
int cancel_main(int argc, char **argv);
int status_main(int argc, char **argv);

/* Queue control through the broker: `drover retry`, `pause`, `resume`,
 * `purge`, `limit`. */
int retry_main(int argc, char **argv);
int pause_main(int argc, char **argv);
int resume_main(int argc, char **argv);
int purge_main(int argc, char **argv);
int limit_main(int argc, char **argv);
int drain_main(int argc, char **argv);

/* `drover keygen NAME`: a CurveZMQ certificate pair (cli/keygen.c). */
int keygen_main(int argc, char **argv);

/* `drover check`: the broker compares its memory with its store. */
int check_main(int argc, char **argv);

/* Commands that ask the collector (cli/monitor.c): `drover status` (falls
 * back to the broker's own view), `workers`, `queues`, `jobs`, `job`,
 * `keys`, `watch`, `health`; and the live view `drover top` (cli/top.c). */
int monitor_status_main(int argc, char **argv);
int workers_main(int argc, char **argv);
int queues_main(int argc, char **argv);
int jobs_main(int argc, char **argv);
int job_main(int argc, char **argv);
int keys_main(int argc, char **argv);
int watch_main(int argc, char **argv);
int health_main(int argc, char **argv);
int top_main(int argc, char **argv);

#endif
