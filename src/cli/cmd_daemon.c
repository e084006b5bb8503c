/* kiln daemon: serves the blob, directory and build services over gRPC
 * (see src/daemon/server.h for the design). */
#include <signal.h>
#include <sys/stat.h>

#include <kiln/build/action_cache.h>
#include <kiln/build/service.h>
#include <kiln/util/fsutil.h>

#include "cli.h"
#include "metrics.h"
#include "server.h"

/* A unix socket only the daemon's user may use by default: the services have
 * no authentication, and a TCP port on loopback is reachable from every
 * local process, builds with network access included. Upstream's tvix-build
 * listens on [::]:8000; TCP is an explicit -l (e.g. localhost:8000, which
 * binds both 127.0.0.1 and ::1, where upstream clients look). */
#define DEFAULT_SOCKET "kiln.sock"

static const char usage[] =
        "usage: kiln daemon [options]\n"
        "Serves tvix.castore.v1.BlobService, DirectoryService, tvix.build.v1.BuildService\n"
        "and grpc.health.v1.Health over gRPC until SIGTERM or SIGINT.\n\n"
        "  -l, --listen-address ADDR     host:port, [v6]:port, a unix socket path starting\n"
        "                                with '/' or '.', @abstract-name, or sd-listen for\n"
        "                                sockets passed by systemd; may be repeated\n"
        "                                (default: $KILN_HOME/" DEFAULT_SOCKET ", mode 0600;\n"
        "                                TCP only when asked for)\n" CLI_STORE_USAGE
        "  --build-service-addr URL      build service (env BUILD_SERVICE_ADDR; default:\n"
        "                                sandbox://$KILN_HOME/bundles, or oci:// where\n"
        "                                user namespaces are off)\n"
        "  --max-calls N                 calls served at once (default 256)\n"
        "  --action-cache URL|none       where finished builds are remembered, so that an\n"
        "                                identical request is answered without building\n"
        "                                (default: lmdb://$KILN_HOME/action-cache; also\n"
        "                                memory://; ?max-entries=N bounds it, default\n"
        "                                100000, least recently used evicted first; or\n"
        "                                grpc+…:// of a daemon that serves its own)\n"
        "  --serve-action-cache          serve the action cache to other daemons\n"
        "                                (kiln.build.v1.ActionCache): for builders that\n"
        "                                share it, who must be trusted, since what they put\n"
        "                                there answers later builds\n"
        "  --tls-cert FILE, --tls-key FILE\n"
        "                                serve TLS (PEM certificate chain and key) on\n"
        "                                host:port and @name addresses; socket paths stay\n"
        "                                plaintext, sd-listen is refused\n"
        "  --tls-client-ca FILE          with TLS, accept only clients whose certificate\n"
        "                                this CA signed (mTLS)\n"
        "  --metrics-listen HOST:PORT    serve Prometheus metrics over HTTP at /metrics\n"
        "                                (prints \"metrics on HOST:PORT\")\n\n"
        "Prints \"listening on ADDR\" once ready. Set KILN_LOG=debug to log every call.\n";

static struct kiln_server *running;

static int default_listen(char **ret, struct kiln_error **err)
{
        _cleanup_free_ char *home = kiln_home();
        int r = kiln_mkdir_p(home, 0711);
        if (r < 0)
                return kiln_error_errno(err, -r, "create %s", home);
        *ret = kiln_asprintf("%s/" DEFAULT_SOCKET, home);
        return 0;
}

static void on_signal(int sig)
{
        (void)sig;
        if (running)
                kiln_server_stop(running);
}

struct daemon_args {
        const char *build_url;
        const char *action_cache;
        const char **listen;
        size_t n_listen;
        unsigned max_calls;
        const char *tls_cert, *tls_key, *tls_client_ca;
        const char *metrics_listen;
        bool serve_action_cache;
};

