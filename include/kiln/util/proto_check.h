/* Checks of raw protobuf bytes that protobuf-c cannot make after unpacking:
 * it stores `string` fields as C strings, so an embedded NUL would silently
 * truncate them, and it does not check UTF-8. */
#pragma once

#include <protobuf-c/protobuf-c.h>

#include <kiln/util/error.h>

/* Walks `data` as a message of type `desc`, recursing into sub-messages, and
 * fails with -EINVAL "field <path>: contains a NUL byte" or "...: is not valid
 * UTF-8" for the first offending string field (path like
 * "environment_vars[2].key"). Malformed wire data is left for the unpacker to
 * report. */
int kiln_proto_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                             size_t len, struct kiln_error **err);
