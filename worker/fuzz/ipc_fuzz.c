/* ipc_fuzz - fuzz target for the supervisor<->child frames (worker_ipc).
 *
 * A handler child is untrusted: whatever it writes, the supervisor's
 * decoder must reject cleanly or accept something it can act on. Each
 * input is used twice:
 *   - as one frame body: a failed decode is fine; a frame that decodes
 *     must encode with the writers, decode again to the same kind and
 *     tag, and encode to the same bytes (decode and encode agree); a
 *     report from a child (progress, succeeded, failed) must go through
 *     the outbox into an UPDATE that the broker's decoder accepts, so one
 *     bad report cannot spoil the others it travels with;
 *   - as a stream: split into frames by their length prefixes, each
 *     decoded, until the stream ends or is found corrupt.
 *
 * Built with clang and -DDROVER_FUZZ=ON this is a libFuzzer target;
 * otherwise cmake/fuzz_replay.c replays the seed corpus and every input
 * that ever crashed (regressions/) through it as a ctest
 * (cmake/DroverFuzz.cmake). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_proto.h"
#include "worker_ipc.h"
#include "worker_outbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char s_job_id[] = "0190a1b2-0000-7000-8000-000000000001";

_Noreturn static void
s_die(const char *what, int kind)
{
    fprintf(stderr, "ipc_fuzz: %s (kind %d)\n", what, kind);
    abort();
}

/* Writes m back as a whole frame (length prefix included). */
static int
s_put(worker_buf_t *b, const worker_ipc_msg_t *m)
{
    switch (m->kind) {
    case WORKER_IPC_RUN:
        return worker_ipc_put_run(b, m->tag, m->id, m->type, m->queue,
                                  m->attempt, m->payload, m->trace);
    case WORKER_IPC_SKIP:
    case WORKER_IPC_STARTED:
    case WORKER_IPC_SKIPPED:
        return worker_ipc_put_tag(b, m->kind, m->tag);
    case WORKER_IPC_PROGRESS:
        return worker_ipc_put_progress(b, m->tag, m->current, m->total,
                                       m->message);
    case WORKER_IPC_SUCCEEDED:
        return worker_ipc_put_succeeded(b, m->tag, m->result);
    case WORKER_IPC_FAILED:
        return worker_ipc_put_failed(b, m->tag, &m->failure);
    case WORKER_IPC_RECYCLE:
        return worker_ipc_put_recycle(b, m->current);
    }
    s_die("decoded an unknown kind", (int)m->kind);
}

/* Encodes m, decodes the result into *again; returns the frame's body
 * (in b). */
static const char *
s_round(worker_buf_t *b, const worker_ipc_msg_t *m, worker_ipc_msg_t *again,
        uint32_t *len)
{
    worker_buf_reset(b);
    if (s_put(b, m) != 0)
        s_die("a decoded frame does not encode", (int)m->kind);
    const char *body;
    if (worker_ipc_next(b, &body, len) != 1)
        s_die("an encoded frame is not one whole frame", (int)m->kind);
    if (worker_ipc_decode(body, *len, again) != 0)
        s_die("an encoded frame does not decode", (int)m->kind);
    if (again->kind != m->kind || again->tag != m->tag)
        s_die("re-decode changed the kind or tag", (int)m->kind);
    return body;
}

/* A child's report, as the supervisor would pass it on, must be one the
 * broker accepts. */
static void
s_check_report(const worker_ipc_msg_t *m)
{
    worker_outbox_t *ob = worker_outbox_new();
    if (!ob)
        return;
    worker_exec_t id = { dv_strn(s_job_id, sizeof s_job_id - 1), 1, 1 };
    int rc = 0;
    switch (m->kind) {
    case WORKER_IPC_PROGRESS:
        rc = worker_outbox_progress(ob, id, m->current, m->total, m->message);
        break;
    case WORKER_IPC_SUCCEEDED:
        if (m->result.len > DV_PAYLOAD_MAX) /* the pool fails those */
            break;
        rc = worker_outbox_succeeded(ob, id, 1000, m->result);
        break;
    case WORKER_IPC_FAILED:
        rc = worker_outbox_failed(ob, id, 1000, &m->failure);
        break;
    default:
        break;
    }
    if (rc != 0)
        s_die("the outbox refused a report", (int)m->kind);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint32_t n;
    if (worker_outbox_size(ob) > 0) {
        if (worker_outbox_encode(ob, &sb, &n) != 0)
            s_die("an UPDATE with the report does not encode", (int)m->kind);
        dv_msg_t msg;
        char why[256];
        if (dv_msg_decode(sb.data, sb.size, &msg, why, sizeof why) != DV_OK) {
            fprintf(stderr, "ipc_fuzz: broker side: %s\n", why);
            s_die("the broker would refuse the report", (int)m->kind);
        }
        dv_msg_release(&msg);
    }
    msgpack_sbuffer_destroy(&sb);
    worker_outbox_destroy(&ob);
}

static void
s_one_frame(const uint8_t *data, size_t size)
{
    if (size > WORKER_IPC_MAX)
        return; /* the framing never hands the decoder more */
    worker_ipc_msg_t m, again, third;
    if (worker_ipc_decode((const char *)data, (uint32_t)size, &m) != 0)
        return;
    worker_buf_t first, second;
    worker_buf_init(&first);
    worker_buf_init(&second);
    uint32_t n1, n2;
    const char *b1 = s_round(&first, &m, &again, &n1);
    const char *b2 = s_round(&second, &again, &third, &n2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        s_die("encode(decode(x)) is not a fixed point", (int)m.kind);
    s_check_report(&m);
    worker_buf_free(&second);
    worker_buf_free(&first);
}

static void
s_stream(const uint8_t *data, size_t size)
{
    worker_buf_t b;
    worker_buf_init(&b);
    if (worker_buf_append(&b, data, size) != 0)
        return;
    const char *body;
    uint32_t len;
    worker_ipc_msg_t m;
    while (worker_ipc_next(&b, &body, &len) == 1)
        (void)worker_ipc_decode(body, len, &m);
    worker_buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_one_frame(data, size);
    s_stream(data, size);
    return 0;
}
