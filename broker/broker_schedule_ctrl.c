/* broker_schedule_ctrl - the schedule verbs (ctrl "schedule.add", "list",
 * "show", "remove", "pause", "resume"; docs/protocol.md).
 *
 * Arguments come in the ctrl's args map; a bad one is answered with code
 * invalid_argument and a reason that names the field; an unknown schedule
 * with not_found. A change is a write of the current group (the schedule's
 * row, or its deletion), answered once it is durable. list and show answer
 * with the schedules as they are in memory, plus the state of each one's
 * last job: from memory while it is live, else read from the store (the
 * reader thread) first.
 *
 * Schedule names are unique per broker (whoever added them).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "broker_schedule.h"
#include "dv_json.h"
#include "dv_log.h"

static const char s_oom[] = "broker out of memory";

/* ---- views ---------------------------------------------------------------- */

#define S_VIEW_KEYS 23

/* "30s", "5m", "2h", "1d" when it divides evenly, else milliseconds. */
static void
s_every_text(int64_t ms, char *out, size_t size)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {
        { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" }
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0) {
            snprintf(out, size, "every %lld%s", (long long)(ms / units[i].ms),
                     units[i].unit);
            return;
        }
    snprintf(out, size, "every %lldms", (long long)ms);
}

static void
s_pack_bool(msgpack_packer *pk, const char *k, bool v)
{
    broker_pack_str(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

/* An integer, or nil when it is 0 (none). */
static void
s_pack_opt(msgpack_packer *pk, const char *k, int64_t v)
{
    broker_pack_str(pk, k);
    if (v > 0)
        msgpack_pack_int64(pk, v);
    else
        msgpack_pack_nil(pk);
}

/* The state of s's last job: live in memory, else as stored (viewed; NULL:
 * not read), else nil. */
static const char *
s_job_state(const broker_t *self, const broker_schedule_t *s,
            const broker_viewed_t *viewed)
{
    if (!s->has_last_job)
        return NULL;
    const broker_job_t *job = broker_index_get(&self->index, &s->last_job);
    if (job)
        return job->state == DV_STATE_NONE ? "queued"
                                           : dv_state_name(job->state);
    if (viewed && viewed->rc == 1 && viewed->view)
        return dv_state_name(viewed->view->state);
    if (viewed && viewed->rc == 0)
        return "expired"; /* its result_ttl passed: deleted */
    return NULL;
}

static void
s_pack_view(const broker_t *self, msgpack_packer *pk,
            const broker_schedule_t *s, const broker_viewed_t *viewed)
{
    char spec[64];
    if (s->cron_text)
        snprintf(spec, sizeof spec, "%s", s->cron_text);
    else
        s_every_text(s->every_ms, spec, sizeof spec);
    char job[DV_ID_TEXT_LEN + 1] = "";
    if (s->has_last_job)
        dv_id_format(&s->last_job, job);
    msgpack_pack_map(pk, S_VIEW_KEYS);
    broker_pack_kv_str(pk, "name", s->name);
    broker_pack_kv_str(pk, "owner", s->owner);
    broker_pack_kv_str(pk, "spec", spec);
    broker_pack_kv_str(pk, "cron", s->cron_text);
    s_pack_opt(pk, "every_ms", s->every_ms);
    broker_pack_kv_str(
        pk, "tz", s->cron_text ? (s->tz ? dv_tz_name(s->tz) : "UTC") : NULL);
    broker_pack_kv_str(pk, "queue", s->queue);
    broker_pack_kv_str(pk, "type", s->type);
    broker_pack_kv_int(pk, "priority", s->priority);
    broker_pack_kv_int(pk, "max_attempts", s->max_attempts);
    broker_pack_kv_int(pk, "timeout_ms", s->timeout_ms);
    s_pack_bool(pk, "no_overlap", s->no_overlap);
    broker_pack_kv_str(pk, "catch_up", s->catch_up_skip ? "skip" : "once");
    s_pack_bool(pk, "paused", s->paused);
    s_pack_opt(pk, "created_at", s->created_ms);
    s_pack_opt(pk, "next_fire_at", s->paused ? 0 : s->next_ms);
    s_pack_opt(pk, "last_fire_at", s->last_fire_ms);
    broker_pack_kv_str(pk, "last_job", s->has_last_job ? job : NULL);
    broker_pack_kv_str(pk, "last_job_state", s_job_state(self, s, viewed));
    broker_pack_kv_int(pk, "firings", s->firings);
    broker_pack_kv_int(pk, "skipped", s->skipped);
    broker_pack_str(pk, "last_lag_ms");
    if (s->last_fire_ms)
        msgpack_pack_int64(pk, s->last_lag_ms);
    else
        msgpack_pack_nil(pk);
    broker_pack_kv_int(pk, "payload_bytes", (int64_t)s->payload_len);
}

static int
s_by_name(const void *a, const void *b)
{
    const broker_schedule_t *x = *(broker_schedule_t *const *)a;
    const broker_schedule_t *y = *(broker_schedule_t *const *)b;
    return strcmp(x->name, y->name);
}

/* Answers list (one NULL) or show (one: that schedule) with the views
 * read (NULL: none). */
static void
s_answer(broker_t *self, const broker_rid_t *rid, uint64_t req,
         const broker_schedule_t *one, broker_views_t *v, bool later)
{
    dv_map_t *read = NULL;
    if (v && v->n) {
        read = dv_map_new(NULL);
        for (uint32_t i = 0; read && i < v->n; i++)
            if (!dv_map_get(read, v->items[i].id) &&
                dv_map_put(read, v->items[i].id, &v->items[i]) != 0)
                dv_map_destroy(&read); /* states unknown, not wrong */
    }
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    char id[DV_ID_TEXT_LEN + 1];
    if (one) {
        if (one->has_last_job)
            dv_id_format(&one->last_job, id);
        s_pack_view(self, &pk, one,
                    one->has_last_job ? dv_map_get(read, id) : NULL);
    } else {
        size_t n = dv_map_size(self->schedules), k = 0;
        broker_schedule_t **all = malloc((n ? n : 1) * sizeof *all);
        if (!all) {
            body.failed = true;
        } else {
            broker_schedule_t *s;
            DV_MAP_EACH(s, self->schedules)
            {
                all[k++] = s;
            }
            qsort(all, n, sizeof *all, s_by_name);
            msgpack_pack_map(&pk, 1);
            broker_pack_str(&pk, "schedules");
            msgpack_pack_array(&pk, (uint32_t)n);
            for (size_t i = 0; i < n; i++) {
                const broker_viewed_t *it = NULL;
                if (all[i]->has_last_job) {
                    dv_id_format(&all[i]->last_job, id);
                    it = dv_map_get(read, id);
                }
                s_pack_view(self, &pk, all[i], it);
            }
            free(all);
        }
    }
    dv_map_destroy(&read);
    if (body.failed)
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY, s_oom, NULL, false);
    else
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, &body.sb, later);
    broker_body_destroy(&body);
}

