/* chaos_handler - the exec handler of the chaos suite (jobs of type
 * "chaos"): sleeps for the payload's milliseconds (a number, or an object
 * with "ms"), then appends one line to the log named by its argument,
 *
 *     job_id attempt worker pid start_ms end_ms
 *
 * with O_APPEND and one write(), so lines of concurrent executions never
 * mix, and prints {"by": worker, "attempt": N, "pid": P} as its result.
 * A line means the execution ran to its end; one killed before has none. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static int64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
main(int argc, char **argv)
{
    int64_t start = s_now_ms();
    /* Die with the worker child that ran us (sh may have forked us). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 2)
        return 2;
    char in[8192];
    size_t n = fread(in, 1, sizeof in - 1, stdin);
    in[n] = '\0';
    const char *p = strstr(in, "\"ms\"");
    p = p ? strchr(p, ':') + 1 : in;
    long ms = strtol(p, NULL, 10);
    if (ms < 0 || ms > 60000)
        ms = 0;
    struct timespec d = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&d, &d) != 0)
        ;
    int64_t end = s_now_ms();
    const char *id = getenv("DROVER_JOB_ID");
    const char *attempt = getenv("DROVER_ATTEMPT");
    const char *worker = getenv("DROVER_WORKER");
    char line[256];
    int len =
        snprintf(line, sizeof line, "%s %s %s %ld %" PRId64 " %" PRId64 "\n",
                 id ? id : "-", attempt ? attempt : "0", worker ? worker : "-",
                 (long)getpid(), start, end);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || write(fd, line, (size_t)len) != len)
        return 1;
    close(fd);
    printf("{\"by\":\"%s\",\"attempt\":%s,\"pid\":%ld}\n",
           worker ? worker : "-", attempt ? attempt : "0", (long)getpid());
    return 0;
}
