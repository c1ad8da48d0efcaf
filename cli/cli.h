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

#endif
