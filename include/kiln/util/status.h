/* gRPC status codes by number (the numbers are fixed by the gRPC protocol)
 * and the one mapping between them and kiln's errno codes. Free of gRPC
 * itself, so what builds without gRPC report (a failed build's live event)
 * uses the same codes; kiln/rpc/rpc.h has the grpc_status_code forms. */
#pragma once

#include <kiln/util/util.h>

enum {
        KILN_STATUS_OK = 0,
        KILN_STATUS_CANCELLED = 1,
        KILN_STATUS_UNKNOWN = 2,
        KILN_STATUS_INVALID_ARGUMENT = 3,
        KILN_STATUS_DEADLINE_EXCEEDED = 4,
        KILN_STATUS_NOT_FOUND = 5,
        KILN_STATUS_ALREADY_EXISTS = 6,
        KILN_STATUS_PERMISSION_DENIED = 7,
        KILN_STATUS_RESOURCE_EXHAUSTED = 8,
        KILN_STATUS_FAILED_PRECONDITION = 9,
        KILN_STATUS_ABORTED = 10,
        KILN_STATUS_OUT_OF_RANGE = 11,
        KILN_STATUS_UNIMPLEMENTED = 12,
        KILN_STATUS_INTERNAL = 13,
        KILN_STATUS_UNAVAILABLE = 14,
        KILN_STATUS_DATA_LOSS = 15,
        KILN_STATUS_UNAUTHENTICATED = 16,
};

/* errno → status: ENOENT NOT_FOUND, EINVAL INVALID_ARGUMENT, EBADMSG
 * DATA_LOSS, EEXIST ALREADY_EXISTS, ENOTSUP UNIMPLEMENTED, ENOSPC
 * RESOURCE_EXHAUSTED, ETIMEDOUT DEADLINE_EXCEEDED, ECANCELED CANCELLED,
 * EAGAIN UNAVAILABLE, ENOEXEC FAILED_PRECONDITION, EACCES and EPERM
 * PERMISSION_DENIED, anything else INTERNAL. `code` is positive or negative. */
KILN_PUBLIC unsigned kiln_status_from_errno(int code);
/* status → positive errno, the inverse of the table above; UNKNOWN,
 * INTERNAL, ABORTED, OUT_OF_RANGE and others give EIO; OK gives 0. */
KILN_PUBLIC int kiln_errno_from_status(unsigned status);
/* "NOT_FOUND", "INVALID_ARGUMENT", … ("STATUS_UNKNOWN_VALUE" for others). */
KILN_PUBLIC const char *kiln_status_name(unsigned status);
