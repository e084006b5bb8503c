/* Listening addresses: see listen.h. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <systemd/sd-daemon.h>

#include "lazylib.h"
#include "listen.h"
#include "log.h"

/* Socket buffer size asked for on accepted connections. */
#define SOCKET_BUFFER (4 << 20)

void srv_listeners_init(struct srv_listeners *l)
{
        *l = (struct srv_listeners){.wake = {-1, -1}};
}

/* Refuses a path a live server answers on; removes a stale socket file. */
static int claim_unix_path(const char *path, struct kiln_error **err)
{
        struct stat st;
        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return kiln_error_errno(err, errno, "cannot listen on %s", path);
        }
        if (!S_ISSOCK(st.st_mode))
                return kiln_error_set(err, EEXIST, "cannot listen on %s: exists and is not a socket",
                                      path);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path))
                return kiln_error_set(err, ENAMETOOLONG, "cannot listen on %s: path too long",
                                      path);
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return kiln_error_errno(err, errno, "socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return kiln_error_set(err, EADDRINUSE,
                                      "cannot listen on %s: another server is listening there",
                                      path);
        if (errno != ECONNREFUSED)
                return kiln_error_errno(err, errno, "cannot listen on %s: probing the socket",
                                        path);
        /* Nobody listens: a stale file left by a server that died. */
        if (unlink(path) < 0 && errno != ENOENT)
                return kiln_error_errno(err, errno, "cannot remove stale socket %s", path);
        return 0;
}

static char *describe_fd(int fd)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return kiln_asprintf("fd %d", fd);
        char host[INET6_ADDRSTRLEN];
        switch (ss.ss_family) {
        case AF_UNIX: {
                struct sockaddr_un *u = (struct sockaddr_un *)&ss;
                if (len > offsetof(struct sockaddr_un, sun_path) && u->sun_path[0])
                        return kiln_asprintf("fd %d unix:%s", fd, u->sun_path);
                return kiln_asprintf("fd %d unix", fd);
        }
        case AF_INET: {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                return kiln_asprintf("fd %d %s:%u", fd, host, ntohs(in->sin_port));
        }
        case AF_INET6: {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                return kiln_asprintf("fd %d [%s]:%u", fd, host, ntohs(in6->sin6_port));
        }
        }
        return kiln_asprintf("fd %d", fd);
}

static bool is_pem(const char *pem, const char *label)
{
        _cleanup_free_ char *begin = kiln_asprintf("-----BEGIN %s-----", label);
        return strstr(pem, begin) != NULL;
}

int srv_listeners_set_tls(struct srv_listeners *l, const char *cert_pem, const char *key_pem,
                          const char *client_ca_pem, struct kiln_error **err)
{
        if (l->n_fds || l->tls)
                return kiln_error_set(err, EINVAL, "TLS must be set once, before listening");
        if (!is_pem(cert_pem, "CERTIFICATE"))
                return kiln_error_set(err, EINVAL, "TLS certificate: no PEM CERTIFICATE in it");
        if (!strstr(key_pem, "PRIVATE KEY-----"))
                return kiln_error_set(err, EINVAL, "TLS key: no PEM PRIVATE KEY in it");
        if (client_ca_pem && !is_pem(client_ca_pem, "CERTIFICATE"))
                return kiln_error_set(err, EINVAL, "TLS client CA: no PEM CERTIFICATE in it");
        grpc_ssl_pem_key_cert_pair pair = {.private_key = key_pem, .cert_chain = cert_pem};
        l->tls = grpc_ssl_server_credentials_create_ex(
                client_ca_pem, &pair, 1,
                client_ca_pem ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                              : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
                NULL);
        if (!l->tls)
                return kiln_error_set(err, EINVAL, "TLS certificate and key rejected");
        return 0;
}

/* libsystemd, opened for sd-listen only (lazylib.h). */
enum { SD_FN_listen_fds, SD_FN_is_socket, SD_FN_N };
static const char *const sd_names[] = {"sd_listen_fds", "sd_is_socket", NULL};
static void *sd_fn[SD_FN_N];
static struct lazy_lib sd_lib = LAZY_LIB_INIT("libsystemd.so.0", sd_names, sd_fn);
#define SD_CALL(f) ((typeof(&sd_##f))sd_fn[SD_FN_##f])

