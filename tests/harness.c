#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_util.h"
#include "pg_server.h"

static const char *
s_bin(void)
{
    const char *b = getenv("DROVER_BIN");
    return b && *b ? b : "drover";
}

int
harness_scale(int timeout_ms)
{
    const char *s = getenv("DROVER_TIMEOUT_SCALE");
    int k = s ? atoi(s) : 1;
    return timeout_ms * (k > 0 ? k : 1);
}

bool
harness_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = dv_mono_ms() + harness_scale(timeout_ms);
    for (;;) {
        if (cond(arg))
            return true;
        if (dv_mono_ms() > deadline)
            return false;
        poll(NULL, 0, 10); /* the next look at the condition */
    }
}

static int
s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- DROVER_TEST_STORE=pg: one PostgreSQL server per process ----------- */

static pg_server_t *s_pg; /* started by the first harness_new(), or NULL */
static char s_pg_dir[64]; /* its temp dir */
static pid_t s_pg_owner;  /* the process that started it */
static int s_pg_seq;      /* databases made so far */

static void
s_pg_at_exit(void)
{
    if (getpid() != s_pg_owner)
        return; /* a forked child leaving: the server is its parent's */
    pg_server_stop(&s_pg);
    nftw(s_pg_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static bool
s_want_pg(void)
{
    const char *e = getenv("DROVER_TEST_STORE");
    return e && !strcmp(e, "pg");
}

/* Makes the harness's own database on the process's server (started on
 * first use) and points self->store at it. Returns 0, or -1 with the
 * reason on stderr. */
static int
s_pg_store(harness_t *self)
{
    char err[1600] = "";
    if (!s_pg) {
        snprintf(s_pg_dir, sizeof s_pg_dir, "/tmp/drover-test-pg-XXXXXX");
        if (!mkdtemp(s_pg_dir)) {
            fprintf(stderr, "harness: mkdtemp %s: %s\n", s_pg_dir,
                    strerror(errno));
            return -1;
        }
        s_pg = pg_server_start(s_pg_dir, err, sizeof err);
        if (!s_pg) {
            fprintf(stderr, "harness: DROVER_TEST_STORE=pg: %s\n", err);
            nftw(s_pg_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
            return -1;
        }
        /* Registered after pg_server's own exit handler, so it runs
         * first and that one finds nothing left to stop. */
        s_pg_owner = getpid();
        atexit(s_pg_at_exit);
    }
    char sql[64];
    snprintf(self->db, sizeof self->db, "t%d", ++s_pg_seq);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", self->db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0) {
        fprintf(stderr, "harness: %s: %s\n", sql, err);
        self->db[0] = '\0';
        return -1;
    }
    char url[sizeof self->store + 1];
    pg_server_url(s_pg, self->db, url, sizeof url);
    if (strlen(url) >= sizeof self->store) {
        fprintf(stderr, "harness: store URL too long: %s\n", url);
        return -1;
    }
    memcpy(self->store, url, strlen(url) + 1);
    return 0;
}

/* Drops the harness's database, whoever is still connected. */
static void
s_pg_drop(harness_t *self)
{
    PQfinish(self->pg);
    self->pg = NULL;
    if (!self->db[0] || !s_pg)
        return;
    char sql[96], err[1024];
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", self->db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
        fprintf(stderr, "harness: %s: %s\n", sql, err);
    self->db[0] = '\0';
}

bool
harness_store_is_pg(const harness_t *self)
{
    return !strncmp(self->store, "postgres://", 11) ||
           !strncmp(self->store, "postgresql://", 13);
}

harness_t *
harness_new(void)
{
    harness_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    snprintf(self->dir, sizeof self->dir, "/tmp/drover-test-XXXXXX");
    if (!mkdtemp(self->dir)) {
        free(self);
        return NULL;
    }
    snprintf(self->store, sizeof self->store, "%s/drover.db", self->dir);
    snprintf(self->clients, sizeof self->clients, "ipc://%s/clients",
             self->dir);
    snprintf(self->workers, sizeof self->workers, "ipc://%s/workers",
             self->dir);
    snprintf(self->events, sizeof self->events, "ipc://%s/events", self->dir);
    if (s_want_pg() && s_pg_store(self) != 0)
        harness_destroy(&self);
    return self;
}

void
harness_destroy(harness_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    harness_t *self = *self_p;
    drover_close(&self->client);
    harness_kill_all(self);
    harness_unmount(self);
    s_pg_drop(self);
    if (self->curve) {
        unsetenv("DROVER_CURVE_SECRET");
        unsetenv("DROVER_CURVE_SERVER");
    }
    /* Keep the directory (logs) when asked, to debug a failure. */
    if (!getenv("DROVER_KEEP_TEST_DIR"))
        nftw(self->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    else
        fprintf(stderr, "harness: kept %s\n", self->dir);
    free(self);
    *self_p = NULL;
}

static void
s_forget(harness_t *self, pid_t pid)
{
    for (int i = 0; i < self->nprocs; i++)
        if (self->procs[i] == pid)
            self->procs[i] = 0;
    if (self->broker == pid)
        self->broker = 0;
}

static pid_t
s_spawn_bin(harness_t *self, const char *bin, char *const argv[],
            const char *log, const char *out)
{
    int slot = self->nprocs;
    for (int i = 0; i < self->nprocs; i++)
        if (self->procs[i] == 0) {
            slot = i; /* reaped earlier: its slot is free again */
            break;
        }
    if (slot >= HARNESS_MAX_PROCS)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
            close(devnull);
        }
        if (out) {
            int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (ofd >= 0) {
                dup2(ofd, STDOUT_FILENO);
                close(ofd);
            }
        }
        execv(bin, argv);
        _exit(127);
    }
    self->procs[slot] = pid;
    if (slot == self->nprocs)
        self->nprocs++;
    return pid;
}

static pid_t
s_spawn_out(harness_t *self, char *const argv[], const char *log,
            const char *out)
{
    return s_spawn_bin(self, s_bin(), argv, log, out);
}

static pid_t
s_spawn(harness_t *self, char *const argv[], const char *log)
{
    return s_spawn_out(self, argv, log, NULL);
}

static bool
s_broker_answers(void *arg)
{
    harness_t *self = arg;
    char *st = harness_status(self);
    free(st);
    return st != NULL;
}

/* Makes DIR/keys/NAME.key{,_secret}, and moves the public one to role
 * dir (NULL: leaves it in keys). Returns 0 or -1. */
static int
s_curve_key(harness_t *self, const char *name, const char *role)
{
    char keys[400], out[512];
    snprintf(keys, sizeof keys, "%s/keys", self->curve_dir);
    if (harness_cli(out, sizeof out, "keygen", name, "--dir", keys, NULL) != 0)
        return -1;
    if (!role)
        return 0;
    char from[600], to[600];
    snprintf(from, sizeof from, "%s/%s.key", keys, name);
    snprintf(to, sizeof to, "%s/allow-%s/%s.key", self->curve_dir, role, name);
    return rename(from, to);
}

int
harness_curve(harness_t *self, const char *client, const char *const *clients,
              const char *const *operators, const char *const *workers,
              const char *const *observers)
{
    static const char *const roles[4] = { "clients", "operators", "workers",
                                          "observers" };
    const char *const *lists[4] = { clients, operators, workers, observers };
    snprintf(self->curve_dir, sizeof self->curve_dir, "%s/curve", self->dir);
    char p[400];
    mkdir(self->curve_dir, 0700);
    snprintf(p, sizeof p, "%s/keys", self->curve_dir);
    mkdir(p, 0700);
    for (int r = 0; r < 4; r++) {
        snprintf(p, sizeof p, "%s/allow-%s", self->curve_dir, roles[r]);
        mkdir(p, 0700);
    }
    if (s_curve_key(self, "broker", NULL) != 0)
        return -1;
    for (int r = 0; r < 4; r++)
        for (int i = 0; lists[r] && lists[r][i]; i++)
            if (s_curve_key(self, lists[r][i], roles[r]) != 0)
                return -1;
    char secret[400], server[400];
    snprintf(secret, sizeof secret, "%s/keys/%s.key_secret", self->curve_dir,
             client);
    snprintf(server, sizeof server, "%s/keys/broker.key", self->curve_dir);
    setenv("DROVER_CURVE_SECRET", secret, 1);
    setenv("DROVER_CURVE_SERVER", server, 1);
    self->curve = true;
    return 0;
}

pid_t
harness_spawn_broker(harness_t *self, const char *const *extra)
{
    char *argv[64];
    char curve[5][420];
    int n = 0;
    argv[n++] = "drover";
    argv[n++] = "broker";
    argv[n++] = "--clients";
    argv[n++] = self->clients;
    argv[n++] = "--workers";
    argv[n++] = self->workers;
    argv[n++] = "--events";
    argv[n++] = self->events;
    argv[n++] = "--store";
    argv[n++] = self->store;
    argv[n++] = "--heartbeat";
    argv[n++] = "0.1";
    argv[n++] = "--worker-timeout";
    argv[n++] = "1";
    argv[n++] = "--sync";
    argv[n++] = "normal";
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    if (self->curve) {
        static const char *const flags[5] = {
            "--curve-secret", "--curve-clients", "--curve-operators",
            "--curve-workers", "--curve-observers"
        };
        snprintf(curve[0], sizeof curve[0], "%s/keys/broker.key_secret",
                 self->curve_dir);
        snprintf(curve[1], sizeof curve[1], "%s/allow-clients",
                 self->curve_dir);
        snprintf(curve[2], sizeof curve[2], "%s/allow-operators",
                 self->curve_dir);
        snprintf(curve[3], sizeof curve[3], "%s/allow-workers",
                 self->curve_dir);
        snprintf(curve[4], sizeof curve[4], "%s/allow-observers",
                 self->curve_dir);
        for (int i = 0; i < 5; i++) {
            argv[n++] = (char *)flags[i];
            argv[n++] = curve[i];
        }
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    char log[320];
    snprintf(log, sizeof log, "%s/broker.log", self->dir);
    pid_t pid = s_spawn(self, argv, log);
    if (pid < 0)
        return -1;
    self->broker = pid;
    return pid;
}

pid_t
harness_start_broker(harness_t *self, const char *const *extra)
{
    pid_t pid = harness_spawn_broker(self, extra);
    if (pid < 0)
        return -1;
    if (!harness_wait_until(s_broker_answers, self, 10000))
        return -1;
    return pid;
}

typedef struct {
    harness_t *self;
    int want;
} s_count_ctx_t;

static bool
s_workers_at_least(void *arg)
{
    s_count_ctx_t *c = arg;
    return harness_worker_count(c->self) >= c->want;
}

pid_t
harness_spawn_worker(harness_t *self, const char *const *args, char *name_out,
                     size_t name_size)
{
    char *argv[64];
    char name[32];
    int seq = ++self->worker_seq;
    snprintf(name, sizeof name, "w%d", seq);
    int n = 0;
    argv[n++] = "drover";
    argv[n++] = "worker";
    argv[n++] = "--broker";
    argv[n++] = self->workers;
    argv[n++] = "--name";
    argv[n++] = name;
    argv[n++] = "--heartbeat";
    argv[n++] = "0.1";
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    char secret[420], server[420];
    if (self->curve) {
        snprintf(secret, sizeof secret, "%s/keys/%s.key_secret",
                 self->curve_dir, name);
        snprintf(server, sizeof server, "%s/keys/broker.key", self->curve_dir);
        argv[n++] = "--curve-secret";
        argv[n++] = secret;
        argv[n++] = "--curve-server";
        argv[n++] = server;
    }
    for (int i = 0; args && args[i] && n < 62; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char log[320];
    snprintf(log, sizeof log, "%s/worker-%d.log", self->dir, seq);
    pid_t pid = s_spawn(self, argv, log);
    if (pid > 0 && name_out)
        snprintf(name_out, name_size, "%s", name);
    return pid;
}

pid_t
harness_start_worker(harness_t *self, const char *const *args)
{
    int before = harness_worker_count(self);
    pid_t pid = harness_spawn_worker(self, args, NULL, 0);
    if (pid < 0)
        return -1;
    s_count_ctx_t c = { self, (before < 0 ? 0 : before) + 1 };
    if (!harness_wait_until(s_workers_at_least, &c, 10000))
        return -1;
    return pid;
}

int
harness_wait_exit(harness_t *self, pid_t pid, int timeout_ms)
{
    int64_t deadline = dv_mono_ms() + harness_scale(timeout_ms);
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            s_forget(self, pid);
            return status;
        }
        if (r < 0 || dv_mono_ms() > deadline)
            return -1;
        poll(NULL, 0, 10); /* the next look at the condition */
    }
}

int
harness_signal(harness_t *self, pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0 || kill(pid, sig) != 0)
        return -1;
    if (sig == SIGKILL || sig == SIGTERM || sig == SIGINT)
        return harness_wait_exit(self, pid, timeout_ms);
    return 0;
}

