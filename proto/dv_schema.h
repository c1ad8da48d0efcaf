/* dv_schema - the wire schema as data, and the one engine that reads it.
 * Internal to proto/: the message tables (dv_msg_schema.c), the typed
 * bodies (dv_body.c), the envelope (dv_msg.c) and the names
 * (dv_proto_names.c) share it; components never include it.
 *
 * A schema describes one msgpack map as a C struct: one dv_field_t per
 * key, in the order the encoder writes them, each with the key, the field
 * type, flags (required, omitted when default, behind a has_ flag, ...),
 * bounds, the offset of the value in the struct, and for nested maps and
 * arrays of maps the schema of the nested struct. From the table alone the
 * engine
 *   - decodes a msgpack object tree into the struct, strictly: types,
 *     ranges, lengths, required keys, a known key given twice; unknown keys
 *     are ignored; the reason names the path ("jobs[3].priority: must be
 *     0..9"); arrays are allocated (zeroed) after their count is checked;
 *   - encodes the struct into a map with an exact header;
 *   - compares two structs field by field (dv_msg_equal and friends).
 * What a table cannot say (defaults, "required unless", cross-field rules)
 * goes in three optional hooks per schema: init, need and check.
 *
 * Pure functions, no I/O, no global state; any thread. */
#ifndef DV_SCHEMA_H
#define DV_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "dv_proto.h"

/* ---- names of enum values ----------------------------------------------- */

/* A name with its length, so lookups compare lengths before bytes. */
typedef struct {
    const char *name;
    uint32_t len;
} dv_name_t;

/* An enum's wire names, indexed by value; slot 0 is the "none" value, which
 * never parses. noun goes in reasons: unknown <noun> "x". */
typedef struct {
    const dv_name_t *names;
    int count;
    const char *noun;
} dv_enum_t;

extern const dv_enum_t dv_enum_state, dv_enum_category, dv_enum_msg,
    dv_enum_update, dv_enum_event;

/* Index of name in e (1..count-1), or 0 if absent. */
int dv_enum_find(const dv_enum_t *e, const char *name, size_t len);
/* The name of value i, or of slot 0 when i is out of range. */
const dv_name_t *dv_enum_name(const dv_enum_t *e, int i);

/* ---- the table format ---------------------------------------------------- */

typedef enum {
    DV_FT_U64,    /* uint64_t; any non-negative integer; >= min */
    DV_FT_I64,    /* int64_t; integer in min..max */
    DV_FT_I32,    /* int32_t (or an int-sized enum); integer in min..max */
    DV_FT_U32,    /* uint32_t; integer in min..max */
    DV_FT_DOUBLE, /* double; integer or float, finite; >= min with DMIN */
    DV_FT_BOOL,   /* bool; true/false only */
    DV_FT_STR,    /* dv_str_t; str of min..max bytes */
    DV_FT_ID,     /* dv_str_t; str of exactly 36 bytes (job id) */
    DV_FT_VALUE,  /* dv_str_t; bin holding exactly one msgpack value */
    DV_FT_ENUM,   /* int-sized enum; str, one of ref's names */
    DV_FT_KIND,   /* dv_str_t name of 1..max bytes, plus its enum (ref) at
                   * aux; names ref does not know are kept, enum 0 */
    DV_FT_MAP,    /* nested struct at off, schema ref */
    DV_FT_ARRAY,  /* pointer at off, uint32_t count at aux, min..max items;
                   * items are maps of schema ref, or (with SCALAR) values
                   * described by the field ref */
    DV_FT_RAW,    /* dv_str_t; one msgpack value embedded as it is (not in
                   * a bin). Only at the top level of a body (dv_body_*) */
} dv_ftype_t;

enum {
    DV_FF_REQ = 1u << 0,    /* required key */
    DV_FF_OMIT = 1u << 1,   /* encoder leaves it out when it equals dflt
                             * (numbers, enums; arrays: when empty) */
    DV_FF_HAS = 1u << 2,    /* bool at has says present: set on decode,
                             * read on encode */
    DV_FF_NIL = 1u << 3,    /* str: absent is written as nil, and nil
                             * decodes as absent */
    DV_FF_ALWAYS = 1u << 4, /* str: absent is written as "" */
    DV_FF_DMIN = 1u << 5,   /* double: must be >= min */
    DV_FF_SCALAR = 1u << 6, /* array of values (ref is a dv_field_t) */
    DV_FF_NAME = 1u << 7,   /* str: a name (dv_name_check): valid UTF-8,
                               no control characters */
};

