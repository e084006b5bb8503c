/* kiln export NODE DEST */
#include <fcntl.h>

#include <kiln/ingest/import.h>
#include <kiln/castore/json.h>

#include "cli.h"

static const char usage[] =
        "usage: kiln export [options] NODE DEST\n"
        "Recreates the tree of NODE (a proto3 JSON Node, or b3:<digest> of a Directory)\n"
        "at DEST, which must not exist.\n\n" CLI_STORE_USAGE;

int cmd_export(int argc, char **argv)
{
        struct cli_stores stores = {0};
        int status = cli_parse_store_options("export", usage, argc, argv, &stores);
        if (status >= 0)
                return status;
        if (argc - optind != 2)
                return cli_usage_error("export", "expected NODE and DEST");

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_node node;
        if (kiln_node_parse_arg(argv[optind], &node, &err) < 0)
                return cli_fail(err);
        status = cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS);
        if (status == 0 && kiln_export_node(stores.blobs, stores.dirs, &node, AT_FDCWD,
                                            argv[optind + 1], &err) < 0)
                status = cli_fail(err);
        kiln_node_done(&node);
        cli_stores_close(&stores);
        return status;
}
