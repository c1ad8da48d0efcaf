/* worker - the worker daemon (`drover worker`): a supervisor that talks to
 * the broker and a prefork pool of child processes that run handlers. */
#ifndef WORKER_H
#define WORKER_H

/* Runs the worker until drained or killed. Returns the process exit code. */
int worker_main(int argc, char **argv);

#endif
