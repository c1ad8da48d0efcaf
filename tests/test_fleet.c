/* A fleet across hosts made of network namespaces (label fleet, root):
 * every host is a namespace of its own joined to a private bridge by a
 * veth pair, the bridge in a "switch" namespace of its own, so nothing of
 * it touches the machine's network:
 *
 *   db  10.77.0.2    PostgreSQL (tests/fixtures/pg_server, on TCP)
 *   a   10.77.0.11   broker A, started first: active
 *   b   10.77.0.12   broker B: standby
 *   w1  10.77.0.21   worker h1
 *   w2  10.77.0.22   worker h2
 *   w3  10.77.0.23   worker h3, started mid-run
 *   cl  10.77.0.30   the test process itself (submits, waits, reads SQL)
 *
 * Under a 20,000-job run (the fleet_record plugin: a few ms each, one line
 * per execution start and end in a shared file), the switch's port of w1
 * goes down for longer than the broker's worker timeout and up again; then
 * the port of A's host goes down (B takes over; A, back on the network, is
 * fenced and runs as a standby); h3 joins after the takeover. Every
 * acknowledged job must end succeeded, no execution may start after its
 * job was finished, none on the cut-off host after the job ended on
 * another; duplicates (jobs run more than once) are counted and printed.
 *
 * Processes start in their host's namespace: the test thread enters it
 * (setns) around the fork, so each keeps the PID the harness records, and
 * returns to the client namespace. Namespace and link names carry the
 * test's PID; everything is deleted by name at teardown and at exit, also
 * after a failed assertion. Skipped (77) when not root or without
 * `ip netns`. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dv_clock.h"
#include "harness.h"
#include "pg_server.h"

/* ---- the network -------------------------------------------------------- */

typedef struct {
    const char *tag; /* namespace NAME-TAG, links hPIDTAG / sPIDTAG */
    const char *addr;
} s_host_t;

static const s_host_t s_hosts[] = {
    { "db", "10.77.0.2" },  { "a", "10.77.0.11" },  { "b", "10.77.0.12" },
    { "w1", "10.77.0.21" }, { "w2", "10.77.0.22" }, { "w3", "10.77.0.23" },
    { "cl", "10.77.0.30" },
};
enum { S_NHOSTS = sizeof s_hosts / sizeof s_hosts[0] };

static char s_prefix[32]; /* "dvfleet-PID" */
static bool s_net_made;   /* some namespace may exist */
static int s_root_ns = -1;

/* Runs a shell command line (names and addresses only: nothing to quote).
 * Returns its exit status, or -1. */
static int
s_sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    if (WEXITSTATUS(st) != 0)
        fprintf(stderr, "test_fleet: failed (%d): %s\n", WEXITSTATUS(st), cmd);
    return WEXITSTATUS(st);
}

/* Deletes every namespace of this run by name (the links in them go with
 * them). Quiet about those that are not there. */
static void
s_net_down(void)
{
    if (!s_net_made)
        return;
    if (s_root_ns >= 0)
        setns(s_root_ns, CLONE_NEWNET);
    for (int i = 0; i < S_NHOSTS; i++)
        s_sh("ip netns del %s-%s 2>/dev/null || true", s_prefix,
             s_hosts[i].tag);
    s_sh("ip netns del %s-sw 2>/dev/null || true", s_prefix);
    s_net_made = false;
}

/* Makes the switch namespace with its bridge and one namespace per host,
 * joined by a veth pair; loopback up everywhere. Returns 0 or -1. */
