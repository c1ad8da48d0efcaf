/* broker_test_fx - what the broker's unit tests share: a temp directory
 * per test, and a broker opened without sockets on a real SQLite store in
 * it, with a fake clock the test moves itself. cmocka setup/teardown. */
#ifndef BROKER_TEST_FX_H
#define BROKER_TEST_FX_H

#include <stddef.h>

#include <zmq.h>

#include "broker_internal.h"

typedef struct {
    char dir[1024];       /* the test's own directory */
    char url[1100];       /* sqlite:DIR/drover.db */
    broker_clock_t clock; /* b's time, moved by the test */
    broker_config_t cfg;  /* b's configuration */
    broker_t *b;          /* opened by broker_fx_setup; may be NULL */
} broker_fx_t;

/* Makes a new directory DIR/NAME.XXXXXX under $TMPDIR (or /tmp) into dir;
 * fails the test if it cannot. */
void broker_fx_mkdir(char *dir, size_t size, const char *name);

/* Removes dir and the files in it. Returns rmdir's result. */
int broker_fx_rmdir(const char *dir);

/* cmocka setup: a broker_fx_t with b open (sync off, 3 attempts, backoff
 * 1 s doubling to 60 s) at 2027-01-15 by the fake clock. */
int broker_fx_setup(void **state);

/* Makes every write so far durable, closes b, and opens it again on the
 * same store and clock, as a broker that stopped and started. */
void broker_fx_restart(broker_fx_t *fx);

/* A ready job of queue, type "noop", payload nil, with priority and
 * max_attempts (backoff 1 s doubling to 60 s), as a committed submit leaves
 * it: indexed, its insert recorded in the current group, placed. The
 * broker owns it. Fails the test if it cannot. */
broker_job_t *broker_fx_job(broker_fx_t *fx, const char *queue, int priority,
                            int max_attempts);

/* Moves the fake clock (wall and monotonic) ms forward. */
void broker_fx_advance_ms(broker_fx_t *fx, int64_t ms);

/* A worker that said hello, serving queues (comma-separated, at most 8)
 * with credit (and concurrency) credit. The broker owns it. */
broker_worker_t *broker_fx_worker(broker_fx_t *fx, const char *name,
                                  const char *queues, int credit);

/* Dispatches and drops the out lists, as the end of a pass sends them.
 * Returns how many jobs were leased. */
int broker_fx_dispatch(broker_fx_t *fx);

/* Gives fx->b a clients socket (a ROUTER on inproc://) and returns a
 * DEALER connected to it with routing id "cli", which the ROUTER knows
 * already (a first message went through): what the broker sends to that
 * client arrives there. The DEALER is the caller's to close (zmq_close)
 * before b is destroyed; b's socket and context go with b. */
void *broker_fx_client(broker_fx_t *fx);

/* Receives on dealer, within timeout_ms per message, until a message of
 * type comes (others are skipped); it is decoded into *out, its frame in
 * *f (release both: dv_msg_release, zmq_msg_close). Fails the test if
 * none comes in time or one does not decode. */
void broker_fx_recv(void *dealer, dv_msg_type_t type, int timeout_ms,
                    dv_msg_t *out, zmq_msg_t *f);

/* Makes every write recorded so far durable and sends what waited on it,
 * as passes of the loop would (groups pushed one after another until none
 * is in flight). */
void broker_fx_commit(broker_t *b);

/* Answers every store read that is out (the reader must not be held). */
void broker_fx_answer_reads(broker_t *b);

/* cmocka teardown: destroys b, removes the directory. */
int broker_fx_teardown(void **state);

#endif
