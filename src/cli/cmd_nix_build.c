/* kiln nix build: builds .drv files of the local Nix store through kiln's
 * build service and registers the outputs in the Nix store, as nix-build
 * would; prints the output paths. */
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <kiln/nixbuild/nixbuild.h>

#include "cli_nix.h"

static const char usage[] =
        "usage: kiln nix build [options] DRV...\n"
        "Builds each DRV (a /nix/store/...drv path) and every input derivation whose outputs\n"
        "Nix does not have yet, in dependency order, in kiln's sandbox; registers the outputs\n"
        "in the local Nix store (through nix-daemon --stdio, with their NAR hash, references,\n"
        "deriver and content address) and prints every output path, one per line, as\n"
        "nix-build --no-out-link does. Inputs are imported into kiln's store once and\n"
        "remembered by store path ($KILN_HOME/pathinfo). Build logs are shown as they\n"
        "come, each line prefixed with the derivation's name.\n\n"
        "  -j, --jobs N                  derivations built at once (default: number of CPUs)\n"
        "  -Q, --no-build-output         do not show build logs (a failure still shows\n"
        "                                its log's tail)\n"
        "  --no-cache                    build even what the action cache remembers\n"
        "  -K, --keep-failed             keep the directory of a failed build (its sandbox\n"
        "                                bundle, named in the failure) for inspection\n"
        "  --repeat N                    build each derivation N more times (at most 64)\n"
        "                                and fail it, recording nothing, if any output\n"
        "                                differs from the first build's (nix-build --repeat\n"
        "                                with enforce-determinism)\n"
        "  --json                        print each build's events as they happen, one proto3\n"
        "                                JSON line each with its \"drv\", then\n"
        "                                {\"outputs\": [...]} instead of the paths\n"
        "  --cores N                     NIX_BUILD_CORES of builds (default: number of CPUs,\n"
        "                                as Nix's cores setting)\n"
        "  --bin-sh                      give builds a /bin/sh (Nix's sandbox-paths default\n"
        "                                is none)\n"
        "  --nix-daemon PROGRAM          Nix's daemon (default: nix-daemon from PATH)\n"
        "  --build-service-addr URL      build service (default: kiln's sandbox, see kiln build)\n"
        CLI_STORE_USAGE;

struct cancel_waiter {
        sigset_t set;
        struct kiln_cancel *cancel;
};

/* SIGINT/SIGTERM cancel the builds; SIGUSR2 ends the waiter. */
static void *wait_signals(void *arg)
{
        struct cancel_waiter *w = arg;
        int sig;
        while (sigwait(&w->set, &sig) == 0 && sig != SIGUSR2)
                kiln_cancel_trigger(w->cancel);
        return NULL;
}

static bool parse_count(const char *s, unsigned max, unsigned *ret)
{
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (!*s || *end || v == 0 || v > max)
                return false;
        *ret = (unsigned)v;
        return true;
}

static int run(struct cli_stores *stores, struct kiln_nixbuild_options *o, const char *build_url,
               bool no_cache, char **drvs, size_t n)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_cancel_freep) struct kiln_cancel *cancel = kiln_cancel_new();
        if (cli_stores_open(stores, CLI_BLOBS | CLI_DIRS))
                return 1;
        if (cli_build_service_open(stores, build_url, &o->builds))
                return 1;
        if (!no_cache && cli_build_service_cache(stores, NULL, &o->builds)) {
                kiln_build_service_free(o->builds);
                return 1;
        }
        int status = 1;
        if (kiln_nix_pathinfo_store_open(NULL, &o->pathinfo, &err) < 0) {
                cli_fail(err);
                goto out;
        }
        o->blobs = stores->blobs;
        o->dirs = stores->dirs;
        o->cancel = cancel;
        struct cancel_waiter w = {.cancel = cancel};
        sigemptyset(&w.set);
        sigaddset(&w.set, SIGINT);
        sigaddset(&w.set, SIGTERM);
        sigaddset(&w.set, SIGUSR2);
        pthread_sigmask(SIG_BLOCK, &w.set, NULL);
        pthread_t t;
        pthread_create(&t, NULL, wait_signals, &w);
        struct kiln_strv outs = {0};
        int r = kiln_nixbuild_build(o, (const char *const *)drvs, n, &outs, &err);
        pthread_kill(t, SIGUSR2);
        pthread_join(t, NULL);
        if (r < 0) {
                cli_fail(err);
        } else {
                if (o->event) {
                        json_t *j = json_array();
                        for (size_t i = 0; i < outs.n; i++)
                                json_array_append_new(j, json_string(outs.v[i]));
                        json_t *line = json_pack("{s:o}", "outputs", j);
                        cli_print_json(line);
                        json_decref(line);
                } else {
                        for (size_t i = 0; i < outs.n; i++)
                                printf("%s\n", outs.v[i]);
                }
                status = 0;
        }
        kiln_strv_done(&outs);
