/* handler_exec - runs a job as an external command, in a worker child.
 *
 * The contract with the command (docs/handlers.md says it for users):
 *   - it runs as `/bin/sh -c COMMAND`, in the child's process group, so the
 *     supervisor's kill(-pgid) reaches it and whatever it spawns;
 *   - stdin: the payload as one line of JSON;
 *   - stdout: the result, at most HANDLER_EXEC_OUT_MAX bytes; if the
 *     trimmed text parses as JSON it is that value, else it is the text;
 *   - exit 0: success; 75 (EX_TEMPFAIL): retryable failure; other codes: a
 *     failure not worth retrying; killed by a signal: "crashed";
 *   - stderr: the last non-empty line (of the last 8 KiB) is the failure
 *     message; if the command fails, those last 8 KiB go with the failure
 *     (its stderr tail);
 *   - the file descriptor named by DROVER_PROGRESS_FD takes lines
 *     "PROGRESS current total message...", and optional hints used only
 *     if the command then fails: "RETRY_AFTER seconds", "CATEGORY name"
 *     (e.g. rate_limited), "RETRYABLE yes|no" (instead of the exit
 *     status's say) and "MESSAGE text" (the failure's message, instead of
 *     stderr's last line); the last of each kind counts; "DETAIL text"
 *     lines each add one line to the failure's details (a traceback), of
 *     which the last 8 KiB are kept;
 *   - environment: DROVER_JOB_ID, DROVER_ATTEMPT, DROVER_QUEUE,
 *     DROVER_JOB_TYPE, DROVER_WORKER, DROVER_PROGRESS_FD, and TRACEPARENT
 *     when the job has a trace.
 */
#ifndef HANDLER_EXEC_H
#define HANDLER_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_proto.h"
#include "worker_handler.h"

#define HANDLER_EXEC_OUT_MAX  (1u << 20)     /* stdout cap */
#define HANDLER_EXEC_ERR_TAIL DV_DETAILS_MAX /* stderr bytes kept */
#define HANDLER_EXEC_LINE_MAX 8192           /* longest progress line */

/* Runs the command to completion (blocks the calling child; the
 * supervisor enforces timeouts by killing the process group). Fills out,
 * which the caller clears (worker_outcome_clear). Never fails as such: a
 * command that cannot be started is a failed outcome. */
void handler_exec_run(const char *command, const worker_handler_job_t *job,
                      worker_progress_fn progress, void *arg,
                      worker_outcome_t *out);

/* The command as a handler (worker_handler.h): slow, and it hears SIGTERM
 * itself. A command that dies of SIGUSR1 after the soft timeout has
 * failed "timeout". command must outlive the handler. */
worker_handler_t handler_exec_handler(const char *command);

/* Parses one progress line (without its newline): "PROGRESS current total
 * message...", current and total whole numbers >= 0, the message optional.
 * Returns 0 and the fields (msg points into line), or -1 if malformed. */
int handler_exec_parse_progress(const char *line, size_t len, int64_t *current,
                                int64_t *total, const char **msg,
                                size_t *msg_len);

/* Turns a command's stdout into a result value (msgpack, caller frees,
 * *rlen bytes): the trimmed text as JSON if it parses, else the text
 * without trailing whitespace as a string (bin if it is not UTF-8); empty
 * output is nil. Returns NULL only when out of memory. */
char *handler_exec_result(const char *out, size_t len, size_t *rlen);

/* Finds the last non-empty line in buf (whitespace-trimmed). Returns its
 * length and sets *line, or 0 if there is none. */
size_t handler_exec_last_line(const char *buf, size_t len, const char **line);

#endif
