/* gRPC-typed forms of kiln/util/status.h, used by the daemon (errors →
 * status) and by the clients (status → errors); gRPC's logging. */
#include <stdio.h>

#include <pthread.h>
#include <stdlib.h>

#include <grpc/support/log.h>

#include <kiln/rpc/rpc.h>
#include <kiln/util/status.h>

/* The table itself is gRPC-free (kiln/util/status.h); the numbers are the
 * protocol's, so they are grpc_status_code values. */
grpc_status_code kiln_rpc_status_from_errno(int code)
{
        return (grpc_status_code)kiln_status_from_errno(code);
}

int kiln_rpc_errno_from_status(grpc_status_code status)
{
        return kiln_errno_from_status((unsigned)status);
}

const char *kiln_rpc_status_name(grpc_status_code status)
{
        return kiln_status_name((unsigned)status);
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
