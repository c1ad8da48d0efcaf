/* dv_proto_names - the names the wire uses for enums: job states, failure
 * categories, message types, update kinds, event kinds and error codes,
 * each a table indexed by the enum, with name and parse functions. Also
 * dv_failure_init(). Pure functions over constant tables; any thread.
 *
 * The tables are shared with the schema engine (dv_schema.h), which reads
 * and writes enum fields through them. */
#include "dv_schema.h"

#include <string.h>

#define S_N(s)                                                                 \
    {                                                                          \
        s, sizeof(s) - 1                                                       \
    }

static const dv_name_t s_state_names[DV_STATE_COUNT_] = {
    S_N("none"),      S_N("queued"),  S_N("scheduled"), S_N("running"),
    S_N("succeeded"), S_N("failed"),  S_N("dead"),      S_N("cancelled"),
    S_N("unknown"),   S_N("waiting"),
};

static const dv_name_t s_category_names[DV_CAT_COUNT_] = {
    S_N("none"),
    S_N("timeout"),
    S_N("rate_limited"),
    S_N("auth"),
    S_N("invalid_input"),
    S_N("upstream"),
    S_N("resource_exhausted"),
    S_N("crashed"),
    S_N("lost"),
    S_N("handler"),
    S_N("unknown_type"),
    S_N("cancelled"),
};

/* Unsized, so a type added to dv_msg_type_t without its name fails the
 * assertion below instead of leaving a hole ({NULL, 0}) that
 * dv_enum_find() would match against an empty name. */
static const dv_name_t s_msg_names[] = {
    S_N("none"),      S_N("submit"),  S_N("submitted"), S_N("wait"),
    S_N("result"),    S_N("ctrl"),    S_N("reply"),     S_N("error"),
    S_N("hello"),     S_N("welcome"), S_N("jobs"),      S_N("update"),
    S_N("heartbeat"), S_N("bye"),     S_N("kill"),      S_N("event"),
    S_N("drain"),     S_N("keys"),    S_N("events"),
};
_Static_assert(sizeof s_msg_names / sizeof s_msg_names[0] == DV_MSG_COUNT_,
               "one name per message type");

#define S_UPD_COUNT_ (DV_UPD_RETURNED + 1)
static const dv_name_t s_update_names[S_UPD_COUNT_] = {
    S_N("none"),      S_N("started"), S_N("progress"),
    S_N("succeeded"), S_N("failed"),  S_N("returned"),
};

static const dv_name_t s_event_names[DV_EV_COUNT_] = {
    S_N("other"),           S_N("job.submitted"),
    S_N("job.started"),     S_N("job.progress"),
    S_N("job.succeeded"),   S_N("job.failed"),
    S_N("job.dead"),        S_N("job.cancelled"),
    S_N("job.retried"),     S_N("queue.paused"),
    S_N("queue.resumed"),   S_N("queue.limits"),
    S_N("worker.joined"),   S_N("worker.left"),
    S_N("worker.expired"),  S_N("worker.heartbeat"),
    S_N("worker.draining"), S_N("job.released"),
};

static const dv_name_t s_code_names[DV_CODE_COUNT_] = {
    S_N("none"),         S_N("malformed"),    S_N("too_big"),
    S_N("version"),      S_N("unknown_type"), S_N("unknown_worker"),
    S_N("unknown_verb"), S_N("not_found"),    S_N("invalid_argument"),
    S_N("not_allowed"),  S_N("try_again"),    S_N("store"),
    S_N("no_memory"),    S_N("internal"),     S_N("stale_lease"),
    S_N("standby"),      S_N("denied"),
};

const dv_enum_t dv_enum_state = { s_state_names, DV_STATE_COUNT_, "state" };
const dv_enum_t dv_enum_category = { s_category_names, DV_CAT_COUNT_,
                                     "category" };
