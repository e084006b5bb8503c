/* kiln nix nar-hash [--base32|--base16|--sri] [--size] (PATH | --node NODE) */
#include <fcntl.h>

#include <kiln/castore/json.h>
#include <kiln/nix/nar.h>

#include "cli_nix.h"

static const char usage[] =
    "usage: kiln nix nar-hash [options] PATH\n"
    "       kiln nix nar-hash [options] --node NODE\n"
    "Prints the SHA-256 of the NAR serialisation of PATH (symlinks are not followed)\n"
    "or of a stored tree, by default as `nix-store -q --hash` prints it:\n"
    "sha256:<nixbase32>.\n\n"
    "  --sri               sha256-<base64>, as `nix hash path` prints it\n"
    "  --base32            the bare nixbase32 (`nix hash path --base32`)\n"
    "  --base16            the bare hex (`nix hash path --base16`)\n"
    "  --size              also print the NAR's size in bytes, after a space\n"
    "  --node NODE         hash the stored tree NODE (proto3 JSON Node or b3:<digest>)\n"
    "  -h, --help          show this help\n" CLI_STORE_USAGE;

enum { OPT_SRI = 0x100, OPT_B32, OPT_B16, OPT_SIZE, OPT_NODE };

int cmd_nix_nar_hash(int argc, char **argv)
{
        static const struct option opts[] = {
            {"sri", no_argument, NULL, OPT_SRI},
            {"base32", no_argument, NULL, OPT_B32},
            {"base16", no_argument, NULL, OPT_B16},
            {"size", no_argument, NULL, OPT_SIZE},
            {"node", required_argument, NULL, OPT_NODE},
            {"help", no_argument, NULL, 'h'},
            CLI_STORE_OPTIONS,
            {},
        };
        struct cli_stores stores = {0};
        enum kiln_nix_hash_format format = KILN_NIX_NIXBASE32;
        bool typed = true, size = false;
        const char *node_arg = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (cli_stores_option(&stores, c, optarg))
                        continue;
                switch (c) {
                case OPT_SRI:
                        format = KILN_NIX_SRI;
                        break;
                case OPT_B32:
                        format = KILN_NIX_NIXBASE32;
                        typed = false;
                        break;
                case OPT_B16:
                        format = KILN_NIX_BASE16;
                        typed = false;
                        break;
                case OPT_SIZE:
                        size = true;
                        break;
                case OPT_NODE:
                        node_arg = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("nix nar-hash", "invalid option");
                }
        }
        if (argc - optind != (node_arg ? 0 : 1))
                return cli_usage_error("nix nar-hash", node_arg
                                                           ? "PATH and --node exclude each other"
                                                           : "expected one PATH");

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_nix_nar_info info;
        int r;
        if (node_arg) {
                struct kiln_node node;
                if (kiln_node_parse_arg(node_arg, &node, &err) < 0)
                        return cli_fail(err);
                if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS)) {
                        kiln_node_done(&node);
                        return 1;
                }
                r = kiln_nix_nar_dump_node(stores.blobs, stores.dirs, &node, NULL, &info, &err);
                kiln_node_done(&node);
                cli_stores_close(&stores);
        } else {
                r = kiln_nix_nar_dump_path(AT_FDCWD, argv[optind], NULL, &info, &err);
        }
        if (r < 0)
                return cli_fail(err);
        char buf[KILN_NIX_HASH_STR_MAX];
        if (size)
                printf("%s %llu\n", kiln_nix_hash_format(&info.hash, format, typed, buf),
                       (unsigned long long)info.size);
        else
                printf("%s\n", kiln_nix_hash_format(&info.hash, format, typed, buf));
        if (fflush(stdout) != 0)
                return cli_failf("nix nar-hash: write to standard output: %s", strerror(errno));
        return 0;
}
