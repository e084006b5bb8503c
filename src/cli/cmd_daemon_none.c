/* kiln daemon in builds without the grpc feature. */
#include "cli.h"

int cmd_daemon(int argc, char **argv)
{
        (void)argc, (void)argv;
        return cli_failf("daemon: not available (built without gRPC support)");
}
