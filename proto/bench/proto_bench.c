/* proto_bench - decode and encode speed of the three hot messages: a
 * submit of 1,000 jobs, an update of 1,000 items and a batch of 1,000 job
 * events (built one event at a time, as the broker does). Prints the median of several
 * rounds, in CPU microseconds per message. Not a test: run it by hand,
 *     build/proto/proto_bench [rounds]
 * before and after a change to the codec. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dv_proto.h"

#define S_ITEMS 1000

/* CPU time of this process: other work on the machine disturbs it less
 * than wall time. */
static double
s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One call of what is timed: encode m into sb (or build the events batch
 * of evs), or decode frame. */
typedef struct {
    const dv_msg_t *m;     /* a message, or NULL for the events batch */
    const dv_event_t *evs; /* the batch's events */
    int nevs;
    const msgpack_sbuffer *frame;
    int encode;
} s_case_t;

static void
s_once(const s_case_t *c, msgpack_sbuffer *sb)
{
    if (!c->encode) {
        dv_msg_t out;
        if (dv_msg_decode(c->frame->data, c->frame->size, &out, NULL, 0) !=
            DV_OK)
            abort();
        dv_msg_release(&out);
        return;
    }
    sb->size = 0;
    if (c->m) {
        if (dv_msg_encode(c->m, sb) != DV_OK)
            abort();
        return;
    }
    dv_events_enc_t e;
    if (dv_events_begin(&e, sb) != DV_OK)
        abort();
    for (int k = 0; k < c->nevs; k++)
        if (dv_events_add(&e, sb, &c->evs[k]) != DV_OK)
            abort();
}

/* Median over rounds of the time per call, in microseconds. */
static double
s_time(const s_case_t *c, int rounds)
{
    enum { PER_ROUND = 200 };
    double *t = calloc((size_t)rounds, sizeof *t);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int r = 0; r < rounds; r++) {
        double t0 = s_now_us();
        for (int i = 0; i < PER_ROUND; i++)
            s_once(c, &sb);
        t[r] = (s_now_us() - t0) / PER_ROUND;
    }
    qsort(t, (size_t)rounds, sizeof *t, s_cmp);
    double med = t[rounds / 2];
    free(t);
    msgpack_sbuffer_destroy(&sb);
    return med;
}

/* Decode and encode times of one case, as "decode X us, encode Y us". */
static void
s_report(const char *what, size_t bytes, s_case_t c, int rounds)
{
    c.encode = 0;
    double dec = s_time(&c, rounds);
    c.encode = 1;
    double enc = s_time(&c, rounds);
    printf("%s (%zu bytes): decode %.1f us, encode %.1f us\n", what, bytes, dec,
           enc);
}

int
main(int argc, char **argv)
{
    /* A decode's arrays for 1,000 items are a few hundred KB: glibc would
     * map and unmap them at each call (its threshold is 128 KB until a
     * free raises it, and a trim gives the pages back), and the page
     * faults would dwarf the codec. The daemons reuse their heap. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1)
        rounds = 1;
    static const char payload[] = "\x82\xa6prompt\xb4summarise this text\xa1n"
                                  "\x93\x01\x02\x03";
    static const char result[] = "\x81\xa4text\xaeok, summarised";
    static char keys[S_ITEMS][32], ids[S_ITEMS][37];
    dv_jobspec_t *jobs = calloc(S_ITEMS, sizeof *jobs);
    dv_update_t *items = calloc(S_ITEMS, sizeof *items);
    for (int i = 0; i < S_ITEMS; i++) {
        snprintf(keys[i], sizeof keys[i], "prompt-%06d", i);
        snprintf(ids[i], sizeof ids[i], "0190f3a2-7b4c-7def-8123-%012d", i);
        dv_jobspec_t *j = &jobs[i];
        j->queue = dv_str("llm");
        j->type = dv_str("http");
        j->payload = dv_strn(payload, sizeof payload - 1);
        j->key = dv_str(keys[i]);
        j->batch = dv_str("batch-7");
        j->priority = i % 10;
        j->max_attempts = 5;
        j->timeout_ms = 30000;
        dv_update_t *u = &items[i];
        dv_failure_init(&u->failure);
        u->id = dv_str(ids[i]);
        u->attempt = 1;
        u->ts_ms = 1795369260000 + i;
        if (i % 10 == 9) {
            u->kind = DV_UPD_FAILED;
            u->failure.category = DV_CAT_UPSTREAM;
            u->failure.message = dv_str("502 Bad Gateway");
            u->failure.retryable = true;
            u->failure.http_status = 502;
        } else {
            u->kind = DV_UPD_SUCCEEDED;
            u->result = dv_strn(result, sizeof result - 1);
        }
    }
    dv_msg_t sub = { .type = DV_MSG_SUBMIT };
    sub.u.submit.req = 1;
    sub.u.submit.jobs = jobs;
    sub.u.submit.njobs = S_ITEMS;
    dv_msg_t upd = { .type = DV_MSG_UPDATE };
    upd.u.update.credit = S_ITEMS;
    upd.u.update.items = items;
    upd.u.update.nitems = S_ITEMS;

    /* job.succeeded as the broker publishes a fast job's end: its start
     * folded in. */
    dv_event_t *evs = calloc(S_ITEMS, sizeof *evs);
    for (int i = 0; i < S_ITEMS; i++) {
        dv_event_t *ev = &evs[i];
        dv_failure_init(&ev->failure);
        ev->seq = 1000000 + (uint64_t)i;
        ev->broker = dv_str("broker-7f3a");
        ev->ts_ms = 1795369260000 + i;
        ev->kind_enum = DV_EV_JOB_SUCCEEDED;
        ev->id = dv_str(ids[i]);
        ev->queue = dv_str("llm");
        ev->type = dv_str("http");
        ev->worker = dv_str("host-3:4711");
        ev->attempt = 1;
        ev->state = DV_STATE_SUCCEEDED;
        ev->started_ms = 1795369259990 + i;
        ev->wait_ms = 3;
        ev->run_ms = 10;
    }

    msgpack_sbuffer fs, fu, fe;
    msgpack_sbuffer_init(&fs);
    msgpack_sbuffer_init(&fu);
    msgpack_sbuffer_init(&fe);
    dv_events_enc_t ee;
    if (dv_msg_encode(&sub, &fs) != DV_OK ||
        dv_msg_encode(&upd, &fu) != DV_OK || dv_events_begin(&ee, &fe) != DV_OK)
        return 1;
    for (int i = 0; i < S_ITEMS; i++)
        if (dv_events_add(&ee, &fe, &evs[i]) != DV_OK)
            return 1;
    s_report("submit 1000 jobs", fs.size, (s_case_t){ .m = &sub, .frame = &fs },
             rounds);
    s_report("update 1000 items", fu.size,
             (s_case_t){ .m = &upd, .frame = &fu }, rounds);
    s_report("events 1000 jobs", fe.size,
             (s_case_t){ .evs = evs, .nevs = S_ITEMS, .frame = &fe }, rounds);
    msgpack_sbuffer_destroy(&fs);
    msgpack_sbuffer_destroy(&fu);
    msgpack_sbuffer_destroy(&fe);
    free(evs);
    free(jobs);
    free(items);
    return 0;
}
