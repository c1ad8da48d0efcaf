/* worker_outbox - see worker_outbox.h. Owns the report entries and their
 * bytes; called from the lanes and the supervisor loop; never blocks.
 * Out of memory fails the one report being added (DV_ENOMEM) and leaves
 * the outbox as it was. */
#include "worker_outbox.h"

#include <stdlib.h>
#include <string.h>

#include "dv_log.h"
#include "worker_ipc.h"

/* Outcomes kept for the broker's ack, at most: a broker that does not ack
 * (an older one) must not make us keep everything we ever sent. */
#define S_KEEP_MAX 200000u

/* Keep one UPDATE well under the 64 MiB frame limit and the item cap. */
#define S_FRAME_BUDGET (16u << 20)
#define S_ITEMS_BUDGET 10000u

typedef struct {
    dv_update_kind_t kind;
    uint8_t idlen;
    char id[WORKER_ID_MAX];
    int32_t attempt;
    uint64_t lease;
    uint64_t seq; /* the update it went in (sent entries) */
    int64_t ts_ms;
    int64_t started_ms;     /* outcome: its start folded in, or 0 */
    int64_t current, total; /* progress */
    size_t data_off;        /* result or message bytes in self->data */
    uint32_t data_len;      /* failed: message, details, stderr in a row */
    uint32_t details_len, stderr_len; /* failed: the last two of those */
    bool has_data;
    dv_failure_t failure; /* message, details and stderr_tail taken from
                             data when encoding */
} s_entry_t;

struct worker_outbox_t {
    s_entry_t *entries; /* oldest first: [0, nsent) sent and kept until
                         * acked, [nsent, n) not sent yet */
    size_t n, cap, nsent;
    uint64_t seq;       /* of the last update encoded */
    worker_buf_t data;  /* bytes of results and messages */
    dv_update_t *items; /* encode scratch */
    size_t items_cap;
    int32_t credit;      /* owed to the broker */
    int32_t credit_sent; /* credit in the last encode */
    int32_t withheld;    /* outcomes that grant nothing (capacity shrank) */
    size_t folded;       /* unsent entries folded into their outcome */
    bool granting;       /* false while draining */
    int64_t processed, failed;
};

worker_outbox_t *
worker_outbox_new(void)
{
    worker_outbox_t *self = calloc(1, sizeof *self);
    if (self)
        self->granting = true;
    return self;
}

void
worker_outbox_destroy(worker_outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_outbox_t *self = *self_p;
    free(self->entries);
    free(self->items);
    worker_buf_free(&self->data);
    free(self);
    *self_p = NULL;
}

/* Makes room for one entry and nbytes bytes of data. Returns 0, or
 * DV_ENOMEM with nothing changed. */
static int
s_reserve_n(worker_outbox_t *self, size_t nbytes)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 256;
        s_entry_t *e = realloc(self->entries, cap * sizeof *e);
        if (!e)
            return DV_ENOMEM;
        self->entries = e;
        self->cap = cap;
    }
    if (nbytes && worker_buf_reserve(&self->data, nbytes) != 0)
        return DV_ENOMEM;
    return 0;
}

static int
s_reserve(worker_outbox_t *self, dv_str_t bytes)
{
    return s_reserve_n(self, bytes.ptr ? bytes.len : 0);
}

/* Adds an entry after s_reserve() made room for it and its data. */
static s_entry_t *
s_add(worker_outbox_t *self, dv_update_kind_t kind, worker_exec_t x,
      dv_str_t bytes)
{
    s_entry_t *e = &self->entries[self->n++];
    e->kind = kind;
    e->idlen = (uint8_t)(x.id.len > WORKER_ID_MAX ? WORKER_ID_MAX : x.id.len);
    memcpy(e->id, x.id.ptr, e->idlen);
    e->attempt = x.attempt;
    e->lease = x.lease;
    e->seq = 0;
    e->ts_ms = 0;
    e->started_ms = 0;
    e->current = e->total = 0;
    e->details_len = e->stderr_len = 0;
    e->has_data = bytes.ptr != NULL;
    e->data_off = self->data.len;
    e->data_len = bytes.ptr ? bytes.len : 0;
    if (bytes.ptr) /* room reserved: cannot fail */
        worker_buf_append(&self->data, bytes.ptr, bytes.len);
    return e;
}

