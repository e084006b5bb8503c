/* The one mapping between kiln's errno codes and gRPC status codes: see
 * status.h. */
#include <kiln/util/status.h>

static const struct {
        int code;
        unsigned status;
} table[] = {
        /* The first row for a status is its inverse. */
        {ENOENT, KILN_STATUS_NOT_FOUND},
        {EINVAL, KILN_STATUS_INVALID_ARGUMENT},
        {EBADMSG, KILN_STATUS_DATA_LOSS},
        {EEXIST, KILN_STATUS_ALREADY_EXISTS},
        {ENOTSUP, KILN_STATUS_UNIMPLEMENTED},
        {ENOSPC, KILN_STATUS_RESOURCE_EXHAUSTED},
        {ETIMEDOUT, KILN_STATUS_DEADLINE_EXCEEDED},
        {ECANCELED, KILN_STATUS_CANCELLED},
        {EAGAIN, KILN_STATUS_UNAVAILABLE},
        {ENOEXEC, KILN_STATUS_FAILED_PRECONDITION},
        {EACCES, KILN_STATUS_PERMISSION_DENIED},
        {EPERM, KILN_STATUS_PERMISSION_DENIED},
};

unsigned kiln_status_from_errno(int code)
{
        if (code < 0)
                code = -code;
        if (code == 0)
                return KILN_STATUS_OK;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(table); i++)
                if (table[i].code == code)
                        return table[i].status;
        return KILN_STATUS_INTERNAL;
}

int kiln_errno_from_status(unsigned status)
{
        if (status == KILN_STATUS_OK)
                return 0;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(table); i++)
                if (table[i].status == status)
                        return table[i].code;
        return EIO;
}

const char *kiln_status_name(unsigned status)
{
        static const char *const names[] = {
                [KILN_STATUS_OK] = "OK",
                [KILN_STATUS_CANCELLED] = "CANCELLED",
                [KILN_STATUS_UNKNOWN] = "UNKNOWN",
                [KILN_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
                [KILN_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
                [KILN_STATUS_NOT_FOUND] = "NOT_FOUND",
                [KILN_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
                [KILN_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
                [KILN_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
                [KILN_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
                [KILN_STATUS_ABORTED] = "ABORTED",
                [KILN_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
                [KILN_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
                [KILN_STATUS_INTERNAL] = "INTERNAL",
                [KILN_STATUS_UNAVAILABLE] = "UNAVAILABLE",
                [KILN_STATUS_DATA_LOSS] = "DATA_LOSS",
                [KILN_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
        };
        if (status < KILN_ARRAY_SIZE(names) && names[status])
                return names[status];
        return "STATUS_UNKNOWN_VALUE";
}
