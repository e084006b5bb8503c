/* kiln nix path-info: what kiln's PathInfo store holds of store paths. */
#include <kiln/castore/json.h>
#include <kiln/nix/pathinfo.h>

#include "cli_nix.h"

static const char usage[] =
        "usage: kiln nix path-info [--json] [PATH...]\n"
        "Prints the store paths kiln's PathInfo store ($KILN_HOME/pathinfo) holds: each PATH\n"
        "given, or all of them. With --json, one JSON object per path: path, narHash,\n"
        "narSize, references, deriver and ca as nix path-info --json names them, and node,\n"
        "the castore root node of its contents. A PATH kiln does not hold is an error.\n\n"
        "  --json                        print JSON lines\n"
        "  -h, --help                    show this help\n";

static int print_one(void *ctx, const struct kiln_nix_pathinfo *p, struct kiln_error **err)
{
        (void)err;
        bool json = *(bool *)ctx;
        if (!json) {
                printf("%s\n", p->path);
                return 0;
        }
        json_t *o = json_object();
        json_object_set_new(o, "path", json_string(p->path));
        json_object_set_new(o, "narHash",
                            json_string(KILN_NIX_HASH_STR(&p->nar_hash, KILN_NIX_NIXBASE32, true)));
        json_object_set_new(o, "narSize", json_integer((json_int_t)p->nar_size));
        json_t *refs = json_array();
        for (size_t i = 0; i < p->references.n; i++)
                json_array_append_new(refs, json_string(p->references.v[i]));
        json_object_set_new(o, "references", refs);
        if (p->deriver)
                json_object_set_new(o, "deriver", json_string(p->deriver));
        if (p->ca)
                json_object_set_new(o, "ca", json_string(p->ca));
        json_object_set_new(o, "node", kiln_node_to_json(&p->node));
        cli_print_json(o);
        json_decref(o);
        return 0;
}

int cmd_nix_path_info(int argc, char **argv)
{
        static const struct option opts[] = {
                {"json", no_argument, NULL, 'J'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        bool json = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'J':
                        json = true;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("nix path-info", "invalid option");
                }
        }
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_nix_pathinfo_store_closep) struct kiln_nix_pathinfo_store *s = NULL;
        if (kiln_nix_pathinfo_store_open(NULL, &s, &err) < 0)
                return cli_fail(err);
        if (optind == argc) {
                if (kiln_nix_pathinfo_list(s, print_one, &json, &err) < 0)
                        return cli_fail(err);
                return 0;
        }
        int status = 0;
        for (int i = optind; i < argc; i++) {
                struct kiln_nix_pathinfo p;
                int r = kiln_nix_pathinfo_get(s, argv[i], &p, &err);
                if (r < 0) {
                        status = cli_fail(err);
                        kiln_error_clear(&err);
                        continue;
                }
                if (r == 0) {
                        status = cli_failf("%s: not in kiln's PathInfo store", argv[i]);
                        continue;
                }
                print_one(&json, &p, NULL);
                kiln_nix_pathinfo_done(&p);
        }
        return status;
}
