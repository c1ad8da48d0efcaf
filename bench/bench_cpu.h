/* bench_cpu - where a benchmark's CPU time went, per process and per
 * thread, from /proc: a sample before and one after the timed part, and
 * the difference printed as microseconds of CPU (user + system) per job.
 *
 * What is sampled: each thread of the broker (/proc/PID/task/TID/stat,
 * named by its comm and tid), each worker supervisor (all its threads),
 * their child processes (the live ones from /proc, plus what the
 * supervisor reaped: its cutime and cstime), the collector if there is
 * one, and the calling process (getrusage). Precision is the kernel's
 * clock tick (10 ms at 100 Hz) per thread or process, so runs of a few
 * seconds give a tenth of a microsecond per job at 100,000 jobs.
 */
#ifndef BENCH_CPU_H
#define BENCH_CPU_H

#include <stdio.h>
#include <sys/types.h>

typedef struct bench_cpu bench_cpu_t;

/* Takes a sample of the processes named (workers: n of them; collector 0
 * for none). Returns it (caller frees with bench_cpu_free), or NULL when
 * out of memory. */
bench_cpu_t *bench_cpu_sample(pid_t broker, const pid_t *workers, int n,
                              pid_t collector);

/* The CPU (user + system, microseconds) process pid has used so far, or
 * -1 when it cannot be read. */
double bench_cpu_process_us(pid_t pid);

/* Frees a sample; NULL-safe; sets *self_p to NULL. */
void bench_cpu_free(bench_cpu_t **self_p);

/* Prints the CPU used between the two samples, per job of jobs: each
 * broker thread, the broker, the worker supervisors, their children, the
 * collector, this process and the sum. */
void bench_cpu_print(const bench_cpu_t *before, const bench_cpu_t *after,
                     int jobs, FILE *out);

#endif