static int listen_sd(struct srv_listeners *l, char **ret_desc, struct kiln_error **err)
{
        if (l->tls) /* grpc_server_add_channel_from_fd takes plaintext only */
                return kiln_error_set(err, EINVAL,
                                      "sd-listen cannot serve TLS; listen on host:port instead");
        if (l->sd_listen)
                return kiln_error_set(err, EINVAL, "sd-listen given twice");
        l->sd_listen = true;
        int r = lazy_lib_load(&sd_lib, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "sd-listen");
        int n = SD_CALL(listen_fds)(1);
        if (n < 0)
                return kiln_error_errno(err, -n, "sd-listen: cannot take the passed sockets");
        if (n == 0)
                return kiln_error_set(err, EINVAL,
                                      "sd-listen: no sockets were passed (LISTEN_FDS is unset "
                                      "or not for this process)");
        struct kiln_buf desc = KILN_BUF_INIT;
        kiln_buf_append(&desc, "sd-listen", 9);
        l->fds = kiln_reallocarray(l->fds, l->n_fds + (size_t)n, sizeof(int));
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (SD_CALL(is_socket)(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                        kiln_buf_done(&desc);
                        return kiln_error_set(err, EINVAL,
                                              "sd-listen: fd %d is not a listening stream socket",
                                              fd);
                }
                fcntl(fd, F_SETFD, FD_CLOEXEC);
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                l->fds[l->n_fds++] = fd;
                _cleanup_free_ char *d = describe_fd(fd);
                kiln_buf_append(&desc, i ? ", " : " (", 2);
                kiln_buf_append(&desc, d, strlen(d));
        }
        kiln_buf_append(&desc, ")", 2); /* with the NUL */
        *ret_desc = (char *)kiln_buf_steal(&desc, NULL);
        return 0;
}

static int listen_unix(struct srv_listeners *l, const char *path, char **ret_desc,
                       struct kiln_error **err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path))
                return kiln_error_set(err, ENAMETOOLONG, "cannot listen on %s: path too long",
                                      path);
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return kiln_error_errno(err, errno, "socket");
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno == EADDRINUSE) /* another server bound it since we looked */
                        return kiln_error_set(err, EADDRINUSE,
                                              "cannot listen on %s: another server is listening "
                                              "there",
                                              path);
                return kiln_error_errno(err, errno, "cannot listen on %s", path);
        }
        l->unix_paths = kiln_reallocarray(l->unix_paths, l->n_unix + 1, sizeof(char *));
        l->unix_paths[l->n_unix++] = kiln_strdup(path);
        if (listen(fd, SOMAXCONN) < 0)
                return kiln_error_errno(err, errno, "cannot listen on %s", path);
        l->fds = kiln_reallocarray(l->fds, l->n_fds + 1, sizeof(int));
        l->fds[l->n_fds++] = TAKE_FD(fd);
        *ret_desc = kiln_asprintf("unix:%s", path);
        return 0;
}

int srv_listen(struct srv_listeners *l, grpc_server *server, const char *addr, char **ret_desc,
               struct kiln_error **err)
{
        if (!strcmp(addr, "sd-listen"))
                return listen_sd(l, ret_desc, err);

        _cleanup_free_ char *target = NULL;
        if (addr[0] == '/' || addr[0] == '.') {
                _cleanup_free_ char *path = NULL;
                if (addr[0] == '/') {
                        path = kiln_strdup(addr);
                } else {
                        _cleanup_free_ char *cwd = getcwd(NULL, 0);
                        if (!cwd)
                                return kiln_error_errno(err, errno, "getcwd");
                        path = kiln_asprintf("%s/%s", cwd, addr);
                }
                int r = claim_unix_path(path, err);
                if (r < 0)
                        return r;
                return listen_unix(l, path, ret_desc, err);
        } else if (addr[0] == '@') {
                if (!addr[1])
                        return kiln_error_set(err, EINVAL, "invalid listen address '@': no name");
                target = kiln_asprintf("unix-abstract:%s", addr + 1);
        } else {
                const char *colon = strrchr(addr, ':');
                const char *rb = strrchr(addr, ']');
                if (!colon || colon == addr || !colon[1] || (rb && rb > colon) ||
                    strspn(colon + 1, "0123456789") != strlen(colon + 1))
                        return kiln_error_set(err, EINVAL,
                                              "invalid listen address '%s': use host:port, "
                                              "[v6]:port, a socket path starting with '/' or "
                                              "'.', @name or sd-listen",
                                              addr);
                target = kiln_strdup(addr);
        }

