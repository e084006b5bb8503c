/* kiln mount [options] MOUNTPOINT NAME=NODE... */
#include <limits.h>
#include <pthread.h>
#include <signal.h>

#include <kiln/fuse/fuse.h>
#include <kiln/castore/json.h>

#include "cli.h"

static const char usage[] =
    "usage: kiln mount [options] MOUNTPOINT NAME=NODE...\n"
    "Serves stored trees read-only at MOUNTPOINT (an existing directory), each\n"
    "root node under its NAME. NODE is a proto3 JSON Node or b3:<digest> of a\n"
    "Directory. Runs in the foreground until SIGINT/SIGTERM or until unmounted\n"
    "from outside (fusermount3 -u MOUNTPOINT); exits 0 then.\n\n"
    "  --threads N                   worker threads (default: number of CPUs)\n"
    "  --allow-other                 let other users in (for containers)\n"
    "  -l, --list-root               allow listing MOUNTPOINT itself\n"
    "  --no-xattr                    no user.tvix.castore.* digest attributes\n"
    "  --readahead-kb N              kernel readahead (default 4096)\n" CLI_STORE_USAGE;

enum {
        OPT_THREADS = 0x100,
        OPT_ALLOW_OTHER,
        OPT_NO_XATTR,
        OPT_READAHEAD,
};

struct roots {
        struct kiln_node *v;
        size_t n;
};

static void roots_done(struct roots *r)
{
        for (size_t i = 0; i < r->n; i++)
                kiln_node_done(&r->v[i]);
        free(r->v);
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *ret)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
                return false;
        *ret = (unsigned)v;
        return true;
}

/* NAME=NODE: the name is everything before the first '='. */
static int parse_root(const char *arg, struct roots *roots)
{
        const char *eq = strchr(arg, '=');
        if (!eq)
                return cli_usage_error("mount", "expected NAME=NODE, got '%s'", arg);
        size_t len = (size_t)(eq - arg);
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        if (kiln_name_validate(arg, len, &err) < 0)
                return cli_usage_error("mount", "%s", kiln_error_msg(err));
        for (size_t i = 0; i < roots->n; i++)
                if (!kiln_bytes_cmp(roots->v[i].name.data, roots->v[i].name.len, arg, len))
                        return cli_usage_error("mount", "duplicate name '%.*s'", (int)len, arg);
        struct kiln_node node;
        if (kiln_node_parse_arg(eq + 1, &node, &err) < 0)
                return cli_usage_error("mount", "invalid node for '%.*s': %s", (int)len, arg,
                                       kiln_error_msg(err));
        kiln_node_set_name(&node, arg, len);
        roots->v = kiln_reallocarray(roots->v, roots->n + 1, sizeof(*roots->v));
        roots->v[roots->n++] = node;
        return 0;
}

/* Catches a mistyped digest before anything is mounted. */
static int check_root(struct cli_stores *s, const struct kiln_node *n)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        int r = 1;
        if (n->kind == KILN_NODE_DIRECTORY) {
                _cleanup_(kiln_directory_done) struct kiln_directory d = KILN_DIRECTORY_INIT;
                r = kiln_directory_get(s->dirs, &n->digest, &d, &err);
        } else if (n->kind == KILN_NODE_FILE) {
                r = kiln_blob_has(s->blobs, &n->digest, &err);
        }
        if (r < 0)
                return cli_failf("root '%.*s': %s", (int)n->name.len, (const char *)n->name.data,
                                 kiln_error_msg(err));
        if (r == 0)
                return cli_failf("root '%.*s': %s %s not found", (int)n->name.len,
                                 (const char *)n->name.data,
                                 n->kind == KILN_NODE_DIRECTORY ? "directory" : "blob",
                                 KILN_DIGEST_B64(&n->digest));
        return 0;
}

struct signal_thread {
        sigset_t set;
        struct kiln_fuse *f;
};

static void *signal_main(void *arg)
{
        struct signal_thread *st = arg;
        int sig;
        if (sigwait(&st->set, &sig) == 0)
                kiln_fuse_stop(st->f);
        return NULL;
}

/* Parses the options and roots: -1 to go on, else the exit status (0 after
 * --help, 2 for a usage error). */
