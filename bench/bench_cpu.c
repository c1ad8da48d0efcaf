/* bench_cpu - CPU time per process and thread from /proc; see bench_cpu.h.
 */
#include "bench_cpu.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"

#define S_MAX_CHILDREN 4096

/* What one item of a sample is. */
typedef enum {
    S_THREAD,    /* a broker thread */
    S_WORKER,    /* a worker supervisor, all its threads */
    S_REAPED,    /* what a supervisor's reaped children used */
    S_CHILD,     /* a live child of a supervisor */
    S_COLLECTOR, /* the collector */
    S_SELF,      /* this process */
} s_kind_t;

typedef struct {
    s_kind_t kind;
    int id;        /* tid or pid */
    char comm[20]; /* threads: their comm */
    double us;     /* CPU so far, microseconds */
} s_item_t;

struct bench_cpu {
    pid_t broker;
    s_item_t *items;
    int n, cap;
};

/* utime + stime (and, in *reaped, cutime + cstime) of a stat file in
 * microseconds, its comm into comm; false if it cannot be read. */
static bool
s_stat(const char *path, double *us, double *reaped, char *comm, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[1024];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open)
        return false;
    if (comm)
        snprintf(comm, size, "%.*s", (int)(close - open - 1), open + 1);
    /* After "pid (comm) ": state is field 3; utime 14, stime 15, cutime
     * 16, cstime 17. */
    unsigned long long v[4];
    if (sscanf(close + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu "
               "%llu",
               &v[0], &v[1], &v[2], &v[3]) != 4)
        return false;
    double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
    *us = (double)(v[0] + v[1]) * tick_us;
    if (reaped)
        *reaped = (double)(v[2] + v[3]) * tick_us;
    return true;
}

static void
s_add(bench_cpu_t *s, s_kind_t kind, int id, const char *comm, double us)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        s_item_t *items = realloc(s->items, (size_t)cap * sizeof *items);
        if (!items)
            return; /* the figure is then missing, not wrong */
        s->items = items;
        s->cap = cap;
    }
    s_item_t *it = &s->items[s->n++];
    it->kind = kind;
    it->id = id;
    snprintf(it->comm, sizeof it->comm, "%s", comm ? comm : "");
    it->us = us;
}

double
bench_cpu_process_us(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    double us = 0, reaped = 0;
    char comm[64];
    return s_stat(path, &us, &reaped, comm, sizeof comm) ? us : -1;
}

bench_cpu_t *
bench_cpu_sample(pid_t broker, const pid_t *workers, int n, pid_t collector)
{
    bench_cpu_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->broker = broker;
    char path[96], comm[20];
    double us, reaped;
    snprintf(path, sizeof path, "/proc/%d/task", (int)broker);
    DIR *d = broker > 0 ? opendir(path) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int tid = atoi(e->d_name);
        if (tid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)broker, tid);
        if (s_stat(path, &us, NULL, comm, sizeof comm))
            s_add(s, S_THREAD, tid, comm, us);
    }
    if (d)
        closedir(d);
    pid_t *kids = malloc(S_MAX_CHILDREN * sizeof *kids);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/proc/%d/stat", (int)workers[i]);
        if (!s_stat(path, &us, &reaped, NULL, 0))
            continue;
        s_add(s, S_WORKER, workers[i], NULL, us);
        s_add(s, S_REAPED, workers[i], NULL, reaped);
        int k = kids ? harness_children(workers[i], kids, S_MAX_CHILDREN) : 0;
        for (int j = 0; j < k; j++) {
            snprintf(path, sizeof path, "/proc/%d/stat", (int)kids[j]);
            if (s_stat(path, &us, NULL, NULL, 0))
                s_add(s, S_CHILD, kids[j], NULL, us);
        }
    }
    free(kids);
    snprintf(path, sizeof path, "/proc/%d/stat", (int)collector);
    if (collector > 0 && s_stat(path, &us, NULL, NULL, 0))
        s_add(s, S_COLLECTOR, collector, NULL, us);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s_add(s, S_SELF, 0, NULL,
          (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
              (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec));
    return s;
}

