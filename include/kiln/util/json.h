/* The proto3 JSON mapping (as protobuf tooling such as grpcurl prints it):
 * bytes as standard base64, 64-bit integers as strings, lowerCamelCase field
 * names, default values omitted. Parsers accept both name styles, integers as
 * numbers or strings, base64 in either alphabet with or without padding, and
 * reject unknown fields. */
#pragma once

#include <jansson.h>

#include <kiln/util/error.h>

/* Serialises compactly (one line) into a heap string. */
KILN_PUBLIC char *kiln_json_dumps(const json_t *j);

/* Helpers for other message mappings. */
KILN_PUBLIC json_t *kiln_json_bytes(const void *p, size_t len);
KILN_PUBLIC json_t *kiln_json_u64(uint64_t v);
/* Looks up a field by its proto name ("command_args") or its JSON name
 * ("commandArgs"); NULL when absent or JSON null. */
KILN_PUBLIC json_t *kiln_json_field(const json_t *obj, const char *proto_name);
/* Fails with -EINVAL naming the field if obj has a key that is not one of the
 * NULL-terminated proto names (in either style). `what` names the message. */
KILN_PUBLIC int kiln_json_check_fields(const json_t *obj, const char *what,
                                       const char *const *proto_names, struct kiln_error **err);
/* Field readers: absent → default (0, empty, false). -EINVAL naming `field`. */
KILN_PUBLIC int kiln_json_get_bytes(const json_t *obj, const char *field, uint8_t **ret,
                                    size_t *ret_len, struct kiln_error **err);
KILN_PUBLIC int kiln_json_get_u64(const json_t *obj, const char *field, uint64_t *ret,
                                  struct kiln_error **err);
KILN_PUBLIC int kiln_json_get_bool(const json_t *obj, const char *field, bool *ret,
                                   struct kiln_error **err);
/* A string field; the result is a heap copy (with its length, as proto3
 * strings may contain NUL). */
KILN_PUBLIC int kiln_json_get_string(const json_t *obj, const char *field, char **ret,
                                     size_t *ret_len, struct kiln_error **err);
