/* kiln nix dump-path (PATH | --node NODE) */
#include <fcntl.h>

#include <kiln/castore/json.h>
#include <kiln/nix/nar.h>

#include "cli_nix.h"

static const char usage[] =
    "usage: kiln nix dump-path [options] PATH\n"
    "       kiln nix dump-path [options] --node NODE\n"
    "Writes the NAR serialisation of PATH (symlinks are not followed) or of a stored\n"
    "tree to standard output, byte for byte as `nix-store --dump` does.\n\n"
    "  --node NODE         dump the stored tree NODE (proto3 JSON Node or b3:<digest>)\n"
    "  -h, --help          show this help\n" CLI_STORE_USAGE;

enum { OPT_NODE = 0x100 };

int cmd_nix_dump_path(int argc, char **argv)
{
        static const struct option opts[] = {
            {"node", required_argument, NULL, OPT_NODE},
            {"help", no_argument, NULL, 'h'},
            CLI_STORE_OPTIONS,
            {},
        };
        struct cli_stores stores = {0};
        const char *node_arg = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (cli_stores_option(&stores, c, optarg))
                        continue;
                switch (c) {
                case OPT_NODE:
                        node_arg = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("nix dump-path", "invalid option");
                }
        }
        if (argc - optind != (node_arg ? 0 : 1))
                return cli_usage_error("nix dump-path", node_arg
                                                            ? "PATH and --node exclude each other"
                                                            : "expected one PATH");

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_nix_nar_sink sink;
        kiln_nix_nar_sink_fd(STDOUT_FILENO, &sink);
        int r;
        if (node_arg) {
                struct kiln_node node;
                if (kiln_node_parse_arg(node_arg, &node, &err) < 0)
                        return cli_fail(err);
                if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS)) {
                        kiln_node_done(&node);
                        return 1;
                }
                r = kiln_nix_nar_dump_node(stores.blobs, stores.dirs, &node, &sink, NULL, &err);
                kiln_node_done(&node);
                cli_stores_close(&stores);
        } else {
                r = kiln_nix_nar_dump_path(AT_FDCWD, argv[optind], &sink, NULL, &err);
        }
        return r < 0 ? cli_fail(err) : 0;
}
