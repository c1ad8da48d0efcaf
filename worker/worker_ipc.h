/* worker_ipc - frames between the worker supervisor and its children.
 *
 * Each child is joined to the supervisor by a socketpair(AF_UNIX,
 * SOCK_STREAM). The stream carries frames:
 *
 *     frame := u32 length N, big-endian, 1 <= N <= WORKER_IPC_MAX
 *              N bytes: one msgpack array [kind, tag, ...]
 *
 * tag is the supervisor's job slot number; the child echoes it so the
 * supervisor can check that a report is about the job it expects (a child
 * reports on its jobs strictly in the order it was given them).
 *
 * supervisor -> child
 *   [1 RUN,  tag, id, type, queue, attempt, payload bin|nil, trace str|nil]
 *   [2 SKIP, tag]            drop that job if it has not started yet
 * child -> supervisor
 *   [10 STARTED,   tag]
 *   [11 PROGRESS,  tag, current, total, message str]
 *   [12 SUCCEEDED, tag, result bin]
 *   [13 FAILED,    tag, category, retryable, message str, retry_after_ms,
 *                  exit_code, signal, details str|nil, stderr str|nil]
 *                            details and stderr: the ends of the handler's
 *                            details and of its stderr, each at most
 *                            DV_DETAILS_MAX bytes of UTF-8 without NUL, nil
 *                            when empty
 *   [14 SKIPPED,   tag]      answer to SKIP for a job never started
 *   [15 RECYCLE,   0, rss]   over max_rss_per_child (rss bytes) after a
 *                            job: the child starts no more jobs, answers
 *                            SKIPs, and leaves when its socket is closed
 *
 * This is an internal format: both ends are the same binary, so there is no
 * version field. It is still validated on read, because a child runs
 * arbitrary handler code and a bug there must not take down the supervisor.
 * The reader here decodes only this msgpack subset, without allocating,
 * because the supervisor decodes two frames per job on its hot path.
 */
#ifndef WORKER_IPC_H
#define WORKER_IPC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_proto.h"

/* Largest frame body: a 1 MiB payload or result plus its envelope. */
#define WORKER_IPC_MAX ((2u << 20) + 64u * 1024u)

typedef enum {
    WORKER_IPC_RUN = 1,
    WORKER_IPC_SKIP = 2,
    WORKER_IPC_STARTED = 10,
    WORKER_IPC_PROGRESS = 11,
    WORKER_IPC_SUCCEEDED = 12,
    WORKER_IPC_FAILED = 13,
    WORKER_IPC_SKIPPED = 14,
    WORKER_IPC_RECYCLE = 15,
} worker_ipc_kind_t;

/* A growable byte buffer with a read position: bytes [off, len) are
 * unconsumed. Used for both directions of a child's stream. */
typedef struct {
    char *data;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of valid bytes */
    size_t cap; /* allocated size */
} worker_buf_t;

/* A decoded frame. String views point into the frame's bytes. */
typedef struct {
    worker_ipc_kind_t kind;
    uint32_t tag;
    dv_str_t id, type, queue; /* RUN */
    dv_str_t payload;         /* RUN: one msgpack value, ptr NULL = nil */
    dv_str_t trace;           /* RUN: optional */
    int32_t attempt;          /* RUN */
    int64_t current, total;   /* PROGRESS; RECYCLE: current = rss */
    dv_str_t message;         /* PROGRESS, FAILED */
    dv_str_t result;          /* SUCCEEDED: one msgpack value */
    dv_failure_t failure;     /* FAILED (message, details and stderr_tail
                                 are views, as above; absent when empty) */
} worker_ipc_msg_t;

void worker_buf_init(worker_buf_t *b);
void worker_buf_free(worker_buf_t *b);

/* Makes room for more bytes after len. Returns 0 or -1 (out of memory). */
int worker_buf_reserve(worker_buf_t *b, size_t more);

/* Appends n bytes. Returns 0 or -1 (out of memory). */
int worker_buf_append(worker_buf_t *b, const void *p, size_t n);

/* Drops everything (keeps the allocation). */
void worker_buf_reset(worker_buf_t *b);

/* Moves unconsumed bytes to the front, so a reader can fill the tail. */
void worker_buf_compact(worker_buf_t *b);

/* Unconsumed bytes. */
static inline size_t
worker_buf_pending(const worker_buf_t *b)
{
    return b->len - b->off;
}

/* msgpack_packer write callback appending to a worker_buf_t. */
int worker_buf_write(void *data, const char *buf, size_t len);

/* Finds the next complete frame in b's unconsumed bytes. Returns 1 and
 * sets *body and *len (pointing into b; valid until b changes) and consumes the
 * frame; 0 if more bytes are needed; -1 if the length prefix is invalid
 * (zero or over WORKER_IPC_MAX: the stream is corrupt). */
int worker_ipc_next(worker_buf_t *b, const char **body, uint32_t *len);

/* Decodes one frame body. Returns 0, or -1 if it is not a valid frame of a
 * known kind, or carries what the broker would refuse in a report
 * (negative progress, a result that is not one msgpack value, a text
 * over DV_TEXT_MAX, details or stderr over DV_DETAILS_MAX or not clean
 * UTF-8). Never reads past len, never allocates. */
int worker_ipc_decode(const char *body, uint32_t len, worker_ipc_msg_t *m);

/* Append one whole frame to b. Each returns 0, DV_ENOMEM if out of
 * memory, or DV_ETOOBIG if the frame would exceed WORKER_IPC_MAX (b is
 * then left unchanged). */
int worker_ipc_put_run(worker_buf_t *b, uint32_t tag, dv_str_t id,
                       dv_str_t type, dv_str_t queue, int32_t attempt,
                       dv_str_t payload, dv_str_t trace);
int worker_ipc_put_tag(worker_buf_t *b, worker_ipc_kind_t kind, uint32_t tag);
int worker_ipc_put_progress(worker_buf_t *b, uint32_t tag, int64_t current,
                            int64_t total, dv_str_t message);
int worker_ipc_put_succeeded(worker_buf_t *b, uint32_t tag, dv_str_t result);
/* f's details and stderr_tail are written as their last DV_DETAILS_MAX
 * bytes at most (worker_utf8_tail), with each byte that is not valid UTF-8,
 * and each NUL, as '?' (worker_utf8_repair); nil when empty. */
int worker_ipc_put_failed(worker_buf_t *b, uint32_t tag, const dv_failure_t *f);
int worker_ipc_put_recycle(worker_buf_t *b, int64_t rss);

/* Length of the longest prefix of s[0..len) that is at most max bytes and
 * does not end inside a UTF-8 sequence. Used to cap texts that must stay
 * valid strings on the wire. */
size_t worker_utf8_cut(const char *s, size_t len, size_t max);

/* True if s[0..len) is valid UTF-8. */
bool worker_utf8_valid(const char *s, size_t len);

/* Where the end of s[0..len) that is kept under a cap of max bytes
 * starts: at len - max or later, moved past continuation bytes so the kept
 * text does not begin inside a UTF-8 sequence. 0 if len <= max. */
size_t worker_utf8_tail(const char *s, size_t len, size_t max);

/* Replaces, in place, each byte of s[0..len) that is not part of a valid
 * UTF-8 sequence, and each NUL, with '?' (same length, so caps still
 * hold). Returns how many bytes it replaced. */
size_t worker_utf8_repair(char *s, size_t len);

/* True if s[0..len) is valid UTF-8 without NUL (what worker_utf8_repair
 * leaves). */
bool worker_utf8_clean(const char *s, size_t len);

#endif