/* -1 to go on, else the exit status (0 after --help, 2 for a usage error). */
static int parse_args(int argc, char **argv, struct cli_stores *stores, struct daemon_args *a)
{
        static const struct option opts[] = {
                {"help", no_argument, NULL, 'h'},
                {"listen-address", required_argument, NULL, 'l'},
                {"build-service-addr", required_argument, NULL, CLI_OPT_BUILD_ADDR},
                {"max-calls", required_argument, NULL, 'm'},
                {"tls-cert", required_argument, NULL, 'C'},
                {"tls-key", required_argument, NULL, 'K'},
                {"tls-client-ca", required_argument, NULL, 'R'},
                {"metrics-listen", required_argument, NULL, 'M'},
                {"action-cache", required_argument, NULL, 'A'},
                {"serve-action-cache", no_argument, NULL, 'S'},
                CLI_STORE_OPTIONS,
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "hl:", opts, NULL)) != -1) {
                if (cli_stores_option(stores, c, optarg))
                        continue;
                switch (c) {
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                case 'l':
                        a->listen = kiln_reallocarray(a->listen, a->n_listen + 1,
                                                      sizeof(*a->listen));
                        a->listen[a->n_listen++] = optarg;
                        break;
                case CLI_OPT_BUILD_ADDR:
                        a->build_url = optarg;
                        break;
                case 'A':
                        a->action_cache = optarg;
                        break;
                case 'S':
                        a->serve_action_cache = true;
                        break;
                case 'C':
                        a->tls_cert = optarg;
                        break;
                case 'K':
                        a->tls_key = optarg;
                        break;
                case 'R':
                        a->tls_client_ca = optarg;
                        break;
                case 'M':
                        a->metrics_listen = optarg;
                        break;
                case 'm': {
                        char *end;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*end || v == 0 || v > 100000)
                                return cli_usage_error("daemon", "invalid --max-calls '%s'",
                                                       optarg);
                        a->max_calls = (unsigned)v;
                        break;
                }
                default:
                        return cli_usage_error("daemon", "invalid option");
                }
        }
        if (optind < argc)
                return cli_usage_error("daemon", "unexpected argument '%s'", argv[optind]);
        if (!a->tls_cert != !a->tls_key)
                return cli_usage_error("daemon", "--tls-cert and --tls-key go together");
        if (a->tls_client_ca && !a->tls_cert)
                return cli_usage_error("daemon", "--tls-client-ca needs --tls-cert and --tls-key");
        return -1;
}

/* Reads the TLS files and hands them to the server: 0, or 1 after printing
 * the failure. */
static int set_tls(struct kiln_server *srv, const struct daemon_args *a)
{
        if (!a->tls_cert)
                return 0;
        const char *paths[3] = {a->tls_cert, a->tls_key, a->tls_client_ca};
        static const char *const what[3] = {"--tls-cert", "--tls-key", "--tls-client-ca"};
        char *pem[3] = {NULL, NULL, NULL};
        int status = 0;
        for (int i = 0; i < 3 && !status; i++) {
                int r = paths[i] ? kiln_read_text_file(paths[i], 1 << 20, &pem[i]) : 0;
                if (r < 0)
                        status = cli_failf("%s %s: %s", what[i], paths[i], strerror(-r));
        }
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        if (!status && kiln_server_set_tls(srv, pem[0], pem[1], pem[2], &err) < 0)
                status = cli_fail(err);
        for (int i = 0; i < 3; i++)
                free(pem[i]);
        return status;
}

/* Binds every listen address (or the default socket) and returns in *ret
 * the "listening on" line. 0, or 1 after printing the failure. */
