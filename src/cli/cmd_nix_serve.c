/* kiln nix serve: Nix's serve protocol (nix-store --serve --write) on stdin
 * and stdout over kiln's stores (kiln_nixbuild_serve), so that Nix's ssh://
 * store and build hook use kiln as a remote builder. On any error kiln prints
 * "error: …" on stderr and exits 1, as nix-store --serve does. */
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <kiln/nixbuild/serve.h>

#include "cli_nix.h"

static const char usage[] =
    "usage: kiln nix serve [--write] [options]\n"
    "Speaks Nix's serve protocol (nix-store --serve) on stdin and stdout over kiln's\n"
    "stores, so that Nix's ssh:// store and build hook can use kiln as a remote\n"
    "builder: ssh://host?remote-program=kiln-serve, where kiln-serve runs\n"
    "'kiln nix serve \"$@\"' (Nix appends --serve --write). Store paths are those of\n"
    "kiln's PathInfo store ($KILN_HOME/pathinfo); logs go to stderr.\n\n"
    "  --write                       allow adding paths and building (else read-only)\n"
    "  --serve                       accepted and ignored (Nix passes it)\n"
    "  --home DIR                    use DIR as $KILN_HOME\n"
    "  --cores N                     NIX_BUILD_CORES of builds (default: number of CPUs)\n"
    "  --listen                      stay up and serve the sessions of `kiln nix serve`\n"
    "                                processes for this $KILN_HOME (on its socket\n"
    "                                nix-serve.sock, mode 0600, same user only) with\n"
    "                                these stores and build service kept open; each\n"
    "                                session is checked and built exactly as in-process\n"
    "  --build-service-addr URL      build service (default: kiln's sandbox, see kiln "
    "build)\n" CLI_STORE_USAGE;

/* --listen: one thread per session relayed by serve_relay.c. */
struct relayed {
        const struct kiln_nixbuild_serve_options *base;
        int sock, err_fd, status_fd;
        bool write;
};

static void relayed_log(void *userdata, const char *line)
{
        const struct relayed *a = userdata;
        dprintf(a->err_fd, "%s\n", line);
}

static void *relayed_session(void *arg)
{
        struct relayed *a = arg;
        struct kiln_nixbuild_serve_options o = *a->base;
        o.write = a->write;
        o.build.log = relayed_log;
        o.build.userdata = a;
        struct kiln_error *err = NULL;
        int r = kiln_nixbuild_serve(&o, a->sock, a->sock, &err);
        if (r < 0)
                dprintf(a->err_fd, "error: %s\n", err ? err->msg : "serve failed");
        kiln_error_free(err);
        char st = r < 0 ? 1 : 0;
        if (write(a->status_fd, &st, 1) < 0) {
                /* the relay is gone; nothing is left to tell */
        }
        close(a->sock);
        close(a->err_fd);
        close(a->status_fd);
        free(a);
        return NULL;
}

/* The relay's flags byte, its stderr and its status pipe. */
static int accept_relayed(int sock, const struct kiln_nixbuild_serve_options *base)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);
        char flags;
        struct iovec iov = {.iov_base = &flags, .iov_len = 1};
        union {
                char buf[CMSG_SPACE(2 * sizeof(int))];
                struct cmsghdr align;
        } u;
        struct msghdr m = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
        ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        struct cmsghdr *c = n == 1 ? CMSG_FIRSTHDR(&m) : NULL;
        int fds[2] = {-1, -1};
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(fds)))
                memcpy(fds, CMSG_DATA(c), sizeof(fds));
        else if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        close(fd);
                }
        if (fds[0] < 0 || (m.msg_flags & MSG_CTRUNC) ||
            getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
            cred.uid != geteuid() || (flags & ~1)) {
                if (fds[0] >= 0) {
                        close(fds[0]);
                        close(fds[1]);
                }
                close(sock);
                return -1;
        }
        struct relayed *a = kiln_calloc(1, sizeof(*a));
        *a = (struct relayed){
            .base = base, .sock = sock, .err_fd = fds[0], .status_fd = fds[1], .write = flags & 1};
        pthread_attr_t attr;
        pthread_t t;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&t, &attr, relayed_session, a);
        pthread_attr_destroy(&attr);
        if (e) {
                close(a->err_fd);
                close(a->status_fd);
                close(sock);
                free(a);
                return -1;
        }
        return 0;
}

