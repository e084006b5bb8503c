/* kiln import [--needle STRING]... PATH... */
#include <fcntl.h>

#include <kiln/ingest/import.h>
#include <kiln/castore/json.h>
#include <kiln/ingest/refscan.h>

#include "cli.h"

static const char usage[] =
        "usage: kiln import [options] PATH...\n"
        "Ingests each PATH (symlinks are never followed) and prints one JSON line per\n"
        "path: {\"path\": PATH, \"node\": NODE} (plus \"needles\" with --needle).\n\n"
        "  --needle STRING               report whether STRING occurs in the contents,\n"
        "                                symlink targets or names (repeatable)\n"
        "  --threads N                   hashing threads (default: number of CPUs)\n" CLI_STORE_USAGE;

/* JSON strings must be UTF-8: invalid bytes of a path are shown as U+FFFD. */
static json_t *path_json(const char *p)
{
        json_t *j = json_string(p);
        if (j)
                return j;
        struct kiln_buf b = KILN_BUF_INIT;
        for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
                if (*c < 0x80)
                        kiln_buf_append_byte(&b, *c);
                else
                        kiln_buf_append(&b, "\xef\xbf\xbd", 3);
        }
        kiln_buf_append_byte(&b, 0);
        j = json_string((char *)b.data);
        kiln_buf_done(&b);
        return j;
}

/* Imports one PATH and prints its line; the exit status. */
static int import_one(const struct cli_stores *stores, const char *path,
                      const struct kiln_refscan_set *set, unsigned threads)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *found =
                set ? kiln_refscan_result_new(set) : NULL;
        struct kiln_import_options o = {
                .blobs = stores->blobs,
                .dirs = stores->dirs,
                .needles = set,
                .found = found,
                .scan_names = true,
                .threads = threads,
        };
        struct kiln_node node;
        if (kiln_import_path(&o, AT_FDCWD, path, &node, &err) < 0)
                return cli_fail(err);
        json_t *line = json_object();
        json_object_set_new(line, "path", path_json(path));
        json_object_set_new(line, "node", kiln_node_to_json(&node));
        if (set) {
                uint64_t *idx;
                size_t n = kiln_refscan_result_list(found, &idx);
                json_t *a = json_array();
                for (size_t k = 0; k < n; k++)
                        json_array_append_new(a, json_integer((json_int_t)idx[k]));
                free(idx);
                json_object_set_new(line, "needles", a);
        }
        cli_print_json(line);
        fflush(stdout);
        json_decref(line);
        kiln_node_done(&node);
        return 0;
}

int cmd_import(int argc, char **argv)
{
        static const struct option opts[] = {
                {"needle", required_argument, NULL, 'n'},
                {"threads", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'},
                CLI_STORE_OPTIONS,
                {},
        };
        struct cli_stores stores = {0};
        _cleanup_free_ const uint8_t **needles = NULL;
        _cleanup_free_ size_t *lens = NULL;
        size_t n_needles = 0;
        unsigned threads = 0;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (cli_stores_option(&stores, c, optarg))
                        continue;
                switch (c) {
                case 'n':
                        if (!*optarg)
                                return cli_usage_error("import", "--needle cannot be empty");
                        needles = kiln_reallocarray(needles, n_needles + 1, sizeof(*needles));
                        lens = kiln_reallocarray(lens, n_needles + 1, sizeof(*lens));
                        needles[n_needles] = (const uint8_t *)optarg;
                        lens[n_needles++] = strlen(optarg);
                        break;
                case 't': {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*end || v < 1 || v > 256)
                                return cli_usage_error("import", "invalid --threads '%s'", optarg);
                        threads = (unsigned)v;
                        break;
                }
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("import", "invalid option");
                }
        }
        if (optind >= argc)
                return cli_usage_error("import", "no PATH given");

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        if (n_needles && kiln_refscan_set_new(needles, lens, n_needles, &set, &err) < 0)
                return cli_fail(err);
        if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS))
                return 1;

        int status = 0;
        for (int i = optind; i < argc; i++)
                if (import_one(&stores, argv[i], set, threads))
                        status = 1;
        cli_stores_close(&stores);
        return status;
}
