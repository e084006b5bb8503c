/* kiln nix import-nar [FILE|-] */
#include <fcntl.h>

#include <kiln/castore/json.h>
#include <kiln/nix/nar.h>

#include "cli_nix.h"

static const char usage[] =
    "usage: kiln nix import-nar [options] [FILE|-]\n"
    "Reads one NAR (from FILE, or standard input) into the store, checking that it is\n"
    "canonical, and prints {\"node\": NODE, \"narHash\": \"sha256:<nixbase32>\",\n"
    "\"narSize\": N} as one JSON line. Nothing refers to what a rejected NAR left.\n\n"
    "  -h, --help          show this help\n" CLI_STORE_USAGE;

int cmd_nix_import_nar(int argc, char **argv)
{
        struct cli_stores stores = {0};
        int status = cli_parse_store_options("nix import-nar", usage, argc, argv, &stores);
        if (status >= 0)
                return status;
        if (argc - optind > 1)
                return cli_usage_error("nix import-nar", "expected at most one FILE");
        const char *file = optind < argc ? argv[optind] : "-";
        _cleanup_close_ int fd = -1;
        if (strcmp(file, "-") != 0) {
                fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return cli_failf("nix import-nar: cannot open '%s': %s", file,
                                         strerror(errno));
        }
        if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS))
                return 1;
        struct kiln_nix_nar_source src;
        kiln_nix_nar_source_fd(fd >= 0 ? fd : STDIN_FILENO, &src);
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_node node;
        struct kiln_nix_nar_info info;
        int r = kiln_nix_nar_import(stores.blobs, stores.dirs, &src, &node, &info, &err);
        cli_stores_close(&stores);
        if (r < 0)
                return cli_fail(err);
        json_t *line = json_object();
        json_object_set_new(line, "node", kiln_node_to_json(&node));
        json_object_set_new(line, "narHash",
                            json_string(KILN_NIX_HASH_STR(&info.hash, KILN_NIX_NIXBASE32, true)));
        json_object_set_new(line, "narSize", json_integer((json_int_t)info.size));
        cli_print_json(line);
        json_decref(line);
        kiln_node_done(&node);
        return 0;
}