char *
harness_status(harness_t *self)
{
    if (!self->client)
        self->client = drover_connect(self->clients, harness_scale(1000));
    if (!self->client)
        return NULL;
    char *body = NULL;
    if (drover_ctrl(self->client, "status", NULL, NULL, &body) != DROVER_OK) {
        /* A fresh socket next time: the broker may have restarted. */
        drover_close(&self->client);
        return NULL;
    }
    return body;
}

int64_t
harness_counter(harness_t *self, const char *name)
{
    char *body = harness_status(self);
    if (!body)
        return -1;
    json_t *st = json_loads(body, 0, NULL);
    free(body);
    int64_t v = -1;
    json_t *c =
        st ? json_object_get(json_object_get(st, "counters"), name) : NULL;
    if (json_is_integer(c))
        v = json_integer_value(c);
    json_decref(st);
    return v;
}

int
harness_worker_count(harness_t *self)
{
    char *body = harness_status(self);
    if (!body)
        return -1;
    json_t *st = json_loads(body, 0, NULL);
    free(body);
    int n = st ? (int)json_array_size(json_object_get(st, "workers")) : -1;
    json_decref(st);
    return n;
}

/* ---- reading the store ------------------------------------------------- */

struct harness_row {
    sqlite3_stmt *st; /* SQLite: the statement, on the row; else NULL */
    PGresult *res;    /* PostgreSQL: the whole result */
    int i;            /* PostgreSQL: the row's number in it */
};