static int
s_net_up(void)
{
    snprintf(s_prefix, sizeof s_prefix, "dvfleet-%d", (int)getpid());
    s_net_made = true;
    if (s_sh("ip netns add %s-sw", s_prefix) != 0 ||
        s_sh("ip -n %s-sw link set lo up", s_prefix) != 0 ||
        s_sh("ip -n %s-sw link add br0 type bridge", s_prefix) != 0 ||
        s_sh("ip -n %s-sw link set br0 up", s_prefix) != 0)
        return -1;
    int pid = (int)getpid();
    for (int i = 0; i < S_NHOSTS; i++) {
        const char *t = s_hosts[i].tag;
        if (s_sh("ip netns add %s-%s", s_prefix, t) != 0 ||
            s_sh("ip -n %s-%s link set lo up", s_prefix, t) != 0 ||
            s_sh("ip link add h%d%s netns %s-%s type veth peer name s%d%s "
                 "netns %s-sw",
                 pid, t, s_prefix, t, pid, t, s_prefix) != 0 ||
            s_sh("ip -n %s-%s addr add %s/24 dev h%d%s", s_prefix, t,
                 s_hosts[i].addr, pid, t) != 0 ||
            s_sh("ip -n %s-%s link set h%d%s up", s_prefix, t, pid, t) != 0 ||
            s_sh("ip -n %s-sw link set s%d%s master br0 up", s_prefix, pid,
                 t) != 0)
            return -1;
    }
    return 0;
}

/* Takes host tag's switch port down (cut) or up (restore). */
static int
s_link(const char *tag, bool up)
{
    return s_sh("ip -n %s-sw link set s%d%s %s", s_prefix, (int)getpid(), tag,
                up ? "up" : "down");
}

/* Moves the calling thread into host tag's namespace. Returns 0 or -1. */
static int
s_enter(const char *tag)
{
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s-%s", s_prefix, tag);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}

/* Starts `drover ARGS...` on host tag (log in the test dir), then returns
 * the test thread to the client's host. Returns the PID or -1. */
static pid_t
s_spawn_on(harness_t *h, const char *tag, const char *const *args,
           const char *log)
{
    if (s_enter(tag) != 0)
        return -1;
    pid_t pid = harness_spawn(h, args, NULL, log);
    if (s_enter("cl") != 0)
        return -1;
    return pid;
}

/* ---- the group ---------------------------------------------------------- */

#define S_A_CLIENTS "tcp://10.77.0.11:7700"
#define S_B_CLIENTS "tcp://10.77.0.12:7700"
#define S_CLIENTS   S_A_CLIENTS "," S_B_CLIENTS
#define S_WORKERS   "tcp://10.77.0.11:7701,tcp://10.77.0.12:7701"

static pg_server_t *s_pg;
static char s_pg_dir[256];
static char s_url[1400];

/* Broker NAME (A or B) on host tag, on the store over the bridge. The
 * endpoints are the host's own address: reached only through the bridge,
 * inside the test's namespaces (hence --insecure-bind). */
static pid_t
s_broker(harness_t *h, const char *name, const char *tag, const char *addr)
{
    char c[64], w[64], e[64], log[32];
    snprintf(c, sizeof c, "tcp://%s:7700", addr);
    snprintf(w, sizeof w, "tcp://%s:7701", addr);
    snprintf(e, sizeof e, "tcp://%s:7702", addr);
    snprintf(log, sizeof log, "%s.log", name);
    const char *args[] = { "broker",
                           "--clients",
                           c,
                           "--workers",
                           w,
                           "--events",
                           e,
                           "--store",
                           s_url,
                           "--heartbeat",
                           "0.1",
                           "--worker-timeout",
                           "1",
                           "--insecure-bind",
                           "--log-level",
                           "info",
                           NULL };
    return s_spawn_on(h, tag, args, log);
}

/* Worker NAME on host tag with both brokers' endpoints. */
static pid_t
s_worker(harness_t *h, const char *name, const char *tag)
{
    char log[32];
    snprintf(log, sizeof log, "%s.log", name);
    const char *args[] = { "worker",
                           "--broker",
                           S_WORKERS,
                           "--name",
                           name,
                           "--heartbeat",
                           "0.1",
                           "--concurrency",
                           "4",
                           "--plugin",
                           "fleet=" FLEET_RECORD_PLUGIN,
                           "--log-level",
                           "info",
                           NULL };
    return s_spawn_on(h, tag, args, log);
}

typedef struct {
    harness_t *h;
    const char *log;
    const char *a, *b, *c;
    int want;
} s_lines_t;

static bool
s_lines(void *arg)
{
    s_lines_t *l = arg;
    return harness_count_lines(l->h, l->log, l->a, l->b, l->c, NULL) >= l->want;
}

/* Waits for the want-th line of log holding a, b and c (b, c may be
 * NULL). */
static bool
s_wait_lines(harness_t *h, const char *log, const char *a, const char *b,
             const char *c, int want, int timeout_ms)
{
    s_lines_t l = { h, log, a, b, c, want };
    return harness_wait_until(s_lines, &l, timeout_ms);
}

/* ---- the store ---------------------------------------------------------- */

static int64_t
s_pg_int(const char *sql)
{
    PGconn *c = PQconnectdb(s_url);
    int64_t v = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
            !PQgetisnull(r, 0, 0))
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    PQfinish(c);
    return v;
}

