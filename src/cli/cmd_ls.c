/* kiln ls [--json] b3:<digest> */
#include <kiln/castore/json.h>

#include "cli.h"

static const char usage[] =
        "usage: kiln ls [options] DIGEST\n"
        "Lists a stored Directory: type, name, digest (or symlink target), size.\n"
        "Types: dir, file, exec (executable file), link.\n\n"
        "  --json                        print the Directory as proto3 JSON\n" CLI_STORE_USAGE;

/* Prints bytes with non-printable ones escaped as \xNN. */
static void put_escaped(const struct kiln_bytes *b)
{
        for (size_t i = 0; i < b->len; i++) {
                uint8_t c = b->data[i];
                if (c >= 0x20 && c < 0x7f && c != '\\')
                        putchar(c);
                else
                        printf("\\x%02x", c);
        }
}

int cmd_ls(int argc, char **argv)
{
        static const struct option opts[] = {
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                CLI_STORE_OPTIONS,
                {},
        };
        struct cli_stores stores = {0};
        bool json = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (cli_stores_option(&stores, c, optarg))
                        continue;
                switch (c) {
                case 'j':
                        json = true;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("ls", "invalid option");
                }
        }
        if (argc - optind != 1)
                return cli_usage_error("ls", "expected one DIGEST");

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_digest d;
        if (kiln_digest_parse(argv[optind], &d, &err) < 0)
                return cli_fail(err);
        if (cli_stores_open(&stores, CLI_DIRS))
                return 1;
        _cleanup_(kiln_directory_done) struct kiln_directory dir = KILN_DIRECTORY_INIT;
        int r = kiln_directory_get(stores.dirs, &d, &dir, &err);
        cli_stores_close(&stores);
        if (r < 0)
                return cli_fail(err);
        if (r == 0)
                return cli_failf("directory %s not found", KILN_DIGEST_B64(&d));

        if (json) {
                json_t *j = kiln_directory_to_json(&dir);
                cli_print_json(j);
                json_decref(j);
                return 0;
        }
        for (size_t i = 0; i < dir.n; i++) {
                const struct kiln_node *n = &dir.nodes[i];
                const char *type = n->kind == KILN_NODE_DIRECTORY ? "dir"
                                   : n->kind == KILN_NODE_SYMLINK ? "link"
                                   : n->executable                ? "exec"
                                                                  : "file";
                printf("%-4s  ", type);
                if (n->kind == KILN_NODE_SYMLINK)
                        printf("%-47s  %12s  ", "-", "-");
                else
                        printf("%s  %12llu  ", KILN_DIGEST_B64(&n->digest),
                               (unsigned long long)n->size);
                put_escaped(&n->name);
                if (n->kind == KILN_NODE_SYMLINK) {
                        fputs(" -> ", stdout);
                        put_escaped(&n->target);
                }
                putchar('\n');
        }
        return 0;
}