typedef struct dv_dec dv_dec_t;
typedef struct dv_schema dv_schema_t;

typedef struct dv_field {
    const char *name; /* the key */
    uint8_t len;      /* strlen(name) */
    uint8_t type;     /* dv_ftype_t */
    uint16_t flags;   /* DV_FF_* */
    uint32_t off;     /* the value in the struct */
    uint32_t aux;     /* ARRAY: uint32_t count; KIND: the enum */
    uint32_t has;     /* HAS: the bool */
    int64_t min, max; /* numbers: range; STR: length; ARRAY: items */
    int64_t dflt;     /* OMIT: the value left out */
    const void *ref;  /* MAP, ARRAY: dv_schema_t (SCALAR: dv_field_t);
                        * ENUM, KIND: dv_enum_t */
    const char *hint; /* ARRAY: the reason when under min items */
    /* Encoder: whether to write the field, instead of the flags' rule. */
    bool (*present)(const void *obj);
} dv_field_t;

struct dv_schema {
    const char *name;         /* for reasons, at the top level */
    const dv_field_t *fields; /* in wire order; at most 32 */
    uint32_t nfields;
    uint32_t size; /* sizeof the struct (array items) */
    /* Sets defaults before a decode (the struct is zeroed). */
    void (*init)(void *obj);
    /* Adjusts the set of required keys (bit i = fields[i]) after the keys
     * are read: "id unless error", "failure when kind is failed". */
    uint32_t (*need)(const void *obj, uint32_t seen, uint32_t need);
    /* A rule across fields, after the keys are read; fails through
     * dv_dec_fail_at(). */
    int (*check)(dv_dec_t *d, const void *obj);
};

/* Schema initialiser: name, field table, struct type; hooks may follow. */
#define DV_SCHEMA(nm, a, T)                                                    \
    .name = (nm), .fields = (a),                                               \
    .nfields = (uint32_t)(sizeof(a) / sizeof((a)[0])), .size = sizeof(T)

/* Field initialisers: key, struct type, member, flags, then the type's own
 * bounds. Further designators (.dflt, .has, .hint, .present) may follow. */
#define DV_F_(k, t, T, m, fl)                                                  \
    .name = (k), .len = sizeof(k) - 1, .type = (t), .flags = (fl),             \
    .off = offsetof(T, m)
#define DV_F_U64(k, T, m, fl) DV_F_(k, DV_FT_U64, T, m, fl)
#define DV_F_I64(k, T, m, fl, lo, hi)                                          \
    DV_F_(k, DV_FT_I64, T, m, fl), .min = (lo), .max = (hi)
#define DV_F_I32(k, T, m, fl, lo, hi)                                          \
    DV_F_(k, DV_FT_I32, T, m, fl), .min = (lo), .max = (hi)
#define DV_F_U32(k, T, m, fl, lo, hi)                                          \
    DV_F_(k, DV_FT_U32, T, m, fl), .min = (lo), .max = (hi)
#define DV_F_DBL(k, T, m, fl)  DV_F_(k, DV_FT_DOUBLE, T, m, fl)
#define DV_F_BOOL(k, T, m, fl) DV_F_(k, DV_FT_BOOL, T, m, fl)
#define DV_F_STR(k, T, m, fl, lo, hi)                                          \
    DV_F_(k, DV_FT_STR, T, m, fl), .min = (lo), .max = (hi)
#define DV_F_NAME(k, T, m, fl)                                                 \
    DV_F_STR(k, T, m, (fl) | DV_FF_NAME, 1, DV_NAME_MAX)
#define DV_F_TEXT(k, T, m, fl)    DV_F_STR(k, T, m, fl, 0, DV_TEXT_MAX)
#define DV_F_ID(k, T, m, fl)      DV_F_(k, DV_FT_ID, T, m, fl)
#define DV_F_VALUE(k, T, m, fl)   DV_F_(k, DV_FT_VALUE, T, m, fl)
#define DV_F_RAW(k, T, m, fl)     DV_F_(k, DV_FT_RAW, T, m, fl)
#define DV_F_ENUM(k, T, m, fl, e) DV_F_(k, DV_FT_ENUM, T, m, fl), .ref = (e)
#define DV_F_KIND(k, T, m, em, fl, e)                                          \
    DV_F_(k, DV_FT_KIND, T, m, fl), .aux = offsetof(T, em), .ref = (e),        \
                                    .min = 1, .max = DV_NAME_MAX
