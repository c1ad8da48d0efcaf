/* fleet_record - a plugin handler for test_fleet: every execution of a
 * job appends a line when it starts and one when it ends to the file named
 * by $FLEET_RECORD (the worker's environment, inherited by its children),
 * and sleeps in between for the payload's number of milliseconds.
 *
 *   S <job id> <attempt> <worker> <wall-clock µs>
 *   E <job id> <attempt> <worker> <wall-clock µs>
 *
 * Each line is one write(2) on an O_APPEND descriptor, so the lines of
 * several workers on one file do not mix. Without $FLEET_RECORD, or when
 * the file cannot be written, the job fails (not retried): a test must not
 * count executions it did not see.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drover_handler.h"

static long long
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
record(int fd, char what, const drover_job_info *job)
{
    char line[256];
    int n = snprintf(line, sizeof line, "%c %s %d %s %lld\n", what, job->id,
                     (int)job->attempt, job->worker, wall_us());
    if (n <= 0 || (size_t)n >= sizeof line)
        return -1;
    return write(fd, line, (size_t)n) == n ? 0 : -1;
}

static int
rec_init(const char *config_json, void **state)
{
    (void)config_json;
    const char *path = getenv("FLEET_RECORD");
    if (!path || !*path)
        return 1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return 1;
    int *p = malloc(sizeof *p);
    if (!p) {
        close(fd);
        return 1;
    }
    *p = fd;
    *state = p;
    return 0;
}

static int
rec_run(void *state, const drover_job_info *job, drover_handler_io *io)
{
    int fd = *(int *)state;
    if (record(fd, 'S', job) != 0) {
        io->fail(io, "handler", "cannot write the record", 0, 0);
        return DROVER_HANDLER_FAILED;
    }
    long ms = strtol(job->payload, NULL, 10);
    if (ms > 0) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (record(fd, 'E', job) != 0) {
        io->fail(io, "handler", "cannot write the record", 0, 0);
        return DROVER_HANDLER_FAILED;
    }
    return DROVER_HANDLER_OK;
}

static void
rec_cleanup(void *state)
{
    close(*(int *)state);
    free(state);
}

static const drover_handler_v1 rec_handler = {
    .abi_version = DROVER_HANDLER_ABI,
    .name = "fleet_record",
    .init = rec_init,
    .run = rec_run,
    .cleanup = rec_cleanup,
};

DROVER_HANDLER_EXPORT const drover_handler_v1 *
drover_handler_entry(void)
{
    return &rec_handler;
}
