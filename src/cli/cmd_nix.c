/* kiln nix <verb>: dispatch, and what the verbs share. */
#include <fcntl.h>
#include <libgen.h>

#include "cli_nix.h"

static const struct cli_verb verbs[] = {
    {"show-derivation", cmd_nix_show_derivation, "print derivations as nix show-derivation does"},
    {"hash-derivation", cmd_nix_hash_derivation,
     "compute the output and .drv paths of derivations"},
    {"print-derivation", cmd_nix_print_derivation,
     "parse derivations strictly and print them back as ATerm"},
    {"nar-hash", cmd_nix_nar_hash, "hash a tree's NAR serialisation (nix-store -q --hash)"},
    {"dump-path", cmd_nix_dump_path, "write a tree as a NAR to stdout (nix-store --dump)"},
    {"import-nar", cmd_nix_import_nar, "read a NAR into the store, print its root node"},
    {"build", cmd_nix_build, "build derivations and register their outputs, as nix-build"},
    {"path-info", cmd_nix_path_info, "show what kiln's PathInfo store holds of store paths"},
    {"serve", cmd_nix_serve,
     "speak nix-store --serve on stdin/stdout: kiln as a Nix remote builder"},
    {NULL, NULL, NULL},
};

int cmd_nix(int argc, char **argv)
{
        return cli_dispatch("kiln nix", verbs, 16, argc, argv);
}

void cli_nix_log_line(void *userdata, const char *line)
{
        (void)userdata;
        fprintf(stderr, "%s\n", line);
}

char *cli_nix_dir_of(const char *arg)
{
        _cleanup_free_ char *copy = kiln_strdup(arg);
        return kiln_strdup(dirname(copy));
}

int cli_nix_read_drv(const char *arg, struct kiln_nix_store_path *ret_path,
                     struct kiln_nix_derivation **ret, struct kiln_error **err)
{
        const char *slash = strrchr(arg, '/');
        const char *base = slash ? slash + 1 : arg;
        struct kiln_nix_store_path p;
        int r = kiln_nix_store_path_parse_base(base, strlen(base), &p, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "derivation %s", arg);
        _cleanup_free_ char *name = NULL;
        r = kiln_nix_drv_name_from_path(&p, &name, err);
        if (r < 0)
                return r;
        r = kiln_nix_derivation_read_file(AT_FDCWD, arg, ret, err);
        if (r < 0)
                return r;
        *ret_path = p;
        return 0;
}