const char *
harness_row_text(const harness_row_t *row, int col)
{
    if (row->st) {
        const unsigned char *t = sqlite3_column_text(row->st, col);
        return t ? (const char *)t : "";
    }
    if (col >= PQnfields(row->res) || PQgetisnull(row->res, row->i, col))
        return "";
    return PQgetvalue(row->res, row->i, col);
}

int64_t
harness_row_int(const harness_row_t *row, int col)
{
    if (row->st)
        return sqlite3_column_int64(row->st, col);
    const char *t = harness_row_text(row, col);
    /* A comparison is a boolean in PostgreSQL, an integer in SQLite. */
    if (!strcmp(t, "t"))
        return 1;
    return strtoll(t, NULL, 10);
}

static int
s_each_sqlite(harness_t *self, const char *sql, int busy_ms,
              int (*fn)(const harness_row_t *row, void *arg), void *arg,
              char *err, size_t err_size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;
    if (sqlite3_open_v2(self->store, &db, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_busy_timeout(db, busy_ms);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    harness_row_t row = { .st = st };
    int step, count = 0;
    bool stop = false;
    while (!stop && (step = sqlite3_step(st)) == SQLITE_ROW) {
        count++;
        stop = fn(&row, arg) != 0;
    }
    if (stop || step == SQLITE_DONE)
        n = count;
out:
    if (n < 0)
        snprintf(err, err_size, "%s: %s", self->store,
                 db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int
s_each_pg(harness_t *self, const char *sql,
          int (*fn)(const harness_row_t *row, void *arg), void *arg, char *err,
          size_t err_size)
{
    if (!self->pg) {
        self->pg = PQconnectdb(self->store);
        if (PQstatus(self->pg) != CONNECTION_OK) {
            snprintf(err, err_size, "%s: %s", self->store,
                     PQerrorMessage(self->pg));
            PQfinish(self->pg);
            self->pg = NULL;
            return -1;
        }
    }
    PGresult *res = PQexec(self->pg, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, err_size, "%s: %s", self->store,
                 PQresultErrorMessage(res));
        PQclear(res);
        /* A fresh connection next time: the server may have gone. */
        PQfinish(self->pg);
        self->pg = NULL;
        return -1;
    }
    harness_row_t row = { .res = res };
    int n = PQntuples(res), count = 0;
    for (row.i = 0; row.i < n; row.i++) {
        count++;
        if (fn(&row, arg) != 0)
            break;
    }
    PQclear(res);
    return count;
}

static int
s_each(harness_t *self, const char *sql, int busy_ms,
       int (*fn)(const harness_row_t *row, void *arg), void *arg, char *err,
       size_t err_size)
{
    if (harness_store_is_pg(self))
        return s_each_pg(self, sql, fn, arg, err, err_size);
    return s_each_sqlite(self, sql, busy_ms, fn, arg, err, err_size);
}

int
harness_sql_each(harness_t *self, const char *sql,
                 int (*fn)(const harness_row_t *row, void *arg), void *arg)
{
    char err[1024] = "";
    int n = s_each(self, sql, 5000, fn, arg, err, sizeof err);
    if (n < 0)
        fprintf(stderr, "harness: %s: %s\n", sql, err);
    return n;
}

static int
s_first_int(const harness_row_t *row, void *arg)
{
    *(int64_t *)arg = harness_row_int(row, 0);
    return 1;
}

int64_t
harness_sql_int(harness_t *self, const char *sql)
{
    int64_t deadline = dv_mono_ms() + harness_scale(5000), v = -1;
    char err[1024] = "";
    for (;;) {
        /* An error is worth another look: a reader of a WAL database can
         * briefly see SQLITE_BUSY while the broker checkpoints, and a
         * PostgreSQL connection can drop. */
        int rc = s_each(self, sql, 2000, s_first_int, &v, err, sizeof err);
        if (rc >= 0)
            return rc == 1 ? v : -1;
        if (dv_mono_ms() > deadline) {
            fprintf(stderr, "harness: %s: %s\n", sql, err);
            return -1;
        }
        poll(NULL, 0, 20); /* the store was busy: look again */
    }
}

int
harness_submit_n(harness_t *self, const char *queue, const char *type,
                 const char *payload_json, int n, char (*ids_out)[37])
{
    if (!self->client)
        self->client = drover_connect(self->clients, harness_scale(5000));
    if (!self->client)
        return -1;
    drover_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)n, sizeof *acks);
    int rc = -1;
    if (jobs && acks) {
        for (int i = 0; i < n; i++) {
            drover_job_init(&jobs[i]);
            jobs[i].queue = queue;
            jobs[i].type = type;
            jobs[i].payload_json = payload_json;
        }
        rc = drover_submit_many(self->client, jobs, (size_t)n, acks);
        for (int i = 0; rc == DROVER_OK && i < n; i++) {
            if (acks[i].error[0]) {
                rc = -1;
                break;
            }
            if (ids_out)
                memcpy(ids_out[i], acks[i].id, 37);
        }
    }
    free(jobs);
    free(acks);
    return rc == DROVER_OK ? 0 : -1;
}

int
harness_setup(void **state)
{
    *state = harness_new();
    return *state ? 0 : -1;
}

int
harness_teardown(void **state)
{
    harness_destroy((harness_t **)state);
    return 0;
}

static int
s_on_result(const drover_result_t *r, void *arg)
{
    harness_results_t *c = arg;
    c->n++;
    if (!strcmp(r->state, "succeeded"))
        c->succeeded++;
    else if (!strcmp(r->state, "dead"))
        c->dead++;
    else if (!strcmp(r->state, "cancelled"))
        c->cancelled++;
    else
        c->unknown++;
    if (r->attempts > c->max_attempts)
        c->max_attempts = r->attempts;
    if (r->attempts > 1)
        c->retried++;
    if (r->index < 64) {
        snprintf(c->state[r->index], sizeof c->state[0], "%s", r->state);
        c->attempts[r->index] = r->attempts;
        snprintf(c->category[r->index], sizeof c->category[0], "%s",
                 r->category ? r->category : "");
        snprintf(c->error[r->index], sizeof c->error[0], "%s",
                 r->error ? r->error : "");
        snprintf(c->result[r->index], sizeof c->result[0], "%s",
                 r->result_json ? r->result_json : "");
        c->finished[r->index] = r->finished_ms;
    }
    if (c->norder < 4096)
        c->order[c->norder++] = r->index;
    return 0;
}

int
harness_wait_ids(harness_t *self, char (*ids)[37], int n,
                 harness_results_t *out, int timeout_ms)
{
    if (!self->client)
        self->client = drover_connect(self->clients, harness_scale(5000));
    const char **p = calloc((size_t)n, sizeof *p);
    if (!p || !self->client) {
        free(p);
        return -1;
    }
    for (int i = 0; i < n; i++)
        p[i] = ids[i];
    int rc = drover_wait(self->client, p, (size_t)n, harness_scale(timeout_ms),
                         s_on_result, out);
    free(p);
    return rc;
}

char *
harness_read(harness_t *self, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", self->dir, name);
    return dv_read_file(path, NULL);
}

int
harness_count_lines(harness_t *self, const char *name, ...)
{
    char *text = harness_read(self, name);
    if (!text)
        return 0;
    int hits = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        va_list ap;
        va_start(ap, name);
        bool all = true;
        const char *needle;
        while ((needle = va_arg(ap, const char *)))
            if (!strstr(line, needle))
                all = false;
        va_end(ap);
        hits += all;
    }
    free(text);
    return hits;
}

