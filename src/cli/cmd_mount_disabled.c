/* kiln mount, in a build without FUSE support (meson -Dfuse=disabled or no
 * libfuse3). */
#include "cli.h"

bool cli_fuse_read_stats(uint64_t *reads, uint64_t *bytes)
{
        (void)reads, (void)bytes;
        return false;
}

int cmd_mount(int argc, char **argv)
{
        (void)argc, (void)argv;
        return cli_failf("mount: this kiln was built without FUSE support (libfuse3)");
}