/* The kind of a "started" entry folded into its outcome: sent as nothing. */
#define S_FOLDED ((dv_update_kind_t)0)

/* How far back an outcome looks for its own "started" report. */
#define S_FOLD_WINDOW 64

/* An outcome is about to be added for x: if x's "started" report has not
 * gone out yet, it is taken back and its time returned, to travel in the
 * outcome (one item instead of two for a job that started and ended
 * between two updates); 0 otherwise. Only the last S_FOLD_WINDOW unsent
 * entries are looked at: a started report further back is older than the
 * updates that go out every pass, and goes as it is. */
static int64_t
s_take_started(worker_outbox_t *self, worker_exec_t x)
{
    size_t lo = self->n - self->nsent > S_FOLD_WINDOW ? self->n - S_FOLD_WINDOW
                                                      : self->nsent;
    for (size_t i = self->n; i-- > lo;) {
        s_entry_t *e = &self->entries[i];
        if (e->lease != x.lease || e->attempt != x.attempt ||
            e->idlen != x.id.len || memcmp(e->id, x.id.ptr, e->idlen) != 0)
            continue;
        if (e->kind != DV_UPD_STARTED)
            return 0; /* a progress report came after it: keep the order */
        /* Taken back: the entry stays, empty, and is skipped when
         * encoding (moving the ones after it would cost more). */
        e->kind = S_FOLDED;
        self->folded++;
        return e->ts_ms ? e->ts_ms : 1;
    }
    return 0;
}

static void
s_outcome(worker_outbox_t *self)
{
    if (!self->granting)
        return;
    if (self->withheld > 0)
        self->withheld--;
    else
        self->credit++;
}

int
worker_outbox_started(worker_outbox_t *self, worker_exec_t x, int64_t ts_ms)
{
    dv_str_t none = dv_strn(NULL, 0);
    if (s_reserve(self, none) != 0)
        return DV_ENOMEM;
    s_entry_t *e = s_add(self, DV_UPD_STARTED, x, none);
    e->ts_ms = ts_ms;
    return 0;
}

int
worker_outbox_progress(worker_outbox_t *self, worker_exec_t x, int64_t current,
                       int64_t total, dv_str_t message)
{
    if (s_reserve(self, message) != 0)
        return DV_ENOMEM;
    s_entry_t *e = s_add(self, DV_UPD_PROGRESS, x, message);
    e->current = current;
    e->total = total;
    return 0;
}

int
worker_outbox_succeeded(worker_outbox_t *self, worker_exec_t x, int64_t ts_ms,
                        dv_str_t result)
{
    if (s_reserve(self, result) != 0)
        return DV_ENOMEM;
    int64_t started = s_take_started(self, x);
    s_entry_t *e = s_add(self, DV_UPD_SUCCEEDED, x, result);
    e->ts_ms = ts_ms;
    e->started_ms = started;
    self->processed++;
    s_outcome(self);
    return 0;
}

int
worker_outbox_failed(worker_outbox_t *self, worker_exec_t x, int64_t ts_ms,
                     const dv_failure_t *failure)
{
    dv_str_t msg = failure->message;
    if (msg.ptr)
        msg.len = (uint32_t)worker_utf8_cut(msg.ptr, msg.len, DV_TEXT_MAX);
    else
        msg = dv_strn("", 0);
    /* Details and stderr follow the message in the data buffer: their
     * ends, at most DV_DETAILS_MAX bytes each (a child's frame already
     * holds no more), repaired in the copy. */
    dv_str_t det = failure->details, err = failure->stderr_tail;
    size_t doff =
        det.ptr ? worker_utf8_tail(det.ptr, det.len, DV_DETAILS_MAX) : 0;
    size_t eoff =
        err.ptr ? worker_utf8_tail(err.ptr, err.len, DV_DETAILS_MAX) : 0;
    size_t dlen = det.ptr ? det.len - doff : 0;
    size_t elen = err.ptr ? err.len - eoff : 0;
    if (s_reserve_n(self, (size_t)msg.len + dlen + elen) != 0)
        return DV_ENOMEM;
    int64_t started = s_take_started(self, x);
    s_entry_t *e = s_add(self, DV_UPD_FAILED, x, msg);
    e->started_ms = started;
    /* room reserved: the appends cannot fail */
    if (dlen) {
        char *at = self->data.data + self->data.len;
        worker_buf_append(&self->data, det.ptr + doff, dlen);
        worker_utf8_repair(at, dlen);
    }
    if (elen) {
        char *at = self->data.data + self->data.len;
        worker_buf_append(&self->data, err.ptr + eoff, elen);
        worker_utf8_repair(at, elen);
    }
    e->data_len += (uint32_t)(dlen + elen);
    e->details_len = (uint32_t)dlen;
    e->stderr_len = (uint32_t)elen;
    e->ts_ms = ts_ms;
    e->failure = *failure; /* its texts: views into data, at encoding */
    e->failure.message = e->failure.details = e->failure.stderr_tail =
        dv_strn(NULL, 0);
    self->processed++;
    self->failed++;
    s_outcome(self);
    return 0;
}