typedef struct {
    int64_t want;
} s_count_t;

static bool
s_succeeded_at_least(void *arg)
{
    s_count_t *c = arg;
    return s_pg_int("SELECT count(*) FROM jobs WHERE state = 'succeeded'") >=
           c->want;
}

/* ---- the record: who ran what, when ------------------------------------- */

typedef struct {
    char id[37];
    char worker[16];
    int attempt;
    bool start;
    long long us;
} s_rec_t;

static int
s_rec_cmp(const void *x, const void *y)
{
    const s_rec_t *a = x, *b = y;
    int c = strcmp(a->id, b->id);
    if (c)
        return c;
    return a->us < b->us ? -1 : a->us > b->us;
}

typedef struct {
    char id[37];
    char worker[64];
    int64_t finished;
} s_job_t;

static int
s_job_cmp(const void *x, const void *y)
{
    return strcmp(((const s_job_t *)x)->id, ((const s_job_t *)y)->id);
}

/* The record file's lines, sorted by job and time; *n gets how many. */
static s_rec_t *
s_read_record(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t cap = 65536, k = 0;
    s_rec_t *r = malloc(cap * sizeof *r);
    assert_non_null(r);
    char what;
    s_rec_t x;
    while (fscanf(f, " %c %36s %d %15s %lld", &what, x.id, &x.attempt, x.worker,
                  &x.us) == 5) {
        x.start = what == 'S';
        if (k == cap) {
            cap *= 2;
            r = realloc(r, cap * sizeof *r);
            assert_non_null(r);
        }
        r[k++] = x;
    }
    fclose(f);
    qsort(r, k, sizeof *r, s_rec_cmp);
    *n = k;
    return r;
}

/* Every job's row in the store, sorted by id; *n gets how many. */
static s_job_t *
s_read_jobs(size_t *n)
{
    PGconn *c = PQconnectdb(s_url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SELECT id, coalesce(worker, ''), "
                            "coalesce(finished_at, 0) FROM jobs");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    size_t k = (size_t)PQntuples(r);
    s_job_t *j = calloc(k ? k : 1, sizeof *j);
    assert_non_null(j);
    for (size_t i = 0; i < k; i++) {
        snprintf(j[i].id, sizeof j[i].id, "%s", PQgetvalue(r, (int)i, 0));
        snprintf(j[i].worker, sizeof j[i].worker, "%s",
                 PQgetvalue(r, (int)i, 1));
        j[i].finished = strtoll(PQgetvalue(r, (int)i, 2), NULL, 10);
    }
    PQclear(r);
    PQfinish(c);
    qsort(j, k, sizeof *j, s_job_cmp);
    *n = k;
    return j;
}

/* When the two cuts began, wall clock in µs (the record's clock). */
static long long s_cut_w_us, s_cut_a_us;

static long long
s_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct {
    int executions;    /* S lines */
    int unfinished;    /* S lines without their E line */
    int duplicates;    /* jobs with more than one execution */
    int extra;         /* executions beyond one per job */
    int late;          /* executions that started after the job finished */
    int after_other;   /* on the cut host, after it ended on another */
    int no_execution;  /* jobs with no execution recorded */
    int per_worker[3]; /* executions on h1, h2, h3 */
} s_tally_t;

