/* kiln nix show-derivation [-r] DRV... */
#include <fcntl.h>

#include <kiln/nix/drv_json.h>

#include "cli_nix.h"

static const char usage[] =
    "usage: kiln nix show-derivation [options] DRV...\n"
    "Prints the derivations byte for byte as `nix show-derivation` (Nix 2.8) does: one\n"
    "JSON object whose keys are the .drv store paths, sorted. A DRV is a .drv file\n"
    "named by its store path's base name, in any directory (e.g. a chroot store's).\n\n"
    "  -r, --recursive     also every derivation they depend on\n"
    "  --store-dir DIR     the directory holding the input derivations (default: the\n"
    "                      directory of each DRV)\n"
    "  -h, --help          show this help\n";

struct entry {
        struct kiln_nix_store_path path;
        struct kiln_nix_derivation *drv;
        const char *dir; /* where its inputs are read */
};

struct entries {
        struct entry *v;
        size_t n, cap;
};

static bool have(const struct entries *e, const struct kiln_nix_store_path *p)
{
        for (size_t i = 0; i < e->n; i++)
                if (kiln_nix_store_path_cmp(&e->v[i].path, p) == 0)
                        return true;
        return false;
}

static void add(struct entries *e, const struct kiln_nix_store_path *p,
                struct kiln_nix_derivation *d, const char *dir)
{
        if (e->n == e->cap) {
                e->cap = e->cap ? 2 * e->cap : 8;
                e->v = kiln_reallocarray(e->v, e->cap, sizeof(*e->v));
        }
        e->v[e->n++] = (struct entry){*p, d, dir};
}

static int entry_cmp(const void *a, const void *b)
{
        return kiln_nix_store_path_cmp(&((const struct entry *)a)->path,
                                       &((const struct entry *)b)->path);
}

/* Adds the input derivations of entry i (and, through the loop in the
 * caller, theirs). */
static int add_inputs(struct entries *e, size_t i, struct kiln_error **err)
{
        for (size_t k = 0; k < e->v[i].drv->n_input_drvs; k++) {
                const struct kiln_nix_store_path *p = &e->v[i].drv->input_drvs[k].drv;
                if (have(e, p))
                        continue;
                const char *dir = e->v[i].dir;
                _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0)
                        return kiln_error_errno(err, errno, "unable to open %s", dir);
                char buf[KILN_NIX_PATH_MAX];
                const char *full = kiln_nix_store_path_format(p, buf);
                struct kiln_nix_derivation *d;
                int r =
                    kiln_nix_derivation_read_file(dfd, full + KILN_NIX_STORE_DIR_LEN + 1, &d, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "in %s", dir);
                add(e, p, d, dir);
        }
        return 0;
}

int cmd_nix_show_derivation(int argc, char **argv)
{
        static const struct option opts[] = {
            {"recursive", no_argument, NULL, 'r'},
            {"store-dir", required_argument, NULL, 's'},
            {"help", no_argument, NULL, 'h'},
            {},
        };
        bool recursive = false;
        const char *store_dir = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "rh", opts, NULL)) != -1) {
                switch (c) {
                case 'r':
                        recursive = true;
                        break;
                case 's':
                        store_dir = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("nix show-derivation", "invalid option");
                }
        }
        if (optind >= argc)
                return cli_usage_error("nix show-derivation", "no DRV given");

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct entries e = {0};
        char **dirs = kiln_calloc((size_t)(argc - optind), sizeof(*dirs));
        int status = 0;
        for (int i = optind; i < argc && status == 0; i++) {
                struct kiln_nix_store_path p;
                struct kiln_nix_derivation *d;
                if (cli_nix_read_drv(argv[i], &p, &d, &err) < 0) {
                        status = cli_fail(err);
                        break;
                }
                dirs[i - optind] = store_dir ? kiln_strdup(store_dir) : cli_nix_dir_of(argv[i]);
                if (have(&e, &p))
                        kiln_nix_derivation_free(d);
                else
                        add(&e, &p, d, dirs[i - optind]);
        }
        for (size_t i = 0; recursive && status == 0 && i < e.n; i++)
                if (add_inputs(&e, i, &err) < 0)
                        status = cli_fail(err);

        if (status == 0) {
                /* Nix prints a StorePathSet: sorted by path. */
                qsort(e.v, e.n, sizeof(*e.v), entry_cmp);
                json_t *root = json_object();
                for (size_t i = 0; i < e.n; i++) {
                        char buf[KILN_NIX_PATH_MAX];
                        const char *key = kiln_nix_store_path_format(&e.v[i].path, buf);
                        json_object_setn_new_nocheck(root, key, strlen(key),
                                                     kiln_nix_derivation_to_json(e.v[i].drv));
                }
                struct kiln_buf out = KILN_BUF_INIT;
                kiln_nix_json_print(root, &out);
                kiln_buf_append_byte(&out, '\n');
                json_decref(root);
                int r = kiln_write_all(STDOUT_FILENO, out.data, out.len);
                kiln_buf_done(&out);
                if (r < 0)
                        status = cli_failf("nix show-derivation: write to standard output: %s",
                                           strerror(-r));
        }
        for (size_t i = 0; i < e.n; i++)
                kiln_nix_derivation_free(e.v[i].drv);
        free(e.v);
        for (int i = 0; i < argc - optind; i++)
                free(dirs[i]);
        free(dirs);
        return status;
}