/* The read of the last jobs is back (show: the schedule is found again by
 * its last job, which the read was of). */
static void
s_read_back(broker_t *self, broker_views_t *v, bool show)
{
    const broker_schedule_t *one = NULL;
    if (show) {
        dv_id_t id;
        broker_schedule_t *s;
        if (dv_id_parse(v->items[0].id, DV_ID_TEXT_LEN, &id) == 0)
            DV_MAP_EACH(s, self->schedules)
            {
                if (s->has_last_job && !memcmp(&s->last_job, &id, sizeof id))
                    one = s;
            }
        if (!one) {
            broker_out_reply(self, &v->rid, v->req, DV_CODE_TRY_AGAIN,
                             "the schedule changed meanwhile; try again", NULL,
                             false);
            return;
        }
    }
    s_answer(self, &v->rid, v->req, one, v->base.stopped ? NULL : v, false);
}

static void
s_list_back(broker_t *self, broker_views_t *v)
{
    s_read_back(self, v, false);
}

static void
s_show_back(broker_t *self, broker_views_t *v)
{
    s_read_back(self, v, true);
}

/* list (one NULL) or show: reads the last jobs that are not in memory,
 * then answers. */
static void
s_list(broker_t *self, const broker_rid_t *rid, uint64_t req,
       const broker_schedule_t *one)
{
    uint32_t n = 0;
    broker_schedule_t *s;
    if (one)
        n = one->has_last_job &&
            !broker_index_get(&self->index, &one->last_job);
    else
        DV_MAP_EACH(s, self->schedules)
        {
            n += s->has_last_job &&
                 !broker_index_get(&self->index, &s->last_job);
        }
    if (!n) {
        s_answer(self, rid, req, one, NULL, false);
        return;
    }
    broker_views_t *v =
        broker_views_new(self, rid, req, n, one ? s_show_back : s_list_back);
    if (!v) {
        s_answer(self, rid, req, one, NULL, false);
        return;
    }
    uint32_t i = 0;
    if (one)
        dv_id_format(&one->last_job, v->items[i++].id);
    else
        DV_MAP_EACH(s, self->schedules)
        {
            if (s->has_last_job &&
                !broker_index_get(&self->index, &s->last_job))
                dv_id_format(&s->last_job, v->items[i++].id);
        }
    if (broker_reads_push(self, &v->base, true) != 0) {
        broker_views_free(v);
        s_answer(self, rid, req, one, NULL, false); /* states unknown */
    }
}