static int
s_worker_index(const char *w)
{
    return !strcmp(w, "h1")   ? 0
           : !strcmp(w, "h2") ? 1
           : !strcmp(w, "h3") ? 2
                              : -1;
}

/* Walks the record against the store's rows and prints what ran twice. */
static void
s_tally(const s_rec_t *rec, size_t nrec, const s_job_t *jobs, size_t njobs,
        const char *cut, s_tally_t *t)
{
    memset(t, 0, sizeof *t);
    size_t r = 0;
    int printed = 0;
    for (size_t j = 0; j < njobs; j++) {
        while (r < nrec && strcmp(rec[r].id, jobs[j].id) < 0)
            r++; /* a record of a job the store does not hold: none */
        size_t first = r;
        while (r < nrec && !strcmp(rec[r].id, jobs[j].id))
            r++;
        int starts = 0;
        for (size_t k = first; k < r; k++) {
            if (!rec[k].start)
                continue;
            starts++;
            t->executions++;
            int w = s_worker_index(rec[k].worker);
            if (w >= 0)
                t->per_worker[w]++;
            bool ended = false;
            for (size_t e = first; e < r; e++)
                if (!rec[e].start && rec[e].attempt == rec[k].attempt &&
                    !strcmp(rec[e].worker, rec[k].worker))
                    ended = true;
            if (!ended)
                t->unfinished++;
            /* Started after the store says the job was finished. */
            if (jobs[j].finished > 0 &&
                rec[k].us >= (jobs[j].finished + 1) * 1000LL) {
                t->late++;
                print_message("LATE: job %s attempt %d on %s started %lld "
                              "us after it finished\n",
                              jobs[j].id, rec[k].attempt, rec[k].worker,
                              rec[k].us - jobs[j].finished * 1000LL);
            }
            /* On the cut host, started after it ended on another. */
            if (!strcmp(rec[k].worker, cut))
                for (size_t e = first; e < r; e++)
                    if (!rec[e].start && strcmp(rec[e].worker, cut) &&
                        rec[e].us < rec[k].us) {
                        t->after_other++;
                        print_message("AFTER OTHER: job %s on %s started "
                                      "%lld us after it ended on %s\n",
                                      jobs[j].id, cut, rec[k].us - rec[e].us,
                                      rec[e].worker);
                        break;
                    }
        }
        if (starts == 0)
            t->no_execution++;
        if (starts > 1) {
            t->duplicates++;
            t->extra += starts - 1;
            if (printed++ < 25) {
                char line[640];
                int len = snprintf(
                    line, sizeof line,
                    "duplicate %s (%s), first start %+lld ms from h1's cut, "
                    "%+lld ms from A's:",
                    jobs[j].id, jobs[j].worker,
                    (rec[first].us - s_cut_w_us) / 1000,
                    (rec[first].us - s_cut_a_us) / 1000);
                for (size_t k = first; k < r && len < 500; k++)
                    len += snprintf(line + len, sizeof line - (size_t)len,
                                    " %c%d@%s+%lldms", rec[k].start ? 'S' : 'E',
                                    rec[k].attempt, rec[k].worker,
                                    (rec[k].us - rec[first].us) / 1000);
                print_message("%s\n", line);
            }
        }
    }
}

/* ---- the watcher: when B says it is active ------------------------------ */

typedef struct {
    harness_t *h;
    atomic_bool stop;
    atomic_llong active_ms; /* dv_mono_ms() when seen, 0 before */
} s_watch_t;

