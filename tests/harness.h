/* harness - helpers for integration tests that run the real `drover`
 * processes on ipc:// endpoints in a temporary directory.
 *
 * Every process a test starts is recorded by PID and killed (SIGKILL) and
 * reaped in harness_teardown(), whatever the test's outcome. Waiting is done
 * by polling a condition against a deadline (harness_wait_until), never by a
 * fixed sleep. Deadlines scale with DROVER_TIMEOUT_SCALE (sanitizer builds).
 *
 * The store is a SQLite file in the temp dir, or, with DROVER_TEST_STORE=pg
 * in the environment, a fresh database (t<N>) on a throw-away PostgreSQL
 * server (tests/fixtures/pg_server) that the first harness_new() of the
 * process starts, in a temp dir of its own, and an exit handler stops.
 * harness_sql_int() and harness_sql_each() read either.
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "drover.h"
#include "dv_proto.h"

#define HARNESS_MAX_PROCS 64

struct pg_conn; /* libpq's PGconn */

typedef struct {
    char dir[256];      /* temp dir, removed at teardown */
    char store[300];    /* sqlite file, or a PostgreSQL URL */
    char db[32];        /* PostgreSQL: this harness's database, else "" */
    struct pg_conn *pg; /* PostgreSQL: the read connection, or NULL */
    char clients[300];  /* ipc:// endpoints */
    char workers[300];
    char events[300];
    pid_t broker; /* 0 when not running */
    pid_t procs[HARNESS_MAX_PROCS];
    int nprocs;
    int worker_seq;
    drover_client_t *client; /* connected to clients */
    char mount[300];         /* harness_mount_tmpfs's, "" when none */
    /* With harness_curve(): keys in DIR/keys, one allow-list directory per
     * role, and the broker and workers started with CurveZMQ. */
    bool curve;
    char curve_dir[300];
} harness_t;

/* Makes the temp dir and endpoints, and with DROVER_TEST_STORE=pg the
 * database (starting the process's PostgreSQL server the first time);
 * starts no drover process. Returns NULL on error (said on stderr). */
harness_t *harness_new(void);

/* Whether the store is a PostgreSQL database (h->store a URL). */
bool harness_store_is_pg(const harness_t *self);

/* Turns CurveZMQ on for what the harness starts from now on: makes the
 * broker's key and one key per name with `drover keygen` in DIR/keys, puts
 * each public key in its role's allow-list (DIR/allow-ROLE: clients,
 * workers, operators, observers), and sets DROVER_CURVE_SECRET and
 * DROVER_CURVE_SERVER to client's key and the broker's, so libdrover and
 * the CLI connect with them. The broker then starts with --curve-secret
 * and the lists; worker wN with the key called wN (make w1.. as needed).
 * Each list is NULL-terminated (may be NULL). Returns 0 or -1. */
int harness_curve(harness_t *self, const char *client,
                  const char *const *clients, const char *const *operators,
                  const char *const *workers, const char *const *observers);

/* Kills (SIGKILL) and reaps every process still running, closes the client,
 * unmounts what harness_mount_tmpfs mounted, removes the temp dir.
 * NULL-safe. */
void harness_destroy(harness_t **self_p);

/* Starts `drover broker` on the harness endpoints and store with fast
 * heartbeats (0.1 s, timeout 1 s) plus extra args (NULL-terminated list, may
 * be NULL); waits until it answers `status`. Returns its PID or -1. */
pid_t harness_start_broker(harness_t *self, const char *const *extra);

/* Starts `drover worker` with the given args after the harness's own
 * (--broker, --name w<N>, --heartbeat 0.1); its log goes to DIR/worker-N.log.
 * Waits until the broker lists it. Returns its PID or -1. */
pid_t harness_start_worker(harness_t *self, const char *const *args);

/* Like harness_start_broker, but returns as soon as the process is started,
 * without waiting for it to answer (to time a recovery, or to start one
 * while the last one's workers are still around). */
pid_t harness_spawn_broker(harness_t *self, const char *const *extra);

/* Like harness_start_worker, but does not wait for the broker to list it;
 * its name (w<N>) goes to name_out when not NULL. */
pid_t harness_spawn_worker(harness_t *self, const char *const *args,
                           char *name_out, size_t name_size);

