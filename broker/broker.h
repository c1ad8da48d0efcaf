/* broker - the broker daemon (`drover broker`). */
#ifndef BROKER_H
#define BROKER_H

/* Runs the broker until SIGINT/SIGTERM. Returns the process exit code. */
int broker_main(int argc, char **argv);

#endif
