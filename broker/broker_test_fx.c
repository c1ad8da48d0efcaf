/* broker_test_fx - see broker_test_fx.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <zmq.h>

#include "broker_test_fx.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
broker_fx_mkdir(char *dir, size_t size, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(dir));
}

int
broker_fx_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[1024 + 260];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    return rmdir(dir);
}

int
broker_fx_setup(void **state)
{
    broker_fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    broker_fx_mkdir(fx->dir, sizeof fx->dir, "broker_test");
    snprintf(fx->url, sizeof fx->url, "sqlite:%s/drover.db", fx->dir);
    fx->clock.now_ms = 1800000000000; /* 2027 */
    fx->clock.mono_us = 1000000000;   /* 1000 s after boot */
    fx->cfg = (broker_config_t){
        .store_url = fx->url,
        .sync = BROKER_SYNC_OFF,
        .heartbeat_ms = 1000,
        .worker_timeout_ms = 5000,
        .default_max_attempts = 3,
        .default_result_ttl_ms = 3600000,
        .default_backoff = { 1000, 2.0, 60000, false },
        .batch_max = 100,
    };
    fx->b = broker_core_open_at(&fx->cfg, &fx->clock);
    assert_non_null(fx->b);
    *state = fx;
    return 0;
}

void
broker_fx_restart(broker_fx_t *fx)
{
    broker_group_end_pass(fx->b);
    broker_group_drain_all(fx->b);
    broker_destroy(&fx->b);
    fx->b = broker_core_open_at(&fx->cfg, &fx->clock);
    assert_non_null(fx->b);
}

broker_job_t *
broker_fx_job(broker_fx_t *fx, const char *queue, int priority,
              int max_attempts)
{
    broker_t *b = fx->b;
    dv_id_t id;
    dv_id_new(&id);
    broker_job_t *job = broker_job_new(&id, "\x90", 1);
    assert_non_null(job);
    job->queue = broker_sched_queue(b, queue);
    assert_non_null(job->queue);
    job->type = broker_sched_intern(b, dv_str("noop"));
    job->priority = (uint8_t)priority;
    job->max_attempts = (uint16_t)max_attempts;
    job->backoff_base_ms = 1000;
    job->backoff_factor = 2.0f;
    job->backoff_cap_ms = 60000;
    job->run_at_ms = fx->clock.now_ms;
    char idtext[DV_ID_TEXT_LEN + 1];
    dv_id_format(&id, idtext);
    broker_jobrec_t rec = {
        .id = idtext,
        .queue = queue,
        .type = job->type,
        .payload = job->payload,
        .payload_len = job->payload_len,
        .state = DV_STATE_QUEUED,
        .priority = priority,
        .created_ms = fx->clock.now_ms,
        .run_at_ms = job->run_at_ms,
        .max_attempts = max_attempts,
        .backoff = { 1000, 2.0, 60000, false },
        .result_ttl_ms = 3600000,
    };
    assert_int_equal(broker_index_put(&b->index, job), 0);
    assert_int_equal(broker_wbatch_insert(&b->cur->wb, &rec), 0);
    broker_sched_place(b, job, false);
    assert_int_equal(job->state, DV_STATE_QUEUED);
    return job;
}

void
broker_fx_advance_ms(broker_fx_t *fx, int64_t ms)
{
    fx->clock.now_ms += ms;
    fx->clock.mono_us += ms * 1000;
}

broker_worker_t *
broker_fx_worker(broker_fx_t *fx, const char *name, const char *queues,
                 int credit)
{
    broker_t *b = fx->b;
    broker_rid_t rid = { .len = (uint8_t)strlen(name) };
    memcpy(rid.data, name, rid.len);
    broker_worker_t *w = broker_worker_new(b, &rid);
    assert_non_null(w);
    dv_str_t names[8];
    uint32_t n = 0;
    const char *p = queues;
    while (*p && n < 8) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        names[n++] = dv_strn(p, len);
        p += len + (comma ? 1 : 0);
    }
    assert_int_equal(broker_worker_set_queues(b, w, names, n), 0);
    w->concurrency = credit;
    w->credit = credit;
    w->known = true;
    w->last_seen_ms = broker_mono_ms(b);
    b->dispatch_needed = true;
    return w;
}

int
broker_fx_dispatch(broker_fx_t *fx)
{
    broker_t *b = fx->b;
    uint64_t before = b->counters.dispatched;
    broker_sched_dispatch(b);
    for (size_t k = 0; k < b->noutq; k++)
        b->outq[k]->out_count = 0;
    b->noutq = 0;
    return (int)(b->counters.dispatched - before);
}

int
broker_fx_teardown(void **state)
{
    broker_fx_t *fx = *state;
    broker_destroy(&fx->b);
    int rc = broker_fx_rmdir(fx->dir);
    free(fx);
    return rc;
}

void *
broker_fx_client(broker_fx_t *fx)
{
    broker_t *b = fx->b;
    int linger = 0, hwm = 0; /* no limit: a test may queue thousands */
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://fx-%p", (void *)b);
    /* The broker's: closed and ended by broker_destroy. */
    b->zctx = zmq_ctx_new();
    b->clients = zmq_socket(b->zctx, ZMQ_ROUTER);
    zmq_setsockopt(b->clients, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(b->clients, ZMQ_SNDHWM, &hwm, sizeof hwm);
    assert_int_equal(zmq_bind(b->clients, ep), 0);
    void *dealer = zmq_socket(b->zctx, ZMQ_DEALER);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(dealer, ZMQ_ROUTING_ID, "cli", 3);
    assert_int_equal(zmq_connect(dealer, ep), 0);
    /* One message in, so that the ROUTER knows the routing id. */
    assert_int_equal(zmq_send(dealer, "hi", 2, 0), 2);
    char buf[16];
    assert_int_equal(zmq_recv(b->clients, buf, sizeof buf, 0), 3);
    assert_int_equal(zmq_recv(b->clients, buf, sizeof buf, 0), 2);
    return dealer;
}

void
broker_fx_commit(broker_t *b)
{
    broker_group_end_pass(b);
    while (b->inflight) {
        broker_writer_wait(b->writer);
        broker_group_writer_ready(b);
        broker_group_submit(b);
    }
}

void
broker_fx_answer_reads(broker_t *b)
{
    while (broker_reader_wait(b->reader))
        broker_reads_ready(b);
}

void
broker_fx_recv(void *dealer, dv_msg_type_t type, int timeout_ms, dv_msg_t *out,
               zmq_msg_t *f)
{
    for (;;) {
        zmq_pollitem_t it = { dealer, 0, ZMQ_POLLIN, 0 };
        assert_int_equal(zmq_poll(&it, 1, timeout_ms), 1);
        zmq_msg_init(f);
        assert_true(zmq_msg_recv(f, dealer, 0) >= 0);
        char why[128] = "";
        assert_int_equal(dv_msg_decode(zmq_msg_data(f), zmq_msg_size(f), out,
                                       why, sizeof why),
                         DV_OK);
        if (out->type == type)
            return;
        dv_msg_release(out);
        zmq_msg_close(f);
    }
}