static int parse_args(int argc, char **argv, struct cli_stores *stores,
                      struct kiln_fuse_options *fo, const char **mountpoint, struct roots *roots)
{
        static const struct option opts[] = {
            {"threads", required_argument, NULL, OPT_THREADS},
            {"allow-other", no_argument, NULL, OPT_ALLOW_OTHER},
            {"list-root", no_argument, NULL, 'l'},
            {"no-xattr", no_argument, NULL, OPT_NO_XATTR},
            {"readahead-kb", required_argument, NULL, OPT_READAHEAD},
            {"help", no_argument, NULL, 'h'},
            CLI_STORE_OPTIONS,
            {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "hl", opts, NULL)) != -1) {
                if (cli_stores_option(stores, c, optarg))
                        continue;
                switch (c) {
                case OPT_THREADS:
                        if (!parse_uint(optarg, 1, 256, &fo->threads))
                                return cli_usage_error("mount", "invalid --threads '%s' (1..256)",
                                                       optarg);
                        break;
                case OPT_ALLOW_OTHER:
                        fo->allow_other = true;
                        break;
                case 'l':
                        fo->list_root = true;
                        break;
                case OPT_NO_XATTR:
                        fo->show_xattr = false;
                        break;
                case OPT_READAHEAD:
                        if (!parse_uint(optarg, 4, 1024 * 1024, &fo->readahead_kb))
                                return cli_usage_error(
                                    "mount", "invalid --readahead-kb '%s' (4..1048576)", optarg);
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("mount", "invalid option");
                }
        }
        if (optind >= argc)
                return cli_usage_error("mount", "missing MOUNTPOINT");
        *mountpoint = argv[optind++];
        if (!**mountpoint)
                return cli_usage_error("mount", "empty MOUNTPOINT");
        if (optind >= argc)
                return cli_usage_error("mount", "expected at least one NAME=NODE");
        for (int i = optind; i < argc; i++) {
                int r = parse_root(argv[i], roots);
                if (r)
                        return r;
        }
        return -1;
}

/* Serves the mount until it is unmounted or a signal stops it, the signals
 * taken by a thread of their own. The exit status. */
static int serve(struct kiln_fuse *f, struct signal_thread *st, const char *mountpoint,
                 size_t n_roots)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        st->f = f;
        pthread_t sig_thread;
        int r = pthread_create(&sig_thread, NULL, signal_main, st);
        if (r != 0)
                return cli_failf("start signal thread: %s", strerror(r));
        printf("kiln: mounted at %s (%zu root%s)\n", mountpoint, n_roots, n_roots == 1 ? "" : "s");
        fflush(stdout);

        r = kiln_fuse_wait(f, &err);
        /* sigwait is a cancellation point: no stop can reach a freed mount. */
        pthread_cancel(sig_thread);
        pthread_join(sig_thread, NULL);
        return r < 0 ? cli_fail(err) : 0;
}

bool cli_fuse_read_stats(uint64_t *reads, uint64_t *bytes)
{
        kiln_fuse_read_stats(reads, bytes);
        return true;
}

int cmd_mount(int argc, char **argv)
{
        struct cli_stores stores = {0};
        struct kiln_fuse_options fo = {.show_xattr = true};
        const char *mountpoint = NULL;
        _cleanup_(roots_done) struct roots roots = {0};
        int status = parse_args(argc, argv, &stores, &fo, &mountpoint, &roots);
        if (status >= 0)
                return status;

        /* Signals are taken by one thread, which asks the mount to stop.
         * Block them before anything starts threads (gRPC clients do when
         * the stores open, the filesystem when it mounts): every thread
         * inherits the mask, so none dies of a signal meant for us. */
        struct signal_thread st;
        sigemptyset(&st.set);
        sigaddset(&st.set, SIGINT);
        sigaddset(&st.set, SIGTERM);
        sigaddset(&st.set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &st.set, NULL);

        if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS))
                return 1;
        status = 1;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_fuse *f = NULL;
        for (size_t i = 0; i < roots.n; i++)
                if (check_root(&stores, &roots.v[i]))
                        goto out;
        if (kiln_fuse_mount(stores.blobs, stores.dirs, roots.v, roots.n, mountpoint, &fo, &f,
                            &err) < 0) {
                cli_fail(err);
                goto out;
        }
        status = serve(f, &st, mountpoint, roots.n);
        kiln_fuse_free(f);
out:
        cli_stores_close(&stores);
        return status;
}
