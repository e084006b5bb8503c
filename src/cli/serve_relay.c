/* `kiln nix serve` in front of a warm `kiln nix serve --listen`: each
 * session Nix opens over ssh starts a new process, and a session's start
 * (kiln-core's dynamic loading, opening castore, the PathInfo store and the
 * build service) is a large part of a small build's cost. When the builder
 * runs `kiln nix serve --listen`, this program (libc only) connects to its
 * socket $KILN_HOME/nix-serve.sock, hands it stderr and a status pipe, and
 * relays the protocol bytes between stdin/stdout and the socket; the
 * session runs in the listener exactly as it would in-process. Its end of
 * the socket closing (this process killed, the client gone) ends the
 * session there and cancels its build. With no listener, or any option the
 * listener does not share (stores, build service, cores), kiln-core serves
 * the session itself. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

/* The listener's socket for these arguments, or -1 to serve in-process. */
static int listener_socket(int argc, char **argv, bool *write)
{
        const char *home = getenv("KILN_HOME");
        *write = false;
        /* argv: kiln nix serve [--write] [--serve] [--home DIR | --home=DIR] */
        for (int i = 3; i < argc; i++) {
                if (!strcmp(argv[i], "--write"))
                        *write = true;
                else if (!strcmp(argv[i], "--serve"))
                        ;
                else if (!strcmp(argv[i], "--home") && i + 1 < argc)
                        home = argv[++i];
                else if (!strncmp(argv[i], "--home=", 7))
                        home = argv[i] + 7;
                else
                        return -1;
        }
        if (getenv("BLOB_SERVICE_ADDR") || getenv("DIRECTORY_SERVICE_ADDR") ||
            getenv("BUILD_SERVICE_ADDR"))
                return -1;
        if (!home || !*home) {
                if (geteuid() != 0)
                        return -1; /* $XDG_DATA_HOME/kiln: left to kiln-core */
                home = "/var/lib/kiln";
        }
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s/nix-serve.sock", home) >=
            sizeof(a.sun_path))
                return -1;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Sends the flags byte with stderr and the status pipe's write end. */
static int hand_over(int sock, bool write, int status_fd)
{
        char flags = write ? 1 : 0;
        struct iovec iov = {.iov_base = &flags, .iov_len = 1};
        union {
                char buf[CMSG_SPACE(2 * sizeof(int))];
                struct cmsghdr align;
        } u;
        memset(&u, 0, sizeof(u));
        struct msghdr m = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(2 * sizeof(int));
        int fds[2] = {STDERR_FILENO, status_fd};
        memcpy(CMSG_DATA(c), fds, sizeof(fds));
        ssize_t n;
        do
                n = sendmsg(sock, &m, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n == 1 ? 0 : -1;
}

static int write_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return -1;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

/* p[0..n) to the socket; while it is full, what the listener sends meanwhile
 * goes on to stdout (through other), so that neither side waits on the
 * other's full buffer. */
static int to_listener(int sock, const char *p, size_t n, char *other, size_t other_size)
{
        while (n) {
                struct pollfd q = {.fd = sock, .events = POLLIN | POLLOUT};
                if (poll(&q, 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                if (q.revents & POLLIN) {
                        ssize_t r = read(sock, other, other_size);
                        if (r < 0 && errno == EINTR)
                                continue;
                        if (r <= 0 || write_all(STDOUT_FILENO, other, (size_t)r) < 0)
                                return -1;
                }
                if (q.revents & POLLOUT) {
                        ssize_t w = send(sock, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (w < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (w <= 0)
                                return -1;
                        p += w;
                        n -= (size_t)w;
                } else if (q.revents & (POLLERR | POLLHUP | POLLNVAL) && !(q.revents & POLLIN)) {
                        return -1;
                }
        }
        return 0;
}

/* stdin → socket and socket → stdout until the listener ends the session. */
static void relay(int sock)
{
        static char buf[256 * 1024], other[256 * 1024];
        bool in_open = true;
        for (;;) {
                struct pollfd p[2] = {{.fd = in_open ? STDIN_FILENO : -1, .events = POLLIN},
                                      {.fd = sock, .events = POLLIN}};
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return;
                }
                if (p[1].revents) {
                        ssize_t n = read(sock, buf, sizeof(buf));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0 || write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
                                return;
                }
                if (in_open && p[0].revents) {
                        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                /* the client is done or gone: the listener
                                 * sees the end of its input */
                                shutdown(sock, SHUT_WR);
                                in_open = false;
                        } else if (to_listener(sock, buf, (size_t)n, other, sizeof(other)) < 0) {
                                return;
                        }
                }
        }
}

int serve_relay(int argc, char **argv)
{
        bool write;
        int sock = listener_socket(argc, argv, &write);
        if (sock < 0)
                return -1;
        int status[2];
        if (pipe2(status, O_CLOEXEC) < 0 || hand_over(sock, write, status[1]) < 0) {
                close(sock);
                return -1; /* nothing was sent: serve in-process */
        }
        close(status[1]);
        relay(sock);
        close(sock);
        char st;
        ssize_t n;
        do
                n = read(status[0], &st, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1) {
                fputs("error: the kiln nix serve listener ended the session\n", stderr);
                return 1;
        }
        return (unsigned char)st;
}