int
worker_outbox_returned(worker_outbox_t *self, worker_exec_t x)
{
    dv_str_t none = dv_strn(NULL, 0);
    if (s_reserve(self, none) != 0)
        return DV_ENOMEM;
    s_add(self, DV_UPD_RETURNED, x, none);
    s_outcome(self);
    return 0;
}

void
worker_outbox_grant(worker_outbox_t *self, int n)
{
    if (!self->granting)
        return;
    int32_t paid = self->withheld < n ? self->withheld : n;
    self->withheld -= paid;
    self->credit += n - paid;
}

void
worker_outbox_withhold(worker_outbox_t *self, int n)
{
    if (!self->granting)
        return;
    int32_t back = self->credit - self->credit_sent;
    if (back > n)
        back = n;
    if (back < 0)
        back = 0;
    self->credit -= back; /* owed but not sent yet: just not sent */
    self->withheld += n - back;
}

void
worker_outbox_stop_credit(worker_outbox_t *self)
{
    self->granting = false;
    self->credit = 0;
    self->withheld = 0;
}

void
worker_outbox_reset_credit(worker_outbox_t *self)
{
    self->credit = 0;
    self->withheld = 0;
}

int32_t
worker_outbox_credit(const worker_outbox_t *self)
{
    return self->credit;
}

size_t
worker_outbox_size(const worker_outbox_t *self)
{
    return self->n - self->nsent - self->folded;
}

size_t
worker_outbox_unacked(const worker_outbox_t *self)
{
    return self->nsent;
}

/* Drops entries [0, k) and, once most of the data bytes are dead, moves
 * the live ones to the front (offsets rise with position). */
static void
s_drop_front(worker_outbox_t *self, size_t k)
{
    if (k == 0)
        return;
    memmove(self->entries, self->entries + k,
            (self->n - k) * sizeof *self->entries);
    self->n -= k;
    self->nsent -= k < self->nsent ? k : self->nsent;
    if (self->n == 0) {
        worker_buf_reset(&self->data);
        return;
    }
    size_t first = self->data.len;
    for (size_t i = 0; i < self->n; i++)
        if (self->entries[i].has_data) {
            first = self->entries[i].data_off;
            break;
        }
    if (first < (64u << 10) || first < self->data.len / 2)
        return;
    memmove(self->data.data, self->data.data + first, self->data.len - first);
    self->data.len -= first;
    for (size_t i = 0; i < self->n; i++)
        if (self->entries[i].has_data)
            self->entries[i].data_off -= first;
}

void
worker_outbox_ack(worker_outbox_t *self, uint64_t seq)
{
    size_t k = 0;
    while (k < self->nsent && self->entries[k].seq <= seq)
        k++;
    s_drop_front(self, k);
}

void
worker_outbox_resend(worker_outbox_t *self)
{
    self->nsent = 0;
}

int64_t
worker_outbox_processed(const worker_outbox_t *self)
{
    return self->processed;
}

int64_t
worker_outbox_failures(const worker_outbox_t *self)
{
    return self->failed;
}