        grpc_server_credentials *creds = l->tls ? l->tls : grpc_insecure_server_credentials_create();
        int port = grpc_server_add_http2_port(server, target, creds);
        if (!l->tls)
                grpc_server_credentials_release(creds);
        if (port <= 0)
                return kiln_error_set(err, EADDRNOTAVAIL,
                                      l->tls ? "cannot listen on %s with TLS (does the key "
                                               "belong to the certificate?)"
                                             : "cannot listen on %s",
                                      addr);
        if (addr[0] == '@') {
                *ret_desc = TAKE_PTR(target);
        } else {
                const char *colon = strrchr(addr, ':');
                *ret_desc = kiln_asprintf("%.*s:%d", (int)(colon - addr), addr, port);
        }
        return 0;
}

static void *accept_loop(void *arg)
{
        struct srv_listeners *l = arg;
        size_t n = l->n_fds;
        struct pollfd *pfd = kiln_calloc(n + 1, sizeof(*pfd));
        for (size_t i = 0; i < n; i++)
                pfd[i] = (struct pollfd){.fd = l->fds[i], .events = POLLIN};
        pfd[n] = (struct pollfd){.fd = l->wake[0], .events = POLLIN};
        for (;;) {
                if (poll(pfd, n + 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        daemon_log_error("sd-listen: poll: %s", strerror(errno));
                        break;
                }
                if (pfd[n].revents)
                        break;
                for (size_t i = 0; i < n; i++) {
                        if (!pfd[i].revents)
                                continue;
                        int fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                        if (fd < 0) {
                                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                                        daemon_log_error("sd-listen: accept: %s",
                                                         strerror(errno));
                                        poll(NULL, 0, 100); /* e.g. out of descriptors */
                                }
                                continue;
                        }
                        struct sockaddr_storage ss;
                        socklen_t len = sizeof(ss);
                        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
                            (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
                                int one = 1;
                                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                        }
                        /* Room for several 1 MiB messages in the socket
                         * (the kernel caps it at net.core.wmem_max). */
                        int big = SOCKET_BUFFER;
                        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
                        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
                        /* gRPC owns the descriptor from here on. */
                        grpc_server_add_channel_from_fd(l->server, fd, l->creds);
                }
        }
        free(pfd);
        return NULL;
}

int srv_listeners_start(struct srv_listeners *l, grpc_server *server, struct kiln_error **err)
{
        if (!l->n_fds)
                return 0;
        l->server = server;
        l->creds = grpc_insecure_server_credentials_create();
        if (pipe2(l->wake, O_CLOEXEC) < 0)
                return kiln_error_errno(err, errno, "pipe");
        int r = pthread_create(&l->accept_thread, NULL, accept_loop, l);
        if (r != 0)
                return kiln_error_errno(err, r, "cannot start the sd-listen accept thread");
        l->accepting = true;
        return 0;
}

void srv_listeners_stop(struct srv_listeners *l)
{
        if (!l->accepting)
                return;
        (void)!write(l->wake[1], "x", 1);
        pthread_join(l->accept_thread, NULL);
        l->accepting = false;
        /* Refuse new connections at once instead of leaving them queued. */
        for (size_t i = 0; i < l->n_fds; i++)
                close(l->fds[i]);
        l->n_fds = 0;
}

void srv_listeners_done(struct srv_listeners *l)
{
        srv_listeners_stop(l);
        for (size_t i = 0; i < l->n_unix; i++) {
                unlink(l->unix_paths[i]);
                free(l->unix_paths[i]);
        }
        free(l->unix_paths);
        for (size_t i = 0; i < l->n_fds; i++)
                close(l->fds[i]);
        free(l->fds);
        for (int i = 0; i < 2; i++)
                if (l->wake[i] >= 0)
                        close(l->wake[i]);
        if (l->creds)
                grpc_server_credentials_release(l->creds);
        if (l->tls)
                grpc_server_credentials_release(l->tls);
        *l = (struct srv_listeners){.wake = {-1, -1}};
}
