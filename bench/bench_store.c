/* bench_store - how fast the store takes the broker's writes.
 *
 *   bench_store [-n JOBS] [-p PAYLOAD_BYTES] [-d DIR] [-k] [-u URL] [-s]
 *
 * Inserts JOBS jobs (default 200,000, 100-byte payloads) in groups of 1, 100
 * and 1000 rows per transaction, with synchronous=FULL and NORMAL, then
 * leases and finishes every job (mark_running + mark_finished) in groups of
 * 1000 jobs. One line per configuration on stdout.
 *
 * -s measures only the broker's steady state instead, with
 * synchronous=FULL: each transaction inserts 1000 new jobs and finishes
 * (lease folded in) the 1000 inserted 50,000 jobs before, as a broker
 * with a deep queue writes them. It prints the CPU time per job too, the
 * figure that counts against the broker's budget (the wall time includes
 * the fsyncs).
 *
 * Each configuration starts from a new database file in DIR (default: a new
 * directory under the current one, not /tmp, which may be tmpfs where fsync
 * costs nothing and FULL would look as fast as OFF). -k keeps the files.
 *
 * -u URL measures the PostgreSQL store at URL instead (postgresql://...):
 * a database drover may empty, since its jobs and attempts tables are
 * truncated before each configuration. NORMAL and FULL are the same there
 * (synchronous_commit stays the server's).
 */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "broker_store.h"
#include "dv_clock.h"
#include "dv_id.h"

typedef struct {
    int jobs;           /* jobs per configuration */
    size_t payload_len; /* bytes per payload */
    char dir[1024];     /* where the database files go */
    bool keep;          /* keep the files afterwards */
    const char *url;    /* PostgreSQL store to measure, or NULL */
    char (*ids)[37];    /* jobs ids, made before timing starts */
    unsigned char *payload;
} s_bench_t;

static const char *
s_sync_name(broker_sync_t sync)
{
    return sync == BROKER_SYNC_FULL     ? "full"
           : sync == BROKER_SYNC_NORMAL ? "normal"
                                        : "off";
}

static void
s_die(const char *what, int rc)
{
    fprintf(stderr, "bench_store: %s failed (%d)\n", what, rc);
    exit(1);
}

static broker_store_t *
s_open(const s_bench_t *b, const char *name, broker_sync_t sync, bool fresh)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.db", b->dir, name);
    if (b->url) {
        snprintf(path, sizeof path, "%s", b->url);
    } else if (fresh) {
        const char *suffix[] = { "", "-wal", "-shm" };
        for (int i = 0; i < 3; i++) {
            char p[1300];
            snprintf(p, sizeof p, "%s%s", path, suffix[i]);
            unlink(p);
        }
    }
    broker_store_opts_t opts = { sync };
    char err[512];
    broker_store_t *s = broker_store_open(path, &opts, err, sizeof err);
    if (!s) {
        fprintf(stderr, "bench_store: %s\n", err);
        exit(1);
    }
    if (b->url && fresh) {
        /* Opened first: the open makes the tables. */
        PGconn *c = PQconnectdb(b->url);
        PGresult *r = PQexec(c, "TRUNCATE jobs, attempts");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "bench_store: TRUNCATE: %s", PQerrorMessage(c));
            exit(1);
        }
        PQclear(r);
        PQfinish(c);
    }
    return s;
}

/* Inserts job j of b, a queued no-op made at now. */
static void
s_insert_one(const s_bench_t *b, broker_store_t *s, int j, int64_t now)
{
    broker_jobrec_t r = {
        .id = b->ids[j],
        .queue = "default",
        .type = "noop",
        .payload = b->payload,
        .payload_len = b->payload_len,
        .state = DV_STATE_QUEUED,
        .priority = 5,
        .created_ms = now,
        .run_at_ms = now,
        .max_attempts = 5,
        .backoff = DV_BACKOFF_DEFAULT,
        .result_ttl_ms = 86400000,
    };
    int rc = broker_store_insert(s, &r);
    if (rc)
        s_die("insert", rc);
}

/* Ends job j of b as succeeded: as the broker writes a job leased and
 * ended in one group, one row write with the lease folded in. */
static void
s_finish_one(const s_bench_t *b, broker_store_t *s, int j, int64_t now,
             const void *result, size_t result_len)
{
    int rc = broker_store_mark_done(s, b->ids[j], DV_STATE_SUCCEEDED, 1,
                                    "bench-host:1", now, result, result_len,
                                    NULL, now);
    if (rc)
        s_die("mark_done", rc);
}

static void
s_insert(const s_bench_t *b, broker_store_t *s, int group)
{
    int64_t now = dv_now_ms();
    for (int i = 0; i < b->jobs; i += group) {
        int rc = broker_store_begin(s);
        if (rc)
            s_die("begin", rc);
        for (int j = i; j < i + group && j < b->jobs; j++) {
            s_insert_one(b, s, j, now);
        }
        if ((rc = broker_store_commit(s)))
            s_die("commit", rc);
    }
}

static void
s_run_finish(const s_bench_t *b, broker_store_t *s, int group)
{
    static const unsigned char result[] = { 0x81, 0xa2, 'o', 'k', 0xc3 };
    int64_t now = dv_now_ms();
    for (int i = 0; i < b->jobs; i += group) {
        int rc = broker_store_begin(s);
        if (rc)
            s_die("begin", rc);
        for (int j = i; j < i + group && j < b->jobs; j++)
            s_finish_one(b, s, j, now, result, sizeof result);
        if ((rc = broker_store_commit(s)))
            s_die("commit", rc);
    }
}