void
bench_cpu_free(bench_cpu_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->items);
    free(*self_p);
    *self_p = NULL;
}

/* What item it of after used since before (all of it if before has no
 * such item: it started in between). */
static double
s_delta(const bench_cpu_t *before, const s_item_t *it)
{
    for (int i = 0; i < before->n; i++)
        if (before->items[i].kind == it->kind && before->items[i].id == it->id)
            return it->us - before->items[i].us;
    return it->us;
}

/* The sum over after's items of one kind since before; their count in
 * *count when not NULL. */
static double
s_sum(const bench_cpu_t *before, const bench_cpu_t *after, s_kind_t kind,
      int *count)
{
    double sum = 0;
    int k = 0;
    for (int i = 0; i < after->n; i++)
        if (after->items[i].kind == kind) {
            sum += s_delta(before, &after->items[i]);
            k++;
        }
    if (count)
        *count = k;
    return sum;
}

/* One line of the table: a label and microseconds per job. */
static void s_line(FILE *out, double us, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_line(FILE *out, double us, const char *fmt, ...)
{
    char label[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(label, sizeof label, fmt, ap);
    va_end(ap);
    fprintf(out, "  %-54s %8.1f\n", label, us);
}

/* What a broker thread is, from its comm and the order the broker starts
 * its own threads in (broker_core.c: the loop is the main thread, then
 * the store writer, then the store reader; ZeroMQ names its own). */
static const char *
s_role(const bench_cpu_t *s, const s_item_t *it)
{
    if (it->id == (int)s->broker)
        return " (main: the loop)";
    if (strcmp(it->comm, "drover") != 0)
        return strncmp(it->comm, "ZMQbg/IO", 8) ? "" : " (ZeroMQ I/O)";
    int order = 0; /* drover threads before it, the main one aside */
    for (int i = 0; i < s->n; i++)
        if (s->items[i].kind == S_THREAD && s->items[i].id < it->id &&
            s->items[i].id != (int)s->broker &&
            !strcmp(s->items[i].comm, "drover"))
            order++;
    return order == 0   ? " (1st started: the store writer)"
           : order == 1 ? " (2nd started: the store reader)"
                        : "";
}

void
bench_cpu_print(const bench_cpu_t *before, const bench_cpu_t *after, int jobs,
                FILE *out)
{
    if (!before || !after || jobs < 1)
        return;
    double per = 1.0 / jobs;
    int nthreads, nworkers, nkids, ncoll;
    double broker = s_sum(before, after, S_THREAD, &nthreads);
    double workers = s_sum(before, after, S_WORKER, &nworkers);
    double kids = s_sum(before, after, S_CHILD, &nkids) +
                  s_sum(before, after, S_REAPED, NULL);
    double coll = s_sum(before, after, S_COLLECTOR, &ncoll);
    double self = s_sum(before, after, S_SELF, NULL);
    fprintf(out, "cpu per job (us of CPU, user + system, during the run):\n");
    s_line(out, broker * per, "broker (%d threads)", nthreads);
    for (int i = 0; i < after->n; i++) {
        const s_item_t *it = &after->items[i];
        if (it->kind == S_THREAD)
            s_line(out, s_delta(before, it) * per, "  %s, tid %d%s", it->comm,
                   it->id, s_role(after, it));
    }
    s_line(out, workers * per, "worker supervisor%s (%d)",
           nworkers == 1 ? "" : "s", nworkers);
    s_line(out, kids * per, "their children (%d)", nkids);
    if (ncoll)
        s_line(out, coll * per, "collector");
    s_line(out, self * per, "client (this process)");
    s_line(out, (broker + workers + kids + coll + self) * per, "all");
}