/* ---- add ------------------------------------------------------------------ */

/* A name argument: 1..DV_NAME_MAX bytes of acceptable text. */
static const char *
s_name_arg(json_t *args, const char *field, bool required, char *why,
           size_t why_size)
{
    json_t *v = json_object_get(args, field);
    if (!v || json_is_null(v)) {
        if (required)
            snprintf(why, why_size, "%s: required", field);
        return NULL;
    }
    const char *s = json_string_value(v);
    const char *bad = NULL;
    if (!s)
        bad = "must be a string";
    else if (!s[0] || strlen(s) > DV_NAME_MAX)
        bad = "must be 1 to 200 bytes";
    else
        bad = dv_name_check(s, strlen(s));
    if (bad) {
        snprintf(why, why_size, "%s: %s", field, bad);
        return NULL;
    }
    return s;
}

/* An integer argument in lo..hi; absent: def. Returns false (why set) when
 * it is not one. */
static bool
s_int_arg(json_t *args, const char *field, int64_t lo, int64_t hi, int64_t def,
          int64_t *out, char *why, size_t why_size)
{
    json_t *v = json_object_get(args, field);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        snprintf(why, why_size, "%s: must be an integer from %lld to %lld",
                 field, (long long)lo, (long long)hi);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

static bool
s_bool_arg(json_t *args, const char *field, bool *out, char *why,
           size_t why_size)
{
    json_t *v = json_object_get(args, field);
    if (!v || json_is_null(v)) {
        *out = false;
        return true;
    }
    if (!json_is_boolean(v)) {
        snprintf(why, why_size, "%s: must be true or false", field);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* Builds the schedule args describe into r (strings pointing into args
 * and payload). Returns false with why. */
static bool
s_add_args(broker_t *self, json_t *args, broker_schedule_rec_t *r,
           char **payload, char *why, size_t why_size)
{
    int64_t now = broker_now_ms(self);
    *r = (broker_schedule_rec_t){ .created_ms = now, .anchor_ms = now };
    if (!(r->name = s_name_arg(args, "name", true, why, why_size)))
        return false;
    if (!(r->type = s_name_arg(args, "type", true, why, why_size)))
        return false;
    r->queue = s_name_arg(args, "queue", false, why, why_size);
    if (why[0])
        return false;
    if (!r->queue)
        r->queue = "default";
    json_t *cron = json_object_get(args, "cron");
    json_t *every = json_object_get(args, "every");
    json_t *tz = json_object_get(args, "tz");
    if ((cron && !json_is_null(cron)) == (every && !json_is_null(every))) {
        snprintf(why, why_size, "cron, every: exactly one of them is needed");
        return false;
    }
    if (cron && !json_is_null(cron)) {
        r->cron = json_string_value(cron);
        if (!r->cron || !r->cron[0] || strlen(r->cron) > 200) {
            snprintf(why, why_size, "cron: must be a string of 1 to 200 bytes");
            return false;
        }
        dv_cron_t c;
        char err[200];
        if (dv_cron_parse(r->cron, &c, err, sizeof err) != 0) {
            snprintf(why, why_size, "cron: %s", err);
            return false;
        }
        if (tz && !json_is_null(tz)) {
            r->tz = json_string_value(tz);
            if (!r->tz) {
                snprintf(why, why_size, "tz: must be a string");
                return false;
            }
            if (!broker_schedule_tz(self, r->tz, err, sizeof err)) {
                snprintf(why, why_size, "tz: %s", err);
                return false;
            }
        }
    } else {
        const char *text = json_string_value(every);
        char err[200];
        if (!text) {
            snprintf(why, why_size, "every: must be a string such as \"30s\"");
            return false;
        }
        if (dv_every_parse(text, &r->every_ms, err, sizeof err) != 0) {
            snprintf(why, why_size, "every: %s", err);
            return false;
        }
        if (tz && !json_is_null(tz)) {
            snprintf(why, why_size, "tz: only with cron");
            return false;
        }
    }
    int64_t prio, attempts, timeout;
    if (!s_int_arg(args, "priority", 0, 9, DV_PRIORITY_DEFAULT, &prio, why,
                   why_size) ||
        !s_int_arg(args, "max_attempts", 0, 1000, 0, &attempts, why,
                   why_size) ||
        !s_int_arg(args, "timeout_ms", 0, UINT32_MAX, 0, &timeout, why,
                   why_size) ||
        !s_bool_arg(args, "no_overlap", &r->no_overlap, why, why_size))
        return false;
    r->priority = (int)prio;
    r->max_attempts = (int)attempts;
    r->timeout_ms = timeout;
    json_t *cu = json_object_get(args, "catch_up");
    if (cu && !json_is_null(cu)) {
        const char *t = json_string_value(cu);
        if (!t || (strcmp(t, "once") && strcmp(t, "skip"))) {
            snprintf(why, why_size, "catch_up: must be \"once\" or \"skip\"");
            return false;
        }
        r->catch_up_skip = !strcmp(t, "skip");
    }
    json_t *p = json_object_get(args, "payload");
    if (p && !json_is_null(p)) {
        size_t len = 0;
        *payload = dv_json_to_msgpack(p, &len);
        if (!*payload) {
            snprintf(why, why_size, "payload: cannot be encoded");
            return false;
        }
        if (len > DV_PAYLOAD_MAX) {
            snprintf(why, why_size, "payload: %zu bytes, over the limit of %u",
                     len, DV_PAYLOAD_MAX);
            return false;
        }
        r->payload = *payload;
        r->payload_len = len;
    }
    r->owner = broker_auth_owner(self);
    return true;
}

static void
s_add(broker_t *self, const broker_rid_t *rid, uint64_t req, json_t *args)
{
    char why[320] = "";
    char *payload = NULL;
    broker_schedule_rec_t r;
    if (!s_add_args(self, args, &r, &payload, why, sizeof why)) {
        free(payload);
        broker_out_reply(self, rid, req, DV_CODE_INVALID_ARGUMENT, why, NULL,
                         false);
        return;
    }
    if (dv_map_get(self->schedules, r.name)) {
        free(payload);
        snprintf(why, sizeof why, "name: a schedule '%s' exists already",
                 r.name);
        broker_out_reply(self, rid, req, DV_CODE_INVALID_ARGUMENT, why, NULL,
                         false);
        return;
    }
    broker_schedule_t *s = broker_schedule_from_rec(self, &r, why, sizeof why);
    free(payload);
    if (s) {
        s->next_ms = broker_schedule_next_after(s, r.anchor_ms);
        if (s->next_ms < 0) {
            broker_schedule_free(s);
            broker_out_reply(self, rid, req, DV_CODE_INVALID_ARGUMENT,
                             "cron: it never fires (no time matches within "
                             "8 years)",
                             NULL, false);
            return;
        }
    }
    if (!s || broker_schedule_insert(self, s) != 0) {
        broker_schedule_free(s);
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY, s_oom, NULL, false);
        return;
    }
    broker_schedule_save(self, s);
    dv_log(DV_INFO, "broker.schedule_added", DV_STR("name", s->name),
           DV_STR("owner", s->owner), DV_INT("next_ms", s->next_ms));
    s_answer(self, rid, req, s, NULL, true);
}

/* ---- the verbs ------------------------------------------------------------ */

bool
broker_schedule_ctrl(broker_t *self, const broker_rid_t *rid,
                     const dv_ctrl_t *c)
{
    static const char *const verbs[] = {
        "schedule.add",    "schedule.list",  "schedule.show",
        "schedule.remove", "schedule.pause", "schedule.resume",
    };
    size_t verb = 0;
    while (verb < 6 && !dv_str_eq(c->verb, verbs[verb]))
        verb++;
    if (verb == 6)
        return false;
    if (broker_schedule_tables(self) != 0) {
        broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY, s_oom, NULL,
                         false);
        return true;
    }
    char why[320] = "";
    json_t *args = NULL;
    if (c->args.ptr) {
        char err[160] = "";
        args = dv_msgpack_to_json(c->args.ptr, c->args.len, err, sizeof err);
        if (!args || !json_is_object(args)) {
            snprintf(why, sizeof why, "args: not a map%s%s", err[0] ? ": " : "",
                     err);
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT, why,
                             NULL, false);
            json_decref(args);
            return true;
        }
    }
    if (verb == 0) {
        if (!args)
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "args: required (name, type, cron or every)", NULL,
                             false);
        else
            s_add(self, rid, c->req, args);
        json_decref(args);
        return true;
    }
    if (verb == 1) {
        json_decref(args);
        s_list(self, rid, c->req, NULL);
        return true;
    }
    const char *name = s_name_arg(args, "name", true, why, sizeof why);
    broker_schedule_t *s = name ? dv_map_get(self->schedules, name) : NULL;
    if (!name) {
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT, why, NULL,
                         false);
    } else if (!s) {
        snprintf(why, sizeof why, "no schedule '%s'", name);
        broker_out_reply(self, rid, c->req, DV_CODE_NOT_FOUND, why, NULL,
                         false);
    } else if (verb == 2) {
        s_list(self, rid, c->req, s);
    } else if (verb == 3) {
        dv_log(DV_INFO, "broker.schedule_removed", DV_STR("name", s->name));
        broker_body_t body;
        msgpack_packer pk;
        broker_body_init(&body, &pk);
        msgpack_pack_map(&pk, 2);
        broker_pack_kv_str(&pk, "name", s->name);
        s_pack_bool(&pk, "removed", true);
        if (broker_wbatch_schedule_delete(&self->cur->wb, s->owner, s->name)) {
            broker_write_lost(self);
            body.failed = true;
        }
        broker_schedule_remove(self, s);
        if (body.failed)
            broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY, s_oom, NULL,
                             false);
        else
            broker_out_reply(self, rid, c->req, DV_CODE_NONE, NULL, &body.sb,
                             true);
        broker_body_destroy(&body);
    } else {
        bool pause = verb == 4;
        if (s->paused != pause) {
            broker_schedule_set_paused(self, s, pause);
            broker_schedule_save(self, s);
            dv_log(DV_INFO,
                   pause ? "broker.schedule_paused" : "broker.schedule_resumed",
                   DV_STR("name", s->name));
        }
        s_answer(self, rid, c->req, s, NULL, true);
    }
    json_decref(args);
    return true;
}
