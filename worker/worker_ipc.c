#include "worker_ipc.h"

#include "dv_err.h"

#include <stdlib.h>
#include <string.h>

void
worker_buf_init(worker_buf_t *b)
{
    memset(b, 0, sizeof *b);
}

void
worker_buf_free(worker_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int
worker_buf_reserve(worker_buf_t *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    if (b->off > 0 && b->cap - (b->len - b->off) >= more) {
        worker_buf_compact(b);
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more) {
        if (cap > ((size_t)1 << 40))
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int
worker_buf_append(worker_buf_t *b, const void *p, size_t n)
{
    if (worker_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void
worker_buf_reset(worker_buf_t *b)
{
    b->off = b->len = 0;
}

void
worker_buf_compact(worker_buf_t *b)
{
    if (b->off == 0)
        return;
    size_t n = b->len - b->off;
    if (n)
        memmove(b->data, b->data + b->off, n);
    b->off = 0;
    b->len = n;
}

int
worker_buf_write(void *data, const char *buf, size_t len)
{
    return worker_buf_append((worker_buf_t *)data, buf, len);
}

int
worker_ipc_next(worker_buf_t *b, const char **body, uint32_t *len)
{
    size_t avail = b->len - b->off;
    if (avail < 4)
        return 0;
    const unsigned char *h = (const unsigned char *)b->data + b->off;
    uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
                 (uint32_t)h[2] << 8 | (uint32_t)h[3];
    if (n == 0 || n > WORKER_IPC_MAX)
        return -1;
    if (avail - 4 < n)
        return 0;
    *body = b->data + b->off + 4;
    *len = n;
    b->off += 4 + (size_t)n;
    return 1;
}

/* ---- reader for the msgpack subset we write ------------------------- */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    bool bad;
} s_rd_t;

static uint64_t
s_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static bool
s_need(s_rd_t *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static uint32_t
s_rd_array(s_rd_t *r)
{
    if (!s_need(r, 1))
        return 0;
    unsigned c = *r->p;
    if (c >= 0x90 && c <= 0x9f) {
        r->p++;
        return c & 0x0f;
    }
    if (c == 0xdc && s_need(r, 3)) {
        uint32_t n = (uint32_t)s_be(r->p + 1, 2);
        r->p += 3;
        return n;
    }
    r->bad = true;
    return 0;
}

static int64_t
s_rd_int(s_rd_t *r)
{
    if (!s_need(r, 1))
        return 0;
    unsigned c = *r->p;
    if (c <= 0x7f) {
        r->p++;
        return c;
    }
    if (c >= 0xe0) {
        r->p++;
        return (int8_t)c;
    }
    int n = 0;
    bool sign = false;
    switch (c) {
    case 0xcc:
        n = 1;
        break;
    case 0xcd:
        n = 2;
        break;
    case 0xce:
        n = 4;
        break;
    case 0xcf:
        n = 8;
        break;
    case 0xd0:
        n = 1;
        sign = true;
        break;
    case 0xd1:
        n = 2;
        sign = true;
        break;
    case 0xd2:
        n = 4;
        sign = true;
        break;
    case 0xd3:
        n = 8;
        sign = true;
        break;
    default:
        r->bad = true;
        return 0;
    }
    if (!s_need(r, 1 + (size_t)n))
        return 0;
    uint64_t v = s_be(r->p + 1, n);
    r->p += 1 + n;
    if (!sign) {
        if (v > (uint64_t)INT64_MAX)
            r->bad = true;
        return (int64_t)v;
    }
    /* sign-extend from n bytes */
    int shift = 64 - 8 * n;
    return (int64_t)(v << shift) >> shift;
}

static bool
s_rd_bool(s_rd_t *r)
{
    if (!s_need(r, 1))
        return false;
    unsigned c = *r->p++;
    if (c == 0xc3)
        return true;
    if (c != 0xc2)
        r->bad = true;
    return false;
}

/* Reads a str (want_bin false) or bin (true), or nil (ptr NULL). */
static dv_str_t
s_rd_bytes(s_rd_t *r, bool want_bin)
{
    dv_str_t v = { NULL, 0 };
    if (!s_need(r, 1))
        return v;
    unsigned c = *r->p;
    size_t hdr = 1;
    uint64_t n = 0;
    if (c == 0xc0) {
        r->p++;
        return v;
    }
    if (!want_bin && c >= 0xa0 && c <= 0xbf) {
        n = c & 0x1f;
    } else if ((!want_bin && c == 0xd9) || (want_bin && c == 0xc4)) {
        hdr = 2;
    } else if ((!want_bin && c == 0xda) || (want_bin && c == 0xc5)) {
        hdr = 3;
    } else if ((!want_bin && c == 0xdb) || (want_bin && c == 0xc6)) {
        hdr = 5;
    } else {
        r->bad = true;
        return v;
    }
    if (!s_need(r, hdr))
        return v;
    if (hdr > 1)
        n = s_be(r->p + 1, (int)hdr - 1);
    if (!s_need(r, hdr + n))
        return v;
    v.ptr = (const char *)r->p + hdr;
    v.len = (uint32_t)n;
    r->p += hdr + n;
    return v;
}

int
worker_ipc_decode(const char *body, uint32_t len, worker_ipc_msg_t *m)
{
    memset(m, 0, sizeof *m);
    s_rd_t r = { (const unsigned char *)body, (const unsigned char *)body + len,
                 false };
    uint32_t n = s_rd_array(&r);
    if (r.bad || n < 2)
        return -1;
    int64_t kind = s_rd_int(&r);
    int64_t tag = s_rd_int(&r);
    if (r.bad || tag < 0 || tag > UINT32_MAX)
        return -1;
    m->kind = (worker_ipc_kind_t)kind;
    m->tag = (uint32_t)tag;
    uint32_t want;
    switch (kind) {
    case WORKER_IPC_RUN: {
        want = 8;
        if (n != want)
            return -1;
        m->id = s_rd_bytes(&r, false);
        m->type = s_rd_bytes(&r, false);
        m->queue = s_rd_bytes(&r, false);
        int64_t a = s_rd_int(&r);
        m->payload = s_rd_bytes(&r, true);
        m->trace = s_rd_bytes(&r, false);
        if (a < 0 || a > INT32_MAX || !m->id.ptr || !m->type.ptr ||
            !m->queue.ptr)
            return -1;
        m->attempt = (int32_t)a;
        if (m->payload.ptr && dv_mp_validate(m->payload.ptr, m->payload.len,
                                             DV_VALUE_DEPTH_MAX) != DV_OK)
            return -1;
        break;
    }
    case WORKER_IPC_SKIP:
    case WORKER_IPC_STARTED:
    case WORKER_IPC_SKIPPED:
        want = 2;
        break;
    case WORKER_IPC_PROGRESS:
        want = 5;
        if (n != want)
            return -1;
        m->current = s_rd_int(&r);
        m->total = s_rd_int(&r);
        m->message = s_rd_bytes(&r, false);
        /* What the broker accepts in a progress report. */
        if (m->current < 0 || m->total < 0 || m->message.len > DV_TEXT_MAX)
            return -1;
        break;
    case WORKER_IPC_RECYCLE:
        want = 3;
        if (n != want)
            return -1;
        m->current = s_rd_int(&r);
        if (m->current < 0 || m->tag != 0) /* about the child, not a job */
            return -1;
        break;
    case WORKER_IPC_SUCCEEDED:
        want = 3;
        if (n != want)
            return -1;
        m->result = s_rd_bytes(&r, true);
        /* A result is always one value; nil is encoded as the byte 0xc0.
         * Checked here, as the broker will: one bad result must not make
         * the whole UPDATE it travels in undecodable. */
        if (!m->result.ptr || dv_mp_validate(m->result.ptr, m->result.len,
                                             DV_VALUE_DEPTH_MAX) != DV_OK)
            return -1;
        break;
    case WORKER_IPC_FAILED: {
        want = 10;
        if (n != want)
            return -1;
        dv_failure_init(&m->failure);
        int64_t cat = s_rd_int(&r);
        m->failure.retryable = s_rd_bool(&r);
        m->failure.message = s_rd_bytes(&r, false);
        int64_t ra = s_rd_int(&r);
        int64_t ec = s_rd_int(&r);
        int64_t sig = s_rd_int(&r);
        dv_str_t det = s_rd_bytes(&r, false);
        dv_str_t err = s_rd_bytes(&r, false);
        if (r.bad || cat <= DV_CAT_NONE || cat >= DV_CAT_COUNT_ || ra < 0 ||
            ec < -1 || ec > 255 || sig < 0 || sig > 128 ||
            m->failure.message.len > DV_TEXT_MAX || det.len > DV_DETAILS_MAX ||
            err.len > DV_DETAILS_MAX || !worker_utf8_clean(det.ptr, det.len) ||
            !worker_utf8_clean(err.ptr, err.len))
            return -1;
        /* Empty is absent, as the writer sends it. */
        if (det.len)
            m->failure.details = det;
        if (err.len)
            m->failure.stderr_tail = err;
        m->failure.category = (dv_category_t)cat;
        m->failure.retry_after_ms = ra;
        m->failure.exit_code = (int32_t)ec;
        m->failure.signal = (int32_t)sig;
        m->message = m->failure.message;
        break;
    }
    default:
        return -1;
    }
    if (n != want || r.bad || r.p != r.end)
        return -1;
    return 0;
}

/* ---- writers --------------------------------------------------------- */

static size_t s_utf8_seq(const unsigned char *s, size_t n);

/* Starts a frame: reserves the length prefix and returns its offset. */
static size_t
s_begin(worker_buf_t *b, msgpack_packer *pk)
{
    size_t start = b->len;
    static const char zero[4] = { 0 };
    worker_buf_append(b, zero, 4);
    msgpack_packer_init(pk, b, worker_buf_write);
    return start;
}

/* Patches the length prefix; on failure rolls the buffer back to start. */
static int
s_end(worker_buf_t *b, size_t start, int rc)
{
    if (rc != 0 || b->len < start + 4) {
        b->len = start < b->len ? start : b->len;
        return DV_ENOMEM; /* the packer's only failure is a failed append */
    }
    size_t n = b->len - start - 4;
    if (n == 0 || n > WORKER_IPC_MAX) {
        b->len = start;
        return DV_ETOOBIG;
    }
    unsigned char *h = (unsigned char *)b->data + start;
    h[0] = (unsigned char)(n >> 24);
    h[1] = (unsigned char)(n >> 16);
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    return 0;
}

static int
s_str(msgpack_packer *pk, dv_str_t s)
{
    if (!s.ptr)
        return msgpack_pack_nil(pk);
    int rc = msgpack_pack_str(pk, s.len);
    return rc ? rc : msgpack_pack_str_body(pk, s.ptr, s.len);
}

static int
s_bin(msgpack_packer *pk, dv_str_t s)
{
    if (!s.ptr)
        return msgpack_pack_nil(pk);
    int rc = msgpack_pack_bin(pk, s.len);
    return rc ? rc : msgpack_pack_bin_body(pk, s.ptr, s.len);
}

int
worker_ipc_put_run(worker_buf_t *b, uint32_t tag, dv_str_t id, dv_str_t type,
                   dv_str_t queue, int32_t attempt, dv_str_t payload,
                   dv_str_t trace)
{
    if ((size_t)payload.len + id.len + type.len + queue.len + trace.len >
        WORKER_IPC_MAX - 64)
        return DV_ETOOBIG;
    msgpack_packer pk;
    size_t start = s_begin(b, &pk);
    int rc = msgpack_pack_array(&pk, 8);
    rc |= msgpack_pack_int(&pk, WORKER_IPC_RUN);
    rc |= msgpack_pack_uint32(&pk, tag);
    rc |= s_str(&pk, id.ptr ? id : dv_strn("", 0));
    rc |= s_str(&pk, type.ptr ? type : dv_strn("", 0));
    rc |= s_str(&pk, queue.ptr ? queue : dv_strn("", 0));
    rc |= msgpack_pack_int32(&pk, attempt);
    rc |= s_bin(&pk, payload);
    rc |= s_str(&pk, trace);
    return s_end(b, start, rc);
}

int
worker_ipc_put_tag(worker_buf_t *b, worker_ipc_kind_t kind, uint32_t tag)
{
    msgpack_packer pk;
    size_t start = s_begin(b, &pk);
    int rc = msgpack_pack_array(&pk, 2);
    rc |= msgpack_pack_int(&pk, (int)kind);
    rc |= msgpack_pack_uint32(&pk, tag);
    return s_end(b, start, rc);
}

int
worker_ipc_put_progress(worker_buf_t *b, uint32_t tag, int64_t current,
                        int64_t total, dv_str_t message)
{
    if (message.ptr)
        message.len =
            (uint32_t)worker_utf8_cut(message.ptr, message.len, DV_TEXT_MAX);
    msgpack_packer pk;
    size_t start = s_begin(b, &pk);
    int rc = msgpack_pack_array(&pk, 5);
    rc |= msgpack_pack_int(&pk, WORKER_IPC_PROGRESS);
    rc |= msgpack_pack_uint32(&pk, tag);
    rc |= msgpack_pack_int64(&pk, current);
    rc |= msgpack_pack_int64(&pk, total);
    rc |= s_str(&pk, message);
    return s_end(b, start, rc);
}

int
worker_ipc_put_succeeded(worker_buf_t *b, uint32_t tag, dv_str_t result)
{
    static const char nil = (char)0xc0;
    if (!result.ptr || result.len == 0)
        result = dv_strn(&nil, 1);
    msgpack_packer pk;
    size_t start = s_begin(b, &pk);
    int rc = msgpack_pack_array(&pk, 3);
    rc |= msgpack_pack_int(&pk, WORKER_IPC_SUCCEEDED);
    rc |= msgpack_pack_uint32(&pk, tag);
    rc |= s_bin(&pk, result);
    return s_end(b, start, rc);
}

int
worker_ipc_put_recycle(worker_buf_t *b, int64_t rss)
{
    msgpack_packer pk;
    size_t start = s_begin(b, &pk);
    int rc = msgpack_pack_array(&pk, 3);
    rc |= msgpack_pack_int(&pk, WORKER_IPC_RECYCLE);
    rc |= msgpack_pack_uint32(&pk, 0);
    rc |= msgpack_pack_int64(&pk, rss);
    return s_end(b, start, rc);
}

/* The end of s (at most DV_DETAILS_MAX bytes), repaired as it is packed:
 * each byte worker_utf8_repair would replace goes as '?'. nil if empty. */
static int
s_details(msgpack_packer *pk, dv_str_t s)
{
    if (!s.ptr || s.len == 0)
        return msgpack_pack_nil(pk);
    size_t off = worker_utf8_tail(s.ptr, s.len, DV_DETAILS_MAX);
    const unsigned char *u = (const unsigned char *)s.ptr + off;
    size_t n = s.len - off, run = 0, i = 0;
    int rc = msgpack_pack_str(pk, n);
    while (rc == 0 && i < n) {
        size_t k = u[i] ? s_utf8_seq(u + i, n - i) : 0;
        if (k) {
            i += k;
            continue;
        }
        if (i > run)
            rc |= msgpack_pack_str_body(pk, u + run, i - run);
        rc |= msgpack_pack_str_body(pk, "?", 1);
        run = ++i;
    }
    if (rc == 0 && n > run)
        rc = msgpack_pack_str_body(pk, u + run, n - run);
    return rc;
}

int
worker_ipc_put_failed(worker_buf_t *b, uint32_t tag, const dv_failure_t *f)
{
    dv_str_t msg = f->message;
    if (msg.ptr)
        msg.len = (uint32_t)worker_utf8_cut(msg.ptr, msg.len, DV_TEXT_MAX);
    msgpack_packer pk;
    size_t start = s_begin(b, &pk);
    int rc = msgpack_pack_array(&pk, 10);
    rc |= msgpack_pack_int(&pk, WORKER_IPC_FAILED);
    rc |= msgpack_pack_uint32(&pk, tag);
    rc |= msgpack_pack_int(&pk, (int)f->category);
    rc |= f->retryable ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    rc |= s_str(&pk, msg.ptr ? msg : dv_strn("", 0));
    rc |= msgpack_pack_int64(&pk, f->retry_after_ms);
    rc |= msgpack_pack_int32(&pk, f->exit_code);
    rc |= msgpack_pack_int32(&pk, f->signal);
    rc |= s_details(&pk, f->details);
    rc |= s_details(&pk, f->stderr_tail);
    return s_end(b, start, rc);
}

/* ---- UTF-8 ----------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t
s_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

bool
worker_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = s_utf8_seq(u + i, len - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

size_t
worker_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    const unsigned char *u = (const unsigned char *)s;
    size_t n = max;
    /* back up over continuation bytes to the start of a sequence */
    while (n > 0 && (u[n] & 0xc0) == 0x80)
        n--;
    return n;
}

size_t
worker_utf8_tail(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t off = len - max;
    /* at most 3 continuation bytes follow a lead byte; more are invalid
     * anyway (and get repaired) */
    for (int i = 0; i < 3 && off < len && (u[off] & 0xc0) == 0x80; i++)
        off++;
    return off;
}

size_t
worker_utf8_repair(char *s, size_t len)
{
    unsigned char *u = (unsigned char *)s;
    size_t i = 0, bad = 0;
    while (i < len) {
        size_t k = u[i] ? s_utf8_seq(u + i, len - i) : 0;
        if (k) {
            i += k;
        } else {
            u[i++] = '?';
            bad++;
        }
    }
    return bad;
}

bool
worker_utf8_clean(const char *s, size_t len)
{
    return worker_utf8_valid(s, len) && (len == 0 || !memchr(s, 0, len));
}