static void *
s_watch(void *arg)
{
    s_watch_t *w = arg;
    while (!atomic_load(&w->stop) && !atomic_load(&w->active_ms)) {
        if (harness_count_lines(w->h, "B.log", "broker.started",
                                "\"role\":\"active\"", NULL) >= 1)
            atomic_store(&w->active_ms, (long long)dv_mono_ms());
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Whether the broker c reaches (alone) answers status as a standby. */
static bool
s_is_standby(void *arg)
{
    char *body = NULL;
    if (drover_ctrl(arg, "status", NULL, NULL, &body) != DROVER_OK)
        return false;
    json_t *st = json_loads(body, 0, NULL);
    free(body);
    const char *role = json_string_value(json_object_get(st, "role"));
    bool standby = role && !strcmp(role, "standby");
    json_decref(st);
    return standby;
}

/* The jobs_lost of the first line of log holding what and who, or -1. */
static int
s_jobs_lost(harness_t *h, const char *log, const char *what, const char *who)
{
    char *text = harness_read(h, log);
    int n = -1;
    for (char *line = text; line && *line && n < 0;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        const char *v = strstr(line, "\"jobs_lost\":");
        if (strstr(line, what) && strstr(line, who) && v)
            n = atoi(v + strlen("\"jobs_lost\":"));
        line = end ? end + 1 : NULL;
    }
    free(text);
    return n;
}

/* ---- the case ----------------------------------------------------------- */

static void
t_fleet(void **state)
{
    harness_t *h = *state;
    int64_t t0 = dv_mono_ms();
    assert_int_equal(s_net_up(), 0);
    int64_t net_ms = dv_mono_ms() - t0;

    /* PostgreSQL on the db host, on TCP at its address. */
    snprintf(s_pg_dir, sizeof s_pg_dir, "/tmp/drover-test-XXXXXX");
    assert_non_null(mkdtemp(s_pg_dir));
    char err[1600] = "";
    assert_int_equal(s_enter("db"), 0);
    s_pg = pg_server_start_tcp(s_pg_dir, "10.77.0.2", "10.77.0.0/24", err,
                               sizeof err);
    /* From here on the test thread lives on the client host: everything
     * it reaches (brokers, the store) goes over the bridge. */
    assert_int_equal(s_enter("cl"), 0);
    if (!s_pg)
        print_error("test_fleet: %s\n", err);
    assert_non_null(s_pg);
    pg_server_tcp_url(s_pg, "drover", s_url, sizeof s_url);
    assert_true(PQping(s_url) == PQPING_OK);

    /* A (active), then B (standby). */
    pid_t a = s_broker(h, "A", "a", "10.77.0.11");
    assert_true(a > 0);
    assert_true(s_wait_lines(h, "A.log", "broker.started",
                             "\"role\":\"active\"", NULL, 1, 20000));
    assert_true(s_broker(h, "B", "b", "10.77.0.12") > 0);
    assert_true(
        s_wait_lines(h, "B.log", "broker.standby", NULL, NULL, 1, 15000));
    h->client = drover_connect(S_CLIENTS, 2000);
    assert_non_null(h->client);

    char record[400];
    snprintf(record, sizeof record, "%s/record.txt", h->dir);
    setenv("FLEET_RECORD", record, 1);
    assert_true(s_worker(h, "h1", "w1") > 0);
    assert_true(s_worker(h, "h2", "w2") > 0);
    assert_true(s_wait_lines(h, "A.log", "broker.worker_joined",
                             "\"worker\":\"h1\"", NULL, 1, 15000));
    assert_true(s_wait_lines(h, "A.log", "broker.worker_joined",
                             "\"worker\":\"h2\"", NULL, 1, 15000));

    enum { N = 20000, FIRST = 14000, CUT_W_AT = 1500, CUT_A_AT = 5000 };
    static char ids[N][37];
    int64_t ts = dv_mono_ms();
    assert_int_equal(
        harness_submit_keyed(h, "fl", "fleet", "3", 0, FIRST, 1000, ids, 60000),
        FIRST);
    int64_t submit_ms = dv_mono_ms() - ts;

    /* 1. h1's link is cut past the worker timeout (1 s), then restored. */
    s_count_t cnt = { CUT_W_AT };
    assert_true(harness_wait_until(s_succeeded_at_least, &cnt, 60000));
    assert_int_equal(s_link("w1", false), 0);
    int64_t cut_w = dv_mono_ms();
    s_cut_w_us = s_wall_us();
    assert_true(s_wait_lines(h, "A.log", "broker.worker_removed",
                             "\"worker\":\"h1\"", NULL, 1, 10000));
    int64_t removed_ms = dv_mono_ms() - cut_w;
    int lost =
        s_jobs_lost(h, "A.log", "broker.worker_removed", "\"worker\":\"h1\"");
    while (dv_mono_ms() - cut_w < 2500)
        usleep(20000);
    assert_int_equal(s_link("w1", true), 0);
    int64_t cut_w_ms = dv_mono_ms() - cut_w;
    assert_true(s_wait_lines(h, "A.log", "broker.worker_joined",
                             "\"worker\":\"h1\"", NULL, 2, 15000));
    int64_t rejoin_ms = dv_mono_ms() - cut_w;

    /* 2. A's host is cut off while the rest is submitted: B takes over,
     * the submits go on through it. */
    cnt.want = CUT_A_AT;
    assert_true(harness_wait_until(s_succeeded_at_least, &cnt, 60000));
    int64_t done_at_cut =
        s_pg_int("SELECT count(*) FROM jobs WHERE state = 'succeeded'");
    static s_watch_t watch;
    memset(&watch, 0, sizeof watch);
    watch.h = h;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_watch, &watch), 0);
    assert_int_equal(s_link("a", false), 0);
    int64_t cut_a = dv_mono_ms();
    s_cut_a_us = s_wall_us();
    int acked = harness_submit_keyed(h, "fl", "fleet", "3", FIRST, N - FIRST,
                                     1000, ids, 90000);
    assert_true(s_wait_lines(h, "B.log", "broker.started",
                             "\"role\":\"active\"", NULL, 1, 20000));
    /* The watcher polls every 10 ms and B's log has the line already. */
    int64_t seen_by = dv_mono_ms() + 5000;
    while (!atomic_load(&watch.active_ms) && dv_mono_ms() < seen_by)
        usleep(5000);
    atomic_store(&watch.stop, true);
    pthread_join(th, NULL);
    assert_true(atomic_load(&watch.active_ms) != 0);
    int64_t takeover_ms = (int64_t)atomic_load(&watch.active_ms) - cut_a;
    assert_int_equal(acked, N - FIRST);

    /* 3. h3 joins the run (now on B). */
    assert_true(s_worker(h, "h3", "w3") > 0);
    assert_true(s_wait_lines(h, "B.log", "broker.worker_joined",
                             "\"worker\":\"h3\"", NULL, 1, 15000));

    /* A comes back on the network: it must step down (its lock is gone,
     * its writes fenced) and run as a standby, refusing a submit. */
    while (dv_mono_ms() - cut_a < takeover_ms + 2000)
        usleep(20000);
    assert_int_equal(s_link("a", true), 0);
    int64_t cut_a_ms = dv_mono_ms() - cut_a;
    assert_true(
        s_wait_lines(h, "A.log", "broker.stepping_down", NULL, NULL, 1, 20000));
    int fenced =
        harness_count_lines(h, "A.log", "broker.stepping_down", "fenced", NULL);
    int lost_lock = harness_count_lines(h, "A.log", "broker.stepping_down",
                                        "lost the group's lock", NULL);
    assert_true(fenced + lost_lock >= 1);
    assert_true(
        s_wait_lines(h, "A.log", "broker.standby", NULL, NULL, 1, 20000));
    assert_int_equal(harness_count_lines(h, "A.log", "broker.started",
                                         "\"role\":\"active\"", NULL),
                     1);
    assert_int_equal(waitpid(a, NULL, WNOHANG), 0); /* same process */
    drover_client_t *on_a = drover_connect(S_A_CLIENTS, 1000);
    assert_non_null(on_a);
    assert_true(harness_wait_until(s_is_standby, on_a, 15000));
    drover_job_t job;
    drover_job_init(&job);
    job.type = "fleet";
    job.payload_json = "0";
    char id[DROVER_ID_SIZE];
    assert_int_not_equal(drover_submit(on_a, &job, id), DROVER_OK);
    char refusal[256];
    snprintf(refusal, sizeof refusal, "%s", drover_last_error(on_a));
    drover_close(&on_a);
    if (!strstr(refusal, "standby"))
        print_error("test_fleet: A's refusal: %s\n", refusal);
    assert_non_null(strstr(refusal, "standby"));

    /* Every acknowledged job ends succeeded. */
    static harness_results_t o;
    memset(&o, 0, sizeof o);
    assert_int_equal(harness_wait_ids(h, ids, N, &o, 150000), DROVER_OK);
    int64_t run_ms = dv_mono_ms() - ts;

    /* Who ran what: the record against the store. Workers may still be
     * writing an E line of a copy the broker told to stop: stop them
     * first. */
    harness_kill_all(h);
    size_t nrec, njobs;
    s_rec_t *rec = s_read_record(record, &nrec);
    s_job_t *jobs = s_read_jobs(&njobs);
    s_tally_t t;
    s_tally(rec, nrec, jobs, njobs, "h1", &t);
    int64_t in_store =
        s_pg_int("SELECT count(*) FROM jobs WHERE state = 'succeeded'");
    print_message(
        "fleet: network %" PRId64 " ms; %d jobs submitted (%d in %" PRId64
        " ms before the cuts); h1 cut %" PRId64 " ms (removed after %" PRId64
        " ms with %d jobs lost, rejoined after %" PRId64
        " ms); A cut at %" PRId64 " succeeded for %" PRId64
        " ms, B active %" PRId64
        " ms after the cut; A stepped down (%s), a standby (\"%s\")\n",
        net_ms, N, FIRST, submit_ms, cut_w_ms, removed_ms, lost, rejoin_ms,
        done_at_cut, cut_a_ms, takeover_ms, fenced ? "fenced" : "lost lock",
        refusal);
    print_message("fleet: %d succeeded, %d otherwise (%d retried, most "
                  "attempts %d), %" PRId64 " succeeded in the store; %d "
                  "executions (h1 %d, h2 %d, h3 %d), %d unfinished; "
                  "duplicates: %d jobs ran more than once (%d extra "
                  "executions); %d started after their job finished, %d on "
                  "h1 after it ended elsewhere; %d without a record; run "
                  "%.1f s, all %.1f s\n",
                  o.succeeded, o.n - o.succeeded, o.retried, o.max_attempts,
                  in_store, t.executions, t.per_worker[0], t.per_worker[1],
                  t.per_worker[2], t.unfinished, t.duplicates, t.extra, t.late,
                  t.after_other, t.no_execution, run_ms / 1000.0,
                  (dv_mono_ms() - t0) / 1000.0);
    free(rec);
    free(jobs);
    assert_int_equal(o.n, N);
    assert_int_equal(o.succeeded, N);
    assert_int_equal((int)njobs, N);
    assert_int_equal(in_store, N);
    assert_true(done_at_cut < N); /* A was cut off mid-run */
    assert_int_equal(t.late, 0);
    assert_int_equal(t.after_other, 0);
    assert_int_equal(t.no_execution, 0);
    assert_true(t.per_worker[2] > 0); /* h3 took work */
    assert_true(t.per_worker[0] > 0);
}

/* ---- setup -------------------------------------------------------------- */

static int
s_teardown(void **state)
{
    /* The processes first (they hold the store's connections), then the
     * server, then the namespaces. */
    if (*state)
        harness_kill_all(*state);
    pg_server_stop(&s_pg);
    if (s_pg_dir[0]) {
        rmdir(s_pg_dir);
        s_pg_dir[0] = '\0';
    }
    harness_teardown(state);
    s_net_down();
    return 0;
}

static void
s_at_exit(void)
{
    s_net_down();
}

int
main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_fleet: skipped: needs root (network "
                        "namespaces)\n");
        return 77;
    }
    if (system("ip netns list >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_fleet: skipped: no `ip netns` (iproute2)\n");
        return 77;
    }
    s_root_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    atexit(s_at_exit);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_fleet, harness_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("fleet (network namespaces)", tests,
                                       NULL, NULL);
}
