/* kiln nix hash-derivation [--no-check] DRV... */
#include <fcntl.h>

#include <kiln/castore/json.h>
#include <kiln/nix/drv_hash.h>

#include "cli_nix.h"

static const char usage[] =
    "usage: kiln nix hash-derivation [options] DRV...\n"
    "Computes what Nix 2.8 computes for each derivation: the path of each output\n"
    "(from hashDerivationModulo, reading input derivations recursively) and the\n"
    "store path of the .drv itself, and prints one JSON line per DRV:\n"
    "  {\"drvPath\": P, \"outputs\": {NAME: PATH}, \"hashModulo\": {NAME: HEX}}\n"
    "(outputs whose paths are not known before building are null). Fails when\n"
    "the paths differ from the derivation's own or from its file name.\n\n"
    "  --no-check          only print, do not compare\n"
    "  --store-dir DIR     the directory holding the input derivations (default: the\n"
    "                      directory of each DRV)\n"
    "  -h, --help          show this help\n";

static int hash_one(const char *arg, const char *store_dir, bool check, struct kiln_error **err)
{
        struct kiln_nix_store_path self;
        _cleanup_(kiln_nix_derivation_freep) struct kiln_nix_derivation *d = NULL;
        int r = cli_nix_read_drv(arg, &self, &d, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *name = NULL;
        r = kiln_nix_drv_name_from_path(&self, &name, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = store_dir ? kiln_strdup(store_dir) : cli_nix_dir_of(arg);
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return kiln_error_errno(err, errno, "unable to open %s", dir);

        struct kiln_nix_drv_source src;
        kiln_nix_drv_source_dir(dfd, &src);
        _cleanup_(kiln_nix_drv_hasher_freep) struct kiln_nix_drv_hasher *h =
            kiln_nix_drv_hasher_new(&src);
        _cleanup_free_ struct kiln_nix_output_path *paths =
            kiln_calloc(d->n_outputs, sizeof(*paths));
        r = kiln_nix_drv_output_paths(h, d, name, paths, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "%s", arg);
        _cleanup_(kiln_nix_drv_hash_freep) struct kiln_nix_drv_hash *hm = NULL;
        r = kiln_nix_drv_hash_modulo(h, d, name, false, &hm, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "%s", arg);
        struct kiln_nix_store_path drv_path;
        r = kiln_nix_derivation_path(d, name, &drv_path, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "%s", arg);

        json_t *line = json_object();
        json_object_set_new(line, "drvPath", json_string(KILN_NIX_STORE_PATH_STR(&drv_path)));
        json_t *outs = json_object(), *hashes = json_object();
        for (size_t i = 0; i < d->n_outputs; i++) {
                json_object_set_new(outs, d->outputs[i].name,
                                    paths[i].known
                                        ? json_string(KILN_NIX_STORE_PATH_STR(&paths[i].path))
                                        : json_null());
                struct kiln_nix_hash hx = {.algo = KILN_NIX_HASH_SHA256};
                memcpy(hx.b, hm->outputs[i].sha256, 32);
                json_object_set_new(hashes, d->outputs[i].name,
                                    json_string(KILN_NIX_HASH_STR(&hx, KILN_NIX_BASE16, false)));
        }
        json_object_set_new(line, "outputs", outs);
        json_object_set_new(line, "hashModulo", hashes);
        cli_print_json(line);
        json_decref(line);

        if (!check)
                return 0;
        if (kiln_nix_store_path_cmp(&drv_path, &self) != 0)
                return kiln_error_set(err, EINVAL, "%s: the derivation's store path is %s", arg,
                                      KILN_NIX_STORE_PATH_STR(&drv_path));
        r = kiln_nix_drv_check_outputs(h, d, name, err);
        return r < 0 ? kiln_error_prefix(err, r, "%s", arg) : 0;
}

int cmd_nix_hash_derivation(int argc, char **argv)
{
        static const struct option opts[] = {
            {"no-check", no_argument, NULL, 'n'},
            {"store-dir", required_argument, NULL, 's'},
            {"help", no_argument, NULL, 'h'},
            {},
        };
        bool check = true;
        const char *store_dir = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'n':
                        check = false;
                        break;
                case 's':
                        store_dir = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("nix hash-derivation", "invalid option");
                }
        }
        if (optind >= argc)
                return cli_usage_error("nix hash-derivation", "no DRV given");
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        int status = 0;
        for (int i = optind; i < argc; i++) {
                if (hash_one(argv[i], store_dir, check, &err) < 0) {
                        fflush(stdout);
                        status = cli_fail(err);
                        kiln_error_clear(&err);
                }
        }
        return status;
}