/* Starts `drover ARGS...` (args NULL-terminated, without "drover"); its
 * stdout goes to out_name (NULL: /dev/null) and its stderr to log_name, both
 * in the test dir. Does not wait. Returns its PID or -1. */
pid_t harness_spawn(harness_t *self, const char *const *args,
                    const char *out_name, const char *log_name);

/* Starts `drover collector ARGS...` (args NULL-terminated, without
 * "drover collector"; they must hold --bind bind), its stderr to log_name in
 * the test dir, and waits until it answers `status` on bind. The port its
 * HTTP side bound goes to *http_port when not NULL (0 when off). Returns
 * its PID, or -1 if it exited or stayed silent (it is then reaped or
 * killed at teardown). */
pid_t harness_start_collector(harness_t *self, const char *bind,
                              const char *const *args, const char *log_name,
                              int *http_port);

/* The stand-in LLM API (tests/fixtures/llm_stub) as the harness runs it. */
typedef struct {
    pid_t pid;
    int port;         /* it listens on 127.0.0.1:port */
    char record[320]; /* one JSON line per answered request */
} harness_stub_t;

/* Starts the stub binary bin on a free port with the given flags (NULL
 * ended); it records to DIR/NAME.jsonl and logs to DIR/NAME.log, and is
 * killed at teardown. Waits until it listens. Returns 0 or -1. */
int harness_start_stub(harness_t *self, const char *bin, const char *name,
                       const char *const *args, harness_stub_t *out);

/* Kills (SIGKILL) and reaps every process the harness started, and forgets
 * them; the temp dir stays. */
void harness_kill_all(harness_t *self);

/* Mounts a tmpfs of bytes bytes on a new directory subdir of the test dir
 * (needs root); its path goes to path. One mount per harness; it stays
 * until harness_unmount or harness_destroy (which kills the processes
 * first: they hold files on it), so a failed test never leaves it behind.
 * Returns 0, or -1 with errno set. */
int harness_mount_tmpfs(harness_t *self, const char *subdir, size_t bytes,
                        char *path, size_t size);

/* Unmounts (lazily, MNT_DETACH) what harness_mount_tmpfs mounted, if
 * anything; a failure is said on stderr. Returns 0, or -1. */
int harness_unmount(harness_t *self);

/* The live (not zombie) child processes of parent, from /proc: up to max
 * PIDs into out. Returns how many, or -1. */
int harness_children(pid_t parent, pid_t *out, int max);

/* Sends sig to pid and, for SIGKILL/SIGTERM, reaps it within the deadline.
 * Returns the wait status, or -1. */
int harness_signal(harness_t *self, pid_t pid, int sig, int timeout_ms);

/* Waits up to timeout_ms for pid to exit; returns its status or -1. */
int harness_wait_exit(harness_t *self, pid_t pid, int timeout_ms);

/* The broker's status as JSON text (caller frees), or NULL. */
char *harness_status(harness_t *self);

/* Counter from status.counters (e.g. "succeeded"), or -1. */
int64_t harness_counter(harness_t *self, const char *name);

/* Workers the broker currently lists, or -1. */
int harness_worker_count(harness_t *self);

/* Runs a SQL query on the store (a separate read connection) returning one
 * integer (first column of the first row), or -1. Retries for up to 5 s
 * (scaled) while the store is busy or cannot be reached. */
int64_t harness_sql_int(harness_t *self, const char *sql);

/* One row of a harness_sql_each() result, valid during the callback. */
typedef struct harness_row harness_row_t;

/* Column col of row as text ("" for NULL), valid during the callback. */
const char *harness_row_text(const harness_row_t *row, int col);

/* Column col of row as an integer (0 for NULL); a PostgreSQL boolean (a
 * comparison, `SELECT worker='w2' ...`) is 1 or 0, as in SQLite. */
int64_t harness_row_int(const harness_row_t *row, int col);

/* Runs sql on the store (a read connection of the harness, SQLite or
 * PostgreSQL) and calls fn(row, arg) for each row of the result, in order,
 * until fn returns nonzero. Returns the number of rows handed over, or -1
 * with the reason on stderr. Does not retry. */
int harness_sql_each(harness_t *self, const char *sql,
                     int (*fn)(const harness_row_t *row, void *arg), void *arg);

/* Polls cond(arg) every 10 ms until true or timeout_ms (scaled) passes. */
bool harness_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms);

/* Scales a timeout for sanitizer builds. */
int harness_scale(int timeout_ms);