static int listen_all(struct kiln_server *srv, const struct daemon_args *a, char **ret)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_free_ char *default_socket = NULL;
        if (!a->n_listen && default_listen(&default_socket, &err) < 0)
                return cli_fail(err);
        struct kiln_buf line = KILN_BUF_INIT;
        for (size_t i = 0; i < (a->n_listen ? a->n_listen : 1); i++) {
                _cleanup_free_ char *desc = NULL;
                if (kiln_server_listen(srv, a->n_listen ? a->listen[i] : default_socket, &desc,
                                       &err) < 0) {
                        kiln_buf_done(&line);
                        return cli_fail(err);
                }
                if (i)
                        kiln_buf_append(&line, ", ", 2);
                kiln_buf_append(&line, desc, strlen(desc));
        }
        /* Created with the umask's mode, which gives no other user write
         * access, so nobody connected before this narrows it further. */
        if (default_socket && chmod(default_socket, 0600) < 0) {
                kiln_buf_done(&line);
                return cli_failf("chmod %s: %s", default_socket, strerror(errno));
        }
        kiln_buf_append_byte(&line, 0);
        *ret = (char *)kiln_buf_steal(&line, NULL);
        return 0;
}

static void render_metrics(void *ud, struct kiln_buf *out)
{
        kiln_server_metrics(ud, out);
        uint64_t reads, bytes;
        if (cli_fuse_read_stats(&reads, &bytes)) {
                kiln_metrics_put(out, "kiln_fuse_reads_total", "counter",
                                 "FUSE reads answered (build inputs, kiln mount).", reads);
                kiln_metrics_put(out, "kiln_fuse_read_bytes_total", "counter",
                                 "Bytes of FUSE reads answered.", bytes);
        }
}

/* Starts the /metrics endpoint if asked for: 0, or 1 after printing the
 * failure. */
static int start_metrics(struct kiln_server *srv, const struct daemon_args *a,
                         struct kiln_metrics_http **ret)
{
        *ret = NULL;
        if (!a->metrics_listen)
                return 0;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_free_ char *desc = NULL;
        if (kiln_metrics_http_start(a->metrics_listen, render_metrics, srv, ret, &desc, &err) < 0)
                return cli_fail(err);
        printf("metrics on %s\n", desc);
        return 0;
}

/* Serves until SIGTERM or SIGINT; the exit status. */
static int serve(struct kiln_server *srv, const char *listening)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        running = srv;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (kiln_server_start(srv, &err) < 0) {
                running = NULL;
                return cli_fail(err);
        }
        printf("listening on %s\n", listening);
        fflush(stdout);
        kiln_server_run(srv);
        running = NULL;
        return 0;
}

int cmd_daemon(int argc, char **argv)
{
        struct cli_stores stores = {0};
        struct daemon_args a = {0};
        int status = parse_args(argc, argv, &stores, &a);
        if (status >= 0) {
                free(a.listen);
                return status;
        }
        status = 1;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_build_service *builds = NULL;
        struct kiln_server *srv = NULL;
        _cleanup_free_ char *listening = NULL;
        if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS) ||
            cli_build_service_open(&stores, a.build_url, &builds))
                goto out;
        if (cli_build_service_cache(&stores, a.action_cache, &builds))
                goto out;
        const char *notice = kiln_build_service_notice(builds);
        if (notice)
                fprintf(stderr, "kiln: note: %s\n", notice);
        struct kiln_server_config cfg = {
                .blobs = stores.blobs,
                .dirs = stores.dirs,
                .builds = builds,
                .max_calls = a.max_calls,
        };
        if (a.serve_action_cache) {
                cfg.action_cache = kiln_build_service_action_cache(builds);
                if (!cfg.action_cache) {
                        fprintf(stderr, "kiln: --serve-action-cache: this daemon has no action "
                                        "cache to serve (--action-cache none, or a grpc+… build "
                                        "service)\n");
                        goto out;
                }
        }
        if (kiln_server_new(&cfg, &srv, &err) < 0) {
                cli_fail(err);
                goto out;
        }
        struct kiln_metrics_http *metrics = NULL;
        if (set_tls(srv, &a) == 0 && listen_all(srv, &a, &listening) == 0 &&
            start_metrics(srv, &a, &metrics) == 0)
                status = serve(srv, listening);
        kiln_metrics_http_stop(metrics);
out:
        kiln_server_free(srv);
        kiln_build_service_free(builds);
        cli_stores_close(&stores);
        free(a.listen);
        return status;
}
