/* batch - `drover batch` (cli/batch.c): batch records through the
 * broker's batch.* verbs, and the calls `drover submit --batch NAME
 * --on-complete TYPE` makes around its submit. */
#ifndef CLI_BATCH_H
#define CLI_BATCH_H

#include "cli_cmd.h"
#include "drover.h"

/* `drover batch open|add|close|show|jobs|forget NAME`. */
extern const cli_cmd_t cli_batch;

/* Opens batch name on d with the callback types (complete, success,
 * failure; NULL: none) in queue. Returns 0, or the exit code after saying
 * why. */
int batch_open(const cli_t *c, drover_client_t *d, const char *name,
               const char *const types[3], const char *queue);

/* Closes it. Returns 0 or the exit code after saying why. */
int batch_close(const cli_t *c, drover_client_t *d, const char *name);

#endif
