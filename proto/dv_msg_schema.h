/* dv_msg_schema - the message tables (dv_msg_schema.c), for the envelope
 * code in dv_msg.c. Internal to proto/. */
#ifndef DV_MSG_SCHEMA_H
#define DV_MSG_SCHEMA_H

#include "dv_schema.h"

/* The body schema of a message type (fields of dv_msg_t), or NULL for
 * DV_MSG_NONE and values out of range. */
const dv_schema_t *dv_msg_schema(dv_msg_type_t type);

/* The schema of one event as an item of "events" (a dv_event_t). */
const dv_schema_t *dv_msg_event_schema(void);

/* Where m (of m->type) keeps its "req", or NULL for types without one. */
uint64_t *dv_msg_req(dv_msg_t *m);

#endif