bool
harness_file_has(harness_t *self, const char *name, const char *needle)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", self->dir, name);
    size_t len = 0;
    char *bytes = dv_read_file(path, &len);
    bool found = bytes && memmem(bytes, len, needle, strlen(needle)) != NULL;
    free(bytes);
    return found;
}

typedef struct {
    harness_t *self;
    const char *name, *what;
} s_line_ctx_t;

static bool
s_has_line(void *arg)
{
    s_line_ctx_t *c = arg;
    return harness_count_lines(c->self, c->name, c->what, NULL) > 0;
}

bool
harness_wait_line(harness_t *self, const char *name, const char *what,
                  int timeout_ms)
{
    s_line_ctx_t c = { self, name, what };
    return harness_wait_until(s_has_line, &c, timeout_ms);
}

int
harness_write(harness_t *self, const char *name, const char *text, char *path,
              size_t size)
{
    snprintf(path, size, "%s/%s", self->dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

pid_t
harness_spawn(harness_t *self, const char *const *args, const char *out_name,
              const char *log_name)
{
    char *argv[64];
    int n = 0;
    argv[n++] = "drover";
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char out[512], log[512];
    snprintf(out, sizeof out, "%s/%s", self->dir, out_name);
    snprintf(log, sizeof log, "%s/%s", self->dir, log_name);
    return s_spawn_out(self, argv, log, out_name ? out : NULL);
}

/* What harness_start_collector waits for. */
typedef struct {
    harness_t *h;
    pid_t pid;
    const char *bind;
    int port;
    bool exited;
} s_collector_wait_t;

static bool
s_collector_answers(void *arg)
{
    s_collector_wait_t *w = arg;
    int status;
    if (waitpid(w->pid, &status, WNOHANG) == w->pid) {
        s_forget(w->h, w->pid);
        w->exited = true;
        return true;
    }
    drover_client_t *c = drover_connect(w->bind, harness_scale(500));
    char *body = NULL;
    int rc = c ? drover_ctrl(c, "status", NULL, NULL, &body) : -1;
    drover_close(&c);
    json_t *st = rc == DROVER_OK && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    if (!st)
        return false;
    const char *http = json_string_value(
        json_object_get(json_object_get(st, "collector"), "http"));
    const char *colon = http ? strrchr(http, ':') : NULL;
    w->port = colon ? atoi(colon + 1) : 0;
    json_decref(st);
    return true;
}

pid_t
harness_start_collector(harness_t *self, const char *bind,
                        const char *const *args, const char *log_name,
                        int *http_port)
{
    const char *argv[64] = { "collector" };
    int n = 1;
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    s_collector_wait_t w = { .h = self, .bind = bind };
    w.pid = harness_spawn(self, argv, NULL, log_name);
    if (w.pid < 0 || !harness_wait_until(s_collector_answers, &w, 10000) ||
        w.exited)
        return -1;
    if (http_port)
        *http_port = w.port;
    return w.pid;
}

int
harness_cli(char *out, size_t size, const char *first, ...)
{
    const char *args[40];
    int n = 0;
    args[n++] = first;
    va_list ap;
    va_start(ap, first);
    const char *a;
    while (n < 38 && (a = va_arg(ap, const char *)))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return harness_cliv(out, size, args);
}

int
harness_cliv(char *out, size_t size, const char *const *args)
{
    char *argv[40];
    int n = 0;
    argv[n++] = "drover";
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    int fds[2];
    if (size == 0 || pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(s_bin(), argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fds[0], out + len, size - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == size - 1) {
            char sink[512]; /* the rest, so the child never blocks */
            while (read(fds[0], sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    out[len] = '\0';
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

void
harness_kill_all(harness_t *self)
{
    for (int i = 0; i < self->nprocs; i++) {
        if (self->procs[i] > 0) {
            kill(self->procs[i], SIGKILL);
            waitpid(self->procs[i], NULL, 0);
            self->procs[i] = 0;
        }
    }
    self->broker = 0;
}

int
harness_mount_tmpfs(harness_t *self, const char *subdir, size_t bytes,
                    char *path, size_t size)
{
    if (self->mount[0]) {
        errno = EBUSY;
        return -1;
    }
    char mnt[sizeof self->mount], opts[64];
    int n = snprintf(mnt, sizeof mnt, "%s/%s", self->dir, subdir);
    if (n < 0 || (size_t)n >= sizeof mnt || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(opts, sizeof opts, "size=%zu", bytes);
    if (mkdir(mnt, 0755) != 0 || mount("tmpfs", mnt, "tmpfs", 0, opts) != 0)
        return -1;
    memcpy(self->mount, mnt, (size_t)n + 1);
    memcpy(path, mnt, (size_t)n + 1);
    return 0;
}

int
harness_unmount(harness_t *self)
{
    if (!self->mount[0])
        return 0;
    int rc = umount2(self->mount, MNT_DETACH);
    if (rc != 0)
        fprintf(stderr, "harness: umount %s: %s\n", self->mount,
                strerror(errno));
    self->mount[0] = '\0';
    return rc;
}

int
harness_children(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue; /* gone meanwhile */
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        /* pid (comm) state ppid ...: comm may hold spaces and parens. */
        char *rp = strrchr(buf, ')');
        char state;
        long ppid;
        if (rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 &&
            ppid == (long)parent && state != 'Z')
            out[n++] = (pid_t)pid;
    }
    closedir(d);
    return n;
}

/* ---- the stand-in LLM API ------------------------------------------------- */

static bool
s_file_filled(void *arg)
{
    struct stat st;
    return stat((const char *)arg, &st) == 0 && st.st_size > 0;
}

int
harness_start_stub(harness_t *self, const char *bin, const char *name,
                   const char *const *args, harness_stub_t *out)
{
    char portfile[320], log[320];
    snprintf(portfile, sizeof portfile, "%s/%s.port", self->dir, name);
    snprintf(out->record, sizeof out->record, "%s/%s.jsonl", self->dir, name);
    snprintf(log, sizeof log, "%s/%s.log", self->dir, name);
    char *argv[64];
    int n = 0;
    argv[n++] = "llm_stub";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "--record";
    argv[n++] = out->record;
    for (int i = 0; args && args[i] && n < 62; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    out->pid = s_spawn_bin(self, bin, argv, log, NULL);
    out->port = 0;
    if (out->pid < 0 ||
        !harness_wait_until(s_file_filled, portfile, harness_scale(10000)))
        return -1;
    char *text = dv_read_file(portfile, NULL);
    out->port = text ? atoi(text) : 0;
    free(text);
    return out->port > 0 ? 0 : -1;
}

int
harness_submit_keyed(harness_t *self, const char *prefix, const char *type,
                     const char *payload, int from, int n, int batch_max,
                     char (*ids)[37], int timeout_ms)
{
    if (!self->client)
        self->client = drover_connect(self->clients, harness_scale(5000));
    drover_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)n, sizeof *acks);
    char(*keys)[48] = calloc((size_t)n, sizeof *keys);
    int *left = calloc((size_t)n, sizeof *left);
    int nleft = n, acked = 0;
    if (!jobs || !acks || !keys || !left || !self->client)
        nleft = 0;
    for (int i = 0; i < nleft; i++)
        left[i] = i;
    int64_t deadline = dv_mono_ms() + harness_scale(timeout_ms);
    while (nleft > 0 && dv_mono_ms() < deadline) {
        int batch = batch_max > 0 && nleft > batch_max ? batch_max : nleft;
        for (int k = 0; k < batch; k++) {
            int i = left[k];
            drover_job_init(&jobs[k]);
            jobs[k].type = type;
            jobs[k].payload_json = payload;
            jobs[k].max_attempts = 10;
            snprintf(keys[i], sizeof keys[i], "%s-%d", prefix, from + i);
            jobs[k].key = keys[i];
        }
        drover_submit_many(self->client, jobs, (size_t)batch, acks);
        int still = 0;
        for (int k = 0; k < batch; k++) {
            int i = left[k];
            if (!acks[k].error[0]) {
                memcpy(ids[from + i], acks[k].id, 37);
                acked++;
            } else {
                left[still++] = i;
            }
        }
        memmove(left + still, left + batch,
                (size_t)(nleft - batch) * sizeof *left);
        nleft -= batch - still;
    }
    free(jobs);
    free(acks);
    free(keys);
    free(left);
    return acked;
}

/* ---- events ------------------------------------------------------------- */

void
harness_events_init(harness_events_t *self, void *sub)
{
    memset(self, 0, sizeof *self);
    self->sub = sub;
}

/* Receives one two-frame event message into self->buf and decodes it.
 * Returns 1, 0 when nothing came in time, -1 on a bad frame. */
static int
s_events_recv(harness_events_t *self, int timeout_ms)
{
    zmq_pollitem_t it = { self->sub, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return 0;
    zmq_msg_t part;
    zmq_msg_init(&part);
    int tn = zmq_msg_recv(&part, self->sub, 0);
    int n = tn < 0 ? -1 : 0;
    if (tn >= 0) {
        size_t len = (size_t)tn < sizeof self->topic - 1
                         ? (size_t)tn
                         : sizeof self->topic - 1;
        memcpy(self->topic, zmq_msg_data(&part), len);
        self->topic[len] = '\0';
        n = zmq_msg_more(&part) ? zmq_msg_recv(&part, self->sub, 0) : -1;
    }
    if (n >= 0 && (size_t)n > self->cap) {
        char *b = realloc(self->buf, (size_t)n);
        if (!b)
            n = -1;
        else {
            self->buf = b;
            self->cap = (size_t)n;
        }
    }
    if (n > 0)
        memcpy(self->buf, zmq_msg_data(&part), (size_t)n);
    /* drop any further parts */
    while (n >= 0 && zmq_msg_more(&part))
        zmq_msg_recv(&part, self->sub, 0);
    zmq_msg_close(&part);
    if (n <= 0) {
        fprintf(stderr, "harness: events: bad frame on topic %s\n",
                self->topic);
        return -1;
    }
    char why[256];
    if (dv_msg_decode(self->buf, (size_t)n, &self->msg, why, sizeof why) !=
            DV_OK ||
        (self->msg.type != DV_MSG_EVENT && self->msg.type != DV_MSG_EVENTS)) {
        fprintf(stderr, "harness: events: topic %s: %s\n", self->topic,
                self->msg.type ? "not an event" : why);
        dv_msg_release(&self->msg);
        return -1;
    }
    self->next = 0;
    self->len = (size_t)n;
    self->frames++;
    return 1;
}

const dv_event_t *
harness_events_next(harness_events_t *self, int timeout_ms)
{
    for (;;) {
        if (self->msg.type == DV_MSG_EVENT && self->next == 0) {
            self->next = 1;
            return &self->msg.u.event;
        }
        if (self->msg.type == DV_MSG_EVENTS &&
            self->next < self->msg.u.events.nevents)
            return &self->msg.u.events.events[self->next++];
        dv_msg_release(&self->msg);
        if (s_events_recv(self, timeout_ms) <= 0)
            return NULL;
    }
}

void
harness_events_close(harness_events_t *self)
{
    dv_msg_release(&self->msg);
    free(self->buf);
    self->buf = NULL;
    self->cap = 0;
}