static int listen_sessions(const struct kiln_nixbuild_serve_options *base)
{
        _cleanup_free_ char *home = kiln_home();
        _cleanup_free_ char *path = kiln_asprintf("%s/nix-serve.sock", home);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(a.sun_path))
                return cli_failf("nix serve: socket path too long: %s", path);
        memcpy(a.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return cli_failf("nix serve: socket: %s", strerror(errno));
        /* Another listener on this home keeps it: binding would take its
         * path over silently. */
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
                close(fd);
                return cli_failf("nix serve: a listener already serves %s", path);
        }
        close(fd);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        unlink(path);
        mode_t old = umask(0177);
        int r = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&a, sizeof(a));
        umask(old);
        if (r < 0 || chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                return cli_failf("nix serve: listen on %s: %s", path, strerror(e));
        }
        signal(SIGPIPE, SIG_IGN);
        printf("listening on %s\n", path);
        fflush(stdout);
        for (;;) {
                int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
                            errno == ENFILE)
                                continue;
                        int e = errno;
                        close(fd);
                        return cli_failf("nix serve: accept: %s", strerror(e));
                }
                accept_relayed(c, base);
        }
}

int cmd_nix_serve(int argc, char **argv)
{
        enum { OPT_WRITE = 0x200, OPT_SERVE, OPT_HOME, OPT_CORES, OPT_LISTEN };
        static const struct option opts[] = {
            {"write", no_argument, NULL, OPT_WRITE},
            {"serve", no_argument, NULL, OPT_SERVE},
            {"home", required_argument, NULL, OPT_HOME},
            {"cores", required_argument, NULL, OPT_CORES},
            {"listen", no_argument, NULL, OPT_LISTEN},
            {"build-service-addr", required_argument, NULL, CLI_OPT_BUILD_ADDR},
            {"help", no_argument, NULL, 'h'},
            CLI_STORE_OPTIONS,
            {},
        };
        struct cli_stores stores = {0};
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        struct kiln_nixbuild_serve_options s = {
            .build = {.request = {.cores = cpus > 0 ? (unsigned)cpus : 1},
                      .log = cli_nix_log_line},
        };
        const char *build_url = NULL;
        bool listening = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (cli_stores_option(&stores, c, optarg))
                        continue;
                switch (c) {
                case OPT_WRITE:
                        s.write = true;
                        break;
                case OPT_SERVE:
                        break;
                case OPT_LISTEN:
                        listening = true;
                        break;
                case OPT_HOME:
                        setenv("KILN_HOME", optarg, 1);
                        break;
                case OPT_CORES: {
                        char *end;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (!*optarg || *end || v == 0 || v > 65536)
                                return cli_usage_error("nix serve", "invalid --cores '%s'", optarg);
                        s.build.request.cores = (unsigned)v;
                        break;
                }
                case CLI_OPT_BUILD_ADDR:
                        build_url = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("nix serve", "invalid option");
                }
        }
        if (optind < argc)
                return cli_usage_error("nix serve", "no arguments expected");
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        int status = 1;
        if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS))
                goto out;
        if (cli_build_service_open(&stores, build_url, &s.build.builds))
                goto out;
        if (kiln_nix_pathinfo_store_open(NULL, &s.build.pathinfo, &err) < 0) {
                fprintf(stderr, "error: %s\n", err->msg);
                goto out;
        }
        s.build.blobs = stores.blobs;
        s.build.dirs = stores.dirs;
        if (listening) {
                status = listen_sessions(&s);
                goto out;
        }
        if (kiln_nixbuild_serve(&s, STDIN_FILENO, STDOUT_FILENO, &err) < 0)
                fprintf(stderr, "error: %s\n", err ? err->msg : "serve failed");
        else
                status = 0;
out:
        kiln_nix_pathinfo_store_close(s.build.pathinfo);
        kiln_build_service_free(s.build.builds);
        cli_stores_close(&stores);
        return status;
}
