/* The one mapping between kiln's errno codes and gRPC status codes, used by
 * the daemon (errors → status) and by the clients (status → errors). */
#include <stdio.h>

#include <pthread.h>
#include <stdlib.h>

#include <grpc/support/log.h>

#include <kiln/rpc/rpc.h>

static const struct {
        int code;
        grpc_status_code status;
} table[] = {
        /* The first row for a status is its inverse. */
        {ENOENT, GRPC_STATUS_NOT_FOUND},
        {EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
        {EBADMSG, GRPC_STATUS_DATA_LOSS},
        {EEXIST, GRPC_STATUS_ALREADY_EXISTS},
        {ENOTSUP, GRPC_STATUS_UNIMPLEMENTED},
        {ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED},
        {ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
        {ECANCELED, GRPC_STATUS_CANCELLED},
        {EAGAIN, GRPC_STATUS_UNAVAILABLE},
        {ENOEXEC, GRPC_STATUS_FAILED_PRECONDITION},
        {EACCES, GRPC_STATUS_PERMISSION_DENIED},
        {EPERM, GRPC_STATUS_PERMISSION_DENIED},
};

grpc_status_code kiln_rpc_status_from_errno(int code)
{
        if (code < 0)
                code = -code;
        if (code == 0)
                return GRPC_STATUS_OK;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(table); i++)
                if (table[i].code == code)
                        return table[i].status;
        return GRPC_STATUS_INTERNAL;
}

int kiln_rpc_errno_from_status(grpc_status_code status)
{
        if (status == GRPC_STATUS_OK)
                return 0;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(table); i++)
                if (table[i].status == status)
                        return table[i].code;
        return EIO;
}

const char *kiln_rpc_status_name(grpc_status_code status)
{
        static const char *const names[] = {
                [GRPC_STATUS_OK] = "OK",
                [GRPC_STATUS_CANCELLED] = "CANCELLED",
                [GRPC_STATUS_UNKNOWN] = "UNKNOWN",
                [GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
                [GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
                [GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
                [GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
                [GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
                [GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
                [GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
                [GRPC_STATUS_ABORTED] = "ABORTED",
                [GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
                [GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
                [GRPC_STATUS_INTERNAL] = "INTERNAL",
                [GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
                [GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
                [GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
        };
        if ((unsigned)status < KILN_ARRAY_SIZE(names) && names[status])
                return names[status];
        return "STATUS_UNKNOWN_VALUE";
}

static void quiet_log(gpr_log_func_args *args)
{
        (void)args;
}

static void setup_logging(void)
{
        const char *l = getenv("KILN_LOG");
        if ((l && !strcmp(l, "debug")) || getenv("GRPC_VERBOSITY"))
                return;
        gpr_set_log_function(quiet_log);
}

void kiln_rpc_init(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, setup_logging);
        grpc_init();
}