const dv_enum_t dv_enum_msg = { s_msg_names, DV_MSG_COUNT_, "message type" };
const dv_enum_t dv_enum_update = { s_update_names, S_UPD_COUNT_, "kind" };
const dv_enum_t dv_enum_event = { s_event_names, DV_EV_COUNT_, "kind" };

int
dv_enum_find(const dv_enum_t *e, const char *name, size_t len)
{
    if (!name)
        return 0;
    for (int i = 1; i < e->count; i++)
        if (e->names[i].len == len && memcmp(e->names[i].name, name, len) == 0)
            return i;
    return 0;
}

const dv_name_t *
dv_enum_name(const dv_enum_t *e, int i)
{
    return i > 0 && i < e->count ? &e->names[i] : &e->names[0];
}

void
dv_failure_init(dv_failure_t *f)
{
    memset(f, 0, sizeof *f);
    f->exit_code = -1;
}

const char *
dv_state_name(dv_state_t s)
{
    return dv_enum_name(&dv_enum_state, (int)s)->name;
}

dv_state_t
dv_state_parse(const char *name, size_t len)
{
    return (dv_state_t)dv_enum_find(&dv_enum_state, name, len);
}

const char *
dv_category_name(dv_category_t c)
{
    return dv_enum_name(&dv_enum_category, (int)c)->name;
}

dv_category_t
dv_category_parse(const char *name, size_t len)
{
    return (dv_category_t)dv_enum_find(&dv_enum_category, name, len);
}

const char *
dv_update_kind_name(dv_update_kind_t k)
{
    return dv_enum_name(&dv_enum_update, (int)k)->name;
}

const char *
dv_msg_type_name(dv_msg_type_t t)
{
    return dv_enum_name(&dv_enum_msg, (int)t)->name;
}

const char *
dv_event_kind_name(dv_event_kind_t k)
{
    return dv_enum_name(&dv_enum_event, (int)k)->name;
}

dv_event_kind_t
dv_event_kind_parse(const char *name, size_t len)
{
    return (dv_event_kind_t)dv_enum_find(&dv_enum_event, name, len);
}

dv_str_t
dv_event_topic(const dv_event_t *ev)
{
    if (ev->kind.ptr || ev->kind_enum == DV_EV_OTHER)
        return ev->kind;
    const dv_name_t *n = dv_enum_name(&dv_enum_event, (int)ev->kind_enum);
    return dv_strn(n->name, n->len);
}

bool
dv_event_is_job(const dv_event_t *ev)
{
    dv_str_t k = dv_event_topic(ev);
    return k.ptr && k.len > 4 && memcmp(k.ptr, "job.", 4) == 0;
}

const char *
dv_code_name(dv_code_t c)
{
    if ((int)c < 0 || (int)c >= DV_CODE_COUNT_)
        return "unknown";
    return s_code_names[c].name;
}

dv_code_t
dv_code_parse(const char *name, size_t len)
{
    if (!name)
        return DV_CODE_NONE;
    for (int i = 1; i < DV_CODE_COUNT_; i++)
        if (s_code_names[i].len == len &&
            memcmp(s_code_names[i].name, name, len) == 0)
            return (dv_code_t)i;
    return DV_CODE_NONE;
}

dv_code_t
dv_code_from_err(int err)
{
    switch (err) {
    case DV_OK:
        return DV_CODE_NONE;
    case DV_ETRUNC:
    case DV_EPROTO:
        return DV_CODE_MALFORMED;
    case DV_ETOOBIG:
        return DV_CODE_TOO_BIG;
    case DV_EVERSION:
        return DV_CODE_VERSION;
    case DV_ENOMEM:
        return DV_CODE_NO_MEMORY;
    case DV_ETRANSIENT:
        return DV_CODE_TRY_AGAIN;
    case DV_EIO:
    case DV_ENOSPC:
        return DV_CODE_STORE;
    default:
        return DV_CODE_INTERNAL;
    }
}