/* The broker's steady state: insert a group, finish the group inserted
 * S_LAG jobs before, in one transaction. */
#define S_LAG 50000

static void
s_steady(const s_bench_t *b, broker_store_t *s)
{
    static const unsigned char result[] = { 0xc0 };
    const int group = 1000;
    int64_t now = dv_now_ms();
    for (int i = 0; i < b->jobs + S_LAG; i += group) {
        int rc = broker_store_begin(s);
        if (rc)
            s_die("begin", rc);
        for (int j = i; j < i + group && j < b->jobs; j++)
            s_insert_one(b, s, j, now);
        for (int j = i - S_LAG; j >= 0 && j < i - S_LAG + group && j < b->jobs;
             j++)
            s_finish_one(b, s, j, now, result, sizeof result);
        if ((rc = broker_store_commit(s)))
            s_die("commit", rc);
    }
}

/* This process's CPU (user + system) so far, in microseconds. */
static double
s_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void
s_report(const char *what, broker_sync_t sync, int group, int jobs, int64_t us)
{
    double secs = (double)us / 1e6;
    printf("%-16s sync=%-6s group=%-5d jobs=%-7d %9.0f jobs/s  %7.2f s\n", what,
           s_sync_name(sync), group, jobs, jobs / secs, secs);
    fflush(stdout);
}

static void
s_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[1300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int
main(int argc, char **argv)
{
    s_bench_t b = { .jobs = 200000, .payload_len = 100 };
    const char *dir = NULL;
    int opt;
    bool steady = false;
    while ((opt = getopt(argc, argv, "n:p:d:ku:sh")) != -1) {
        switch (opt) {
        case 'n':
            b.jobs = atoi(optarg);
            break;
        case 'p':
            b.payload_len = (size_t)atol(optarg);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'k':
            b.keep = true;
            break;
        case 'u':
            b.url = optarg;
            break;
        case 's':
            steady = true;
            break;
        default:
            fprintf(stderr, "usage: bench_store [-n JOBS] [-p PAYLOAD_BYTES] "
                            "[-d DIR] [-k] [-u URL] [-s]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (b.jobs <= 0 || b.payload_len > (1u << 20)) {
        fprintf(stderr, "bench_store: bad -n or -p\n");
        return 2;
    }
    bool made_dir = false;
    if (dir) {
        snprintf(b.dir, sizeof b.dir, "%s", dir);
    } else {
        snprintf(b.dir, sizeof b.dir, "bench_store.XXXXXX");
        if (!mkdtemp(b.dir)) {
            perror("bench_store: mkdtemp");
            return 1;
        }
        made_dir = true;
    }

    b.ids = malloc((size_t)b.jobs * sizeof *b.ids);
    b.payload = malloc(b.payload_len ? b.payload_len : 1);
    if (!b.ids || !b.payload)
        s_die("malloc", 0);
    /* Any bytes will do: the store never looks inside a payload. */
    memset(b.payload, 0xa5, b.payload_len);
    for (int i = 0; i < b.jobs; i++) {
        dv_id_t id;
        dv_id_new(&id);
        dv_id_format(&id, b.ids[i]);
    }

    struct statfs fs;
    if (b.url) {
        char safe[1024];
        printf("# bench_store: %d jobs, %zu-byte payloads, PostgreSQL store "
               "at %s\n",
               b.jobs, b.payload_len,
               broker_store_redact_url(b.url, safe, sizeof safe));
    } else
        printf("# bench_store: %d jobs, %zu-byte payloads, files in %s "
               "(fs type 0x%lx)\n",
               b.jobs, b.payload_len, b.dir,
               statfs(b.dir, &fs) == 0 ? (unsigned long)fs.f_type : 0ul);

    if (steady) {
        broker_store_t *s = s_open(&b, "steady", BROKER_SYNC_FULL, true);
        double c0 = s_cpu_us();
        int64_t t0 = dv_mono_us();
        s_steady(&b, s);
        int64_t t1 = dv_mono_us();
        double c1 = s_cpu_us();
        s_report("steady", BROKER_SYNC_FULL, 1000, b.jobs, t1 - t0);
        printf("steady           cpu %.2f us a job (insert + finish)\n",
               (c1 - c0) / b.jobs);
        broker_store_destroy(&s);
    }
    const broker_sync_t syncs[] = { BROKER_SYNC_FULL, BROKER_SYNC_NORMAL };
    const int groups[] = { 1, 100, 1000 };
    for (size_t si = 0; si < 2 && !steady; si++) {
        char name[64];
        for (size_t gi = 0; gi < 3; gi++) {
            snprintf(name, sizeof name, "insert-%s-%d", s_sync_name(syncs[si]),
                     groups[gi]);
            broker_store_t *s = s_open(&b, name, syncs[si], true);
            int64_t t0 = dv_mono_us();
            s_insert(&b, s, groups[gi]);
            int64_t t1 = dv_mono_us();
            s_report("insert", syncs[si], groups[gi], b.jobs, t1 - t0);

            /* Lease and finish the jobs of the last insert run: a table
             * of JOBS rows, as after a burst of submits. */
            if (gi == 2) {
                t0 = dv_mono_us();
                s_run_finish(&b, s, 1000);
                t1 = dv_mono_us();
                s_report("running+finished", syncs[si], 1000, b.jobs, t1 - t0);
            }
            broker_store_destroy(&s);
        }
    }
    free(b.ids);
    free(b.payload);
    if (made_dir && !b.keep)
        s_remove_dir(b.dir);
    return 0;
}