out:
        kiln_nix_pathinfo_store_close(o->pathinfo);
        kiln_build_service_free(o->builds);
        return status;
}

/* --json: each event a line {"drv": "/nix/store/….drv", <the BuildEvent>} */
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_event(void *userdata, const char *drv_path, const struct kiln_build_event *ev)
{
        (void)userdata;
        json_t *j = kiln_build_event_to_json(ev);
        json_object_set_new(j, "drv", json_string(drv_path));
        pthread_mutex_lock(&print_lock);
        cli_print_json(j);
        fflush(stdout);
        pthread_mutex_unlock(&print_lock);
        json_decref(j);
}

int cmd_nix_build(int argc, char **argv)
{
        enum { OPT_CORES = 0x200, OPT_BIN_SH, OPT_NIX_DAEMON, OPT_NO_CACHE, OPT_REPEAT };
        static const struct option opts[] = {
                {"jobs", required_argument, NULL, 'j'},
                {"no-build-output", no_argument, NULL, 'Q'},
                {"keep-failed", no_argument, NULL, 'K'},
                {"cores", required_argument, NULL, OPT_CORES},
                {"bin-sh", no_argument, NULL, OPT_BIN_SH},
                {"nix-daemon", required_argument, NULL, OPT_NIX_DAEMON},
                {"no-cache", no_argument, NULL, OPT_NO_CACHE},
                {"repeat", required_argument, NULL, OPT_REPEAT},
                {"json", no_argument, NULL, CLI_OPT_JSON},
                {"build-service-addr", required_argument, NULL, CLI_OPT_BUILD_ADDR},
                {"help", no_argument, NULL, 'h'},
                CLI_STORE_OPTIONS,
                {},
        };
        struct cli_stores stores = {0};
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        struct kiln_nixbuild_options o = {
                .jobs = cpus > 0 ? (unsigned)cpus : 1,
                .request = {.cores = cpus > 0 ? (unsigned)cpus : 1},
                .log = cli_nix_log_line,
        };
        const char *build_url = NULL;
        bool no_cache = false;
        int c;
        while ((c = getopt_long(argc, argv, "hj:QK", opts, NULL)) != -1) {
                if (cli_stores_option(&stores, c, optarg))
                        continue;
                switch (c) {
                case 'j':
                        if (!parse_count(optarg, 1024, &o.jobs))
                                return cli_usage_error("nix build", "invalid --jobs '%s'", optarg);
                        break;
                case OPT_CORES:
                        if (!parse_count(optarg, 65536, &o.request.cores))
                                return cli_usage_error("nix build", "invalid --cores '%s'", optarg);
                        break;
                case 'Q':
                        o.quiet = true;
                        break;
                case 'K':
                        o.keep_failed = true;
                        break;
                case OPT_BIN_SH:
                        o.request.provide_bin_sh = true;
                        break;
                case OPT_NIX_DAEMON:
                        o.nix_daemon = optarg;
                        break;
                case OPT_NO_CACHE:
                        no_cache = true;
                        break;
                case OPT_REPEAT:
                        if (!parse_count(optarg, 64, &o.repeat))
                                return cli_usage_error("nix build", "invalid --repeat '%s'",
                                                       optarg);
                        o.enforce_determinism = true;
                        break;
                case CLI_OPT_JSON:
                        o.event = print_event;
                        o.log = NULL;
                        break;
                case CLI_OPT_BUILD_ADDR:
                        build_url = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("nix build", "invalid option");
                }
        }
        if (optind >= argc)
                return cli_usage_error("nix build", "no DRV given");
        for (int i = optind; i < argc; i++) {
                struct kiln_nix_store_path p;
                _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
                if (kiln_nix_store_path_parse(argv[i], strlen(argv[i]), &p, &err) < 0 ||
                    strlen(p.name) < 4 || strcmp(p.name + strlen(p.name) - 4, ".drv"))
                        return cli_usage_error("nix build", "'%s' is not a /nix/store/...drv path",
                                               argv[i]);
        }
        int status = run(&stores, &o, build_url, no_cache, argv + optind, (size_t)(argc - optind));
        cli_stores_close(&stores);
        return status;
}