/* Submits n jobs of one kind (payload JSON, same for all) in one call;
 * ids_out (n * 37 bytes) receives ids. Returns 0 if every job was accepted. */
int harness_submit_n(harness_t *self, const char *queue, const char *type,
                     const char *payload_json, int n, char (*ids_out)[37]);

/* The whole text of file name in the test dir (caller frees), or NULL. */
char *harness_read(harness_t *self, const char *name);

/* How many lines of file name (in the test dir) contain every one of the
 * strings after it (NULL-ended). 0 if the file cannot be read. */
int harness_count_lines(harness_t *self, const char *name, ...);

/* True if the bytes of file name (in the test dir) hold needle; false also
 * when there is no such file (a store's WAL, say). */
bool harness_file_has(harness_t *self, const char *name, const char *needle);

/* Waits up to timeout_ms for a line of file name (in the test dir) that
 * contains what. Returns whether one came. */
bool harness_wait_line(harness_t *self, const char *name, const char *what,
                       int timeout_ms);

/* Writes text to file name in the test dir; its path goes to path. Returns
 * 0, or -1 if it cannot be written. */
int harness_write(harness_t *self, const char *name, const char *text,
                  char *path, size_t size);

/* Runs `drover FIRST ARGS...` (NULL-terminated) to completion with its
 * stdout captured into out (size bytes, NUL-terminated). Returns its exit
 * code, or -1 if it could not run or died from a signal. */
int harness_cli(char *out, size_t size, const char *first, ...);

/* The same with the arguments as a NULL-terminated array. */
int harness_cliv(char *out, size_t size, const char *const *args);

/* cmocka setup/teardown: a fresh harness per test in *state; teardown
 * kills whatever the test started, also after a failed assertion. */
int harness_setup(void **state);
int harness_teardown(void **state);

/* Outcomes collected by harness_wait_ids(). Per-index details are kept for
 * the first 64 ids. */
typedef struct {
    int n, succeeded, dead, cancelled, unknown;
    int max_attempts; /* most attempts any job took */
    int retried;      /* jobs that took more than one attempt */
    char state[64][16];
    int attempts[64];
    char category[64][32];
    char error[64][512];
    char result[64][1024];
    int64_t finished[64];
    size_t order[4096]; /* indices in the order results arrived */
    int norder;
} harness_results_t;

/* Waits (drover_wait on the harness client) for n ids, adding their outcomes
 * to out (zero it first). Returns the drover_wait code. */
int harness_wait_ids(harness_t *self, char (*ids)[37], int n,
                     harness_results_t *out, int timeout_ms);

/* Submits jobs [from, from + n) of type with payload (JSON), max_attempts
 * 10, keyed PREFIX-i, on the harness client, at most batch_max a message
 * (0: all at once), and sends again what got no answer until timeout_ms (a
 * failover may come in between; the key makes a resend of a committed job
 * a duplicate). ids[from..] get the ids. Returns how many were
 * acknowledged (n unless the deadline passed). */
int harness_submit_keyed(harness_t *self, const char *prefix, const char *type,
                         const char *payload, int from, int n, int batch_max,
                         char (*ids)[37], int timeout_ms);

/* The broker's events as a SUB socket receives them, one event at a time:
 * a "jobs" batch (type "events") is unpacked into its events, a lone
 * event (type "event") passes as it is. For tests that subscribe to the
 * events endpoint (subscribe to "jobs" for job events, to a kind for the
 * others). */
typedef struct {
    void *sub;
    char *buf; /* the frame the events point into */
    size_t cap;
    dv_msg_t msg;    /* decoded frame; its events are handed out in order */
    uint32_t next;   /* index of the next event of msg */
    char topic[64];  /* the frame's topic */
    size_t len;      /* the frame's size in buf */
    uint64_t frames; /* frames received so far */
} harness_events_t;

/* Reads events from sub (the caller's, connected and subscribed). */
void harness_events_init(harness_events_t *self, void *sub);

/* The next event, waiting up to timeout_ms for a frame; NULL when none came
 * (or on a frame that does not decode, said on stderr). The event (and
 * self->topic) stays valid until the next call or harness_events_close. */
const dv_event_t *harness_events_next(harness_events_t *self, int timeout_ms);

/* Frees what the reader holds; the socket stays the caller's. */
void harness_events_close(harness_events_t *self);

#endif
