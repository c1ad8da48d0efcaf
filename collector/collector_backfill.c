/* collector_backfill - windows of lost events, paged back from the broker
 * (see the header). */
#include "collector_backfill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_body.h"
#include "dv_log.h"

/* After a refused or unanswered page, the next one waits this long. */
#define S_RETRY_MS 1000

typedef struct {
    bool pending;        /* a window is being read */
    bool off;            /* the broker does not serve "finished" */
    int64_t since;       /* the next page starts here ... */
    char after[37];      /* ... after this job ("" none) */
    int64_t until;       /* the window's end */
    int64_t first;       /* the window's start, for the log line */
    uint64_t req;        /* page in flight, 0 none */
    int64_t asked_until; /* its until */
    int64_t sent_mono;
    int64_t retry_mono;    /* no page before this */
    uint64_t window_added; /* jobs added for this window */
    uint64_t added;        /* since the start */
} s_broker_t;

struct collector_backfill {
    int n;
    s_broker_t b[];
};

collector_backfill_t *
collector_backfill_new(int nbrokers)
{
    collector_backfill_t *self =
        calloc(1, sizeof *self + (size_t)nbrokers * sizeof self->b[0]);
    if (self)
        self->n = nbrokers;
    return self;
}

void
collector_backfill_destroy(collector_backfill_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

void
collector_backfill_gap(collector_backfill_t *self, int b, int64_t from_ms,
                       int64_t to_ms)
{
    s_broker_t *s = &self->b[b];
    if (s->off)
        return;
    int64_t since = from_ms > COLLECTOR_BACKFILL_MARGIN_MS
                        ? from_ms - COLLECTOR_BACKFILL_MARGIN_MS
                        : 0;
    /* Not past the first event after the gap: a job that ended later
     * has its events behind that one, received (or lost in a gap of its
     * own); its event must not find it counted already. */
    int64_t until = to_ms;
    if (until < since)
        until = since;
    if (!s->pending) {
        s->pending = true;
        s->since = s->first = since;
        s->until = until;
        s->after[0] = '\0';
        s->window_added = 0;
        return;
    }
    if (until > s->until)
        s->until = until;
    if (since < s->since) { /* earlier than the cursor: from there again */
        s->since = since;
        s->after[0] = '\0';
        if (since < s->first)
            s->first = since;
    }
}

bool
collector_backfill_due(collector_backfill_t *self, int b, int64_t mono,
                       msgpack_sbuffer *args)
{
    s_broker_t *s = &self->b[b];
    if (!s->pending || s->req || s->off || mono < s->retry_mono)
        return false;
    dv_finished_args_t a = { .since_ms = s->since,
                             .until_ms = s->until,
                             .limit = COLLECTOR_BACKFILL_PAGE };
    if (s->after[0])
        a.after = dv_strn(s->after, strlen(s->after));
    size_t before = args->size;
    if (dv_finished_args_encode(&a, args) != DV_OK) {
        args->size = before;
        s->retry_mono = mono + S_RETRY_MS;
        return false;
    }
    s->asked_until = s->until;
    return true;
}

void
collector_backfill_sent(collector_backfill_t *self, int b, uint64_t req,
                        int64_t mono)
{
    s_broker_t *s = &self->b[b];
    s->req = req;
    s->sent_mono = mono;
    if (!req)
        s->retry_mono = mono + S_RETRY_MS;
}

bool
collector_backfill_owns(const collector_backfill_t *self, int b, uint64_t req)
{
    return req && self->b[b].req == req;
}

int64_t
collector_backfill_check(collector_backfill_t *self, int b, int64_t mono,
                         int64_t timeout_ms, int64_t max_ms)
{
    s_broker_t *s = &self->b[b];
    if (!s->pending || s->off)
        return max_ms;
    if (s->req) {
        int64_t late = mono - s->sent_mono;
        if (late < timeout_ms)
            return timeout_ms - late < max_ms ? timeout_ms - late : max_ms;
        s->req = 0; /* given up; its answer, if it comes, is ignored */
        s->retry_mono = mono + S_RETRY_MS;
    }
    int64_t due = s->retry_mono - mono;
    if (due < 0)
        due = 0;
    return due < max_ms ? due : max_ms;
}

/* The job's end as an event, for the live state's counts. */
static void
s_end_event(const dv_finished_job_t *j, dv_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    dv_failure_init(&ev->failure);
    ev->kind_enum = j->state == DV_STATE_SUCCEEDED ? DV_EV_JOB_SUCCEEDED
                    : j->state == DV_STATE_DEAD    ? DV_EV_JOB_DEAD
                                                   : DV_EV_JOB_CANCELLED;
    ev->kind = dv_str(dv_event_kind_name(ev->kind_enum));
    ev->ts_ms = j->finished_ms;
    ev->id = j->id;
    ev->queue = j->queue;
    ev->type = j->type;
    ev->batch = j->batch;
    ev->worker = j->worker;
    ev->attempt = j->attempt;
    ev->state = j->state;
    ev->run_ms = j->run_ms;
    if (j->category != DV_CAT_NONE) {
        ev->has_failure = true;
        ev->failure.category = j->category;
        ev->failure.message = j->message;
    }
}

/* A window read to its end. */
static void
s_window_done(s_broker_t *s, const char *endpoint)
{
    dv_log(DV_INFO, "collector.backfilled", DV_STR("broker", endpoint),
           DV_INT("since", s->first), DV_INT("until", s->until),
           DV_INT("jobs", (int64_t)s->window_added));
    s->pending = false;
    s->window_added = 0;
}

int
collector_backfill_answer(collector_backfill_t *self, int b,
                          const dv_msg_t *msg, collector_store_t *store,
                          collector_state_t *state, const char *endpoint,
                          int64_t now_ms, int64_t mono)
{
    s_broker_t *s = &self->b[b];
    s->req = 0;
    bool ok = msg->type == DV_MSG_REPLY && msg->u.reply.ok;
    dv_code_t code =
        msg->type == DV_MSG_ERROR ? msg->u.error.code : msg->u.reply.code;
    if (!ok) {
        dv_str_t r = msg->type == DV_MSG_ERROR ? msg->u.error.reason
                                               : msg->u.reply.error;
        char why[256];
        snprintf(why, sizeof why, "%.*s", (int)r.len, r.ptr ? r.ptr : "");
        if (code == DV_CODE_UNKNOWN_VERB || code == DV_CODE_DENIED ||
            code == DV_CODE_NOT_ALLOWED) {
            /* An older broker, or one that will not tell us: the history
             * keeps the gap. */
            dv_log(DV_WARN, "collector.backfill_unavailable",
                   DV_STR("broker", endpoint),
                   DV_STR("code", dv_code_name(code)), DV_STR("error", why));
            s->off = true;
            s->pending = false;
        } else {
            dv_log(DV_DEBUG, "collector.backfill_refused",
                   DV_STR("broker", endpoint),
                   DV_STR("code", dv_code_name(code)), DV_STR("error", why));
            s->retry_mono = mono + S_RETRY_MS;
        }
        return -1;
    }
    dv_finished_t page;
    char why[256] = "no body";
    int rc = msg->u.reply.body.ptr ? dv_finished_decode(msg->u.reply.body.ptr,
                                                        msg->u.reply.body.len,
                                                        &page, why, sizeof why)
                                   : DV_EPROTO;
    if (rc != DV_OK) {
        dv_log(DV_WARN, "collector.backfill_refused",
               DV_STR("broker", endpoint), DV_STR("error", why));
        s->retry_mono = mono + S_RETRY_MS;
        return -1;
    }
    int added = 0;
    bool failed = false;
    int64_t since = s->since; /* to read the page again after a failure */
    char after[sizeof s->after];
    memcpy(after, s->after, sizeof after);
    for (uint32_t i = 0; i < page.njobs && !failed; i++) {
        const dv_finished_job_t *j = &page.jobs[i];
        int w = collector_store_backfill(store, endpoint, j);
        if (w < 0) {
            failed = true; /* the page is read again */
            break;
        }
        if (w == 1) {
            dv_event_t ev;
            s_end_event(j, &ev);
            (void)collector_state_backfill(state, b, &ev, now_ms);
            added++;
        }
        s->since = j->finished_ms;
        dv_str_copy(j->id, s->after, sizeof s->after);
    }
    bool more = page.more;
    dv_finished_release(&page);
    s->added += (uint64_t)added;
    s->window_added += (uint64_t)added;
    if (failed) {
        /* The group with this page's rows is rolled back at its commit. */
        s->since = since;
        memcpy(s->after, after, sizeof after);
        s->retry_mono = mono + S_RETRY_MS;
        return added;
    }
    if (!more && s->until <= s->asked_until)
        s_window_done(s, endpoint);
    return added;
}

uint64_t
collector_backfill_added(const collector_backfill_t *self, int b)
{
    return self->b[b].added;
}
