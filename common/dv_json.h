/* dv_json - JSON (jansson) <-> msgpack (msgpack-c).
 *
 * Job payloads and results travel and are stored as msgpack; people and exec
 * handlers see JSON. Integers stay integers, reals stay reals. msgpack bin
 * and ext values have no JSON form: bin becomes a string if it is valid UTF-8,
 * else {"$bin": "<base64>"}; non-string map keys are rejected. */
#ifndef DV_JSON_H
#define DV_JSON_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

#define DV_JSON_MAX_DEPTH 64

/* Appends the msgpack encoding of j to pk. Returns 0, or -1 if the value is
 * nested deeper than DV_JSON_MAX_DEPTH. */
int dv_json_pack(msgpack_packer *pk, const json_t *j);

/* Encodes j as msgpack into a new buffer of *len bytes; caller owns it
 * (free()). Returns NULL on failure. */
char *dv_json_to_msgpack(const json_t *j, size_t *len);

/* Decodes one msgpack value of exactly len bytes into JSON. Returns a new
 * reference, or NULL with a reason in why (may be NULL) if the bytes are not
 * a single valid msgpack value or cannot be shown as JSON. */
json_t *dv_msgpack_to_json(const void *data, size_t len, char *why,
                           size_t why_size);

/* Converts an already decoded msgpack object. Same contract as above. */
json_t *dv_msgpack_object_to_json(const msgpack_object *o, char *why,
                                  size_t why_size);

/* Convenience: msgpack bytes -> compact JSON text; caller frees. On bytes that
 * are not valid msgpack returns NULL. len 0 gives "null". */
char *dv_msgpack_to_json_text(const void *data, size_t len);

#endif