int
worker_outbox_encode(worker_outbox_t *self, msgpack_sbuffer *out,
                     uint32_t *nitems)
{
    *nitems = 0;
    size_t unsent = self->n - self->nsent;
    if (unsent == 0 && self->credit <= 0)
        return -1;
    size_t n = unsent < S_ITEMS_BUDGET ? unsent : S_ITEMS_BUDGET;
    if (n > self->items_cap) {
        size_t cap = self->items_cap ? self->items_cap : 256;
        while (cap < n)
            cap *= 2;
        dv_update_t *it = realloc(self->items, cap * sizeof *it);
        if (!it) {
            /* Nothing is lost: the reports stay and go on a later pass. */
            dv_log(DV_ERROR, "worker.encode_failed", DV_STR("msg", "update"),
                   DV_STR("error", "out of memory"), DV_INT("items", n));
            return -1;
        }
        self->items = it;
        self->items_cap = cap;
    }
    size_t bytes = 0, k;
    size_t nout = 0; /* items encoded: the entries but the folded ones */
    for (k = 0; k < n; k++) {
        const s_entry_t *e = &self->entries[self->nsent + k];
        if (e->kind == S_FOLDED)
            continue;
        bytes += 64 + e->idlen + e->data_len;
        if (nout > 0 && bytes > S_FRAME_BUDGET)
            break;
        dv_update_t *u = &self->items[nout++];
        memset(u, 0, sizeof *u);
        u->kind = e->kind;
        u->id = dv_strn(e->id, e->idlen);
        u->attempt = e->attempt;
        u->lease = e->lease;
        u->ts_ms = e->ts_ms;
        u->started_ms = e->started_ms;
        /* An empty text is present but may have no bytes stored at all. */
        dv_str_t data =
            !e->has_data ? dv_strn(NULL, 0)
            : e->data_len == 0
                ? dv_strn("", 0)
                : dv_strn(self->data.data + e->data_off, e->data_len);
        switch (e->kind) {
        case DV_UPD_PROGRESS:
            u->current = e->current;
            u->total = e->total;
            u->message = data;
            break;
        case DV_UPD_SUCCEEDED:
            u->result = data;
            break;
        case DV_UPD_FAILED: {
            uint32_t ml = e->data_len - e->details_len - e->stderr_len;
            const char *d = e->data_len ? self->data.data + e->data_off : "";
            u->failure = e->failure;
            u->failure.message = ml ? dv_strn(d, ml) : dv_strn("", 0);
            u->failure.details = e->details_len
                                     ? dv_strn(d + ml, e->details_len)
                                     : dv_strn(NULL, 0);
            u->failure.stderr_tail =
                e->stderr_len ? dv_strn(d + ml + e->details_len, e->stderr_len)
                              : dv_strn(NULL, 0);
            break;
        }
        default:
            break;
        }
    }
    dv_msg_t msg;
    memset(&msg, 0, sizeof msg);
    msg.type = DV_MSG_UPDATE;
    msg.u.update.credit = self->credit;
    msg.u.update.items = self->items;
    msg.u.update.nitems = (uint32_t)nout;
    msg.u.update.seq = self->seq + 1;
    out->size = 0;
    if (dv_msg_encode(&msg, out) != DV_OK) {
        dv_log(DV_ERROR, "worker.encode_failed", DV_STR("msg", "update"),
               DV_INT("items", k));
        return -1;
    }
    self->credit_sent = self->credit;
    *nitems = (uint32_t)k;
    return 0;
}

void
worker_outbox_consume(worker_outbox_t *self, uint32_t nitems)
{
    self->credit -= self->credit_sent;
    self->credit_sent = 0;
    uint64_t seq = ++self->seq;
    /* Outcomes of the update stay (sent, until acked); started and
     * progress reports are not worth sending twice. */
    size_t end = self->nsent + nitems, kept = self->nsent;
    for (size_t i = self->nsent; i < end; i++) {
        s_entry_t *e = &self->entries[i];
        if (e->kind == S_FOLDED)
            self->folded--;
        if (e->kind == DV_UPD_STARTED || e->kind == DV_UPD_PROGRESS ||
            e->kind == S_FOLDED)
            continue;
        e->seq = seq;
        if (kept != i)
            self->entries[kept] = *e;
        kept++;
    }
    memmove(self->entries + kept, self->entries + end,
            (self->n - end) * sizeof *self->entries);
    self->n -= end - kept;
    self->nsent = kept;
    if (self->n == 0)
        worker_buf_reset(&self->data);
    if (self->nsent > S_KEEP_MAX) {
        dv_log(DV_WARN, "worker.unacked_dropped",
               DV_INT("outcomes", (int64_t)(self->nsent - S_KEEP_MAX)),
               DV_STR("reason", "the broker does not ack updates"));
        s_drop_front(self, self->nsent - S_KEEP_MAX);
    }
}