#define DV_F_MAP(k, T, m, fl, s) DV_F_(k, DV_FT_MAP, T, m, fl), .ref = (s)
#define DV_F_ARRAY(k, T, m, n, fl, s, hi)                                      \
    DV_F_(k, DV_FT_ARRAY, T, m, fl), .aux = offsetof(T, n), .ref = (s),        \
                                     .max = (hi)
#define DV_F_ARRAY_OF(k, T, m, n, fl, elem, hi)                                \
    DV_F_(k, DV_FT_ARRAY, T, m, (fl) | DV_FF_SCALAR),                          \
        .aux = offsetof(T, n), .ref = (elem), .max = (hi)
#define DV_HAS(T, m) .has = offsetof(T, m)

/* ---- the engine ------------------------------------------------------------ */

/* Decoder state: where it is, for reasons, and what it allocated. */
#define DV_PATH_MAX 40
struct dv_dec {
    char *why;
    size_t why_size;
    const char *msg; /* "submit: " prefix of reasons; NULL for none */
    int depth;       /* path segments in use */
    struct {
        const char *key; /* a key, or NULL for an index */
        int64_t idx;
    } path[DV_PATH_MAX];
    const char *leaf; /* the key being read in the innermost map, kept
                        * apart from path so reading a key costs one store */
    void *blocks;     /* chain of the arrays allocated, for release */
};

/* A fresh decoder writing reasons to why. */
void dv_dec_init(dv_dec_t *d, char *why, size_t why_size);

/* Writes "<msg>: <path>: <text>" to why and returns rc. */
int dv_dec_fail(dv_dec_t *d, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, with key appended to the path (for check hooks). */
int dv_dec_fail_at(dv_dec_t *d, const char *key, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Decodes the map o into obj by s: obj must be zeroed; s->init runs
 * first. On failure obj may be half filled. */
int dv_dec_map(dv_dec_t *d, const dv_schema_t *s, const msgpack_object *o,
               void *obj);
/* Decodes the keys of the map o into obj by s, without zeroing obj or
 * checking o's type (the envelope has done both). */
int dv_dec_keys(dv_dec_t *d, const dv_schema_t *s, const msgpack_object *o,
                void *obj);

/* Frees a chain of blocks left in dv_dec_t.blocks. */
void dv_dec_free(void *blocks);

/* Appends the map of obj by s to out. Returns 0, or non-zero when out of
 * memory (out may then hold part of the map: callers put its size back). */
int dv_enc_map(msgpack_sbuffer *out, const dv_schema_t *s, const void *obj);
/* The fields of obj the encoder writes, as a mask (bit i = fields[i]),
 * and how many through *n; then dv_enc_fields() writes them (no map
 * header). For the envelope, which adds "v" and "t". */
uint32_t dv_enc_mask(const dv_schema_t *s, const void *obj, uint32_t *n);
int dv_enc_fields(msgpack_sbuffer *out, const dv_schema_t *s, const void *obj,
                  uint32_t mask);

/* True if a and b agree on every field of s; else the first difference,
 * "<prefix>: <path>: <a> != <b>", goes to diff. */
bool dv_schema_equal(const dv_schema_t *s, const char *prefix, const void *a,
                     const void *b, char *diff, size_t diff_size);

/* A whole body (a msgpack map not in a message envelope): validates the
 * bytes (at most DV_PAYLOAD_MAX, nested at most DV_VALUE_DEPTH_MAX), then
 * decodes them into obj by s, with reasons prefixed "<s->name>: ". On
 * success *priv holds the arrays (free with dv_dec_free); on failure obj
 * is zeroed and *priv NULL. RAW fields are found in the raw bytes. */
int dv_body_decode(const dv_schema_t *s, const void *data, size_t size,
                   void *obj, void **priv, char *why, size_t why_size);
/* Appends the body of obj by s to out. DV_OK or DV_ENOMEM. */
int dv_body_encode(const dv_schema_t *s, const void *obj, msgpack_sbuffer *out);

/* ---- raw msgpack --------------------------------------------------------- */

/* Size in bytes of the one msgpack value at data (at most size bytes,
 * nested at most max_depth), or 0 if it is not complete or too deep. */
size_t dv_mp_span(const void *data, size_t size, int max_depth);

#endif
