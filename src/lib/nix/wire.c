/* Nix protocol framing over a pair of descriptors: see wire.h. */
#include <inttypes.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <kiln/nix/wire.h>

#define WIRE_BUF (64 * 1024)

void kiln_nix_conn_init(struct kiln_nix_conn *c, int in_fd, int out_fd, const char *peer)
{
        *c = (struct kiln_nix_conn){.in_fd = in_fd, .out_fd = out_fd, .peer = peer};
}

void kiln_nix_conn_done(struct kiln_nix_conn *c)
{
        free(c->rbuf);
        free(c->wbuf);
        c->rbuf = c->wbuf = NULL;
        c->rlen = c->rpos = c->rcap = c->wlen = c->wcap = 0;
}

static void wreserve(struct kiln_nix_conn *c, size_t n)
{
        if (c->wlen + n <= c->wcap)
                return;
        size_t cap = KILN_MAX(c->wcap ? c->wcap : (size_t)WIRE_BUF, c->wlen + n);
        while (cap < c->wlen + n)
                cap *= 2;
        c->wbuf = kiln_realloc(c->wbuf, cap);
        c->wcap = cap;
}

void kiln_nix_write_raw(struct kiln_nix_conn *c, const void *p, size_t n)
{
        wreserve(c, n);
        memcpy(c->wbuf + c->wlen, p, n);
        c->wlen += n;
}

void kiln_nix_write_u64(struct kiln_nix_conn *c, uint64_t v)
{
        uint8_t b[8];
        for (int i = 0; i < 8; i++)
                b[i] = (uint8_t)(v >> (8 * i));
        kiln_nix_write_raw(c, b, 8);
}

void kiln_nix_write_bytes(struct kiln_nix_conn *c, const void *p, size_t n)
{
        static const uint8_t zero[8];
        kiln_nix_write_u64(c, n);
        kiln_nix_write_raw(c, p, n);
        if (n % 8)
                kiln_nix_write_raw(c, zero, 8 - n % 8);
}

void kiln_nix_write_string(struct kiln_nix_conn *c, const char *s)
{
        kiln_nix_write_bytes(c, s, strlen(s));
}

/* Moves unread input to the front and makes room for more. */
static void rmake_room(struct kiln_nix_conn *c)
{
        if (c->rpos) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                c->rlen -= c->rpos;
                c->rpos = 0;
        }
        if (c->rlen == c->rcap) {
                c->rcap = c->rcap ? c->rcap * 2 : WIRE_BUF;
                c->rbuf = kiln_realloc(c->rbuf, c->rcap);
        }
}

/* One read(2) into the buffer: 1, 0 at the end of input, or -errno. */
static int rfill(struct kiln_nix_conn *c)
{
        rmake_room(c);
        ssize_t n;
        do
                n = read(c->in_fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        c->rlen += (size_t)n;
        return n > 0;
}

int kiln_nix_flush(struct kiln_nix_conn *c, struct kiln_error **err)
{
        size_t off = 0;
        bool in_open = true;
        while (off < c->wlen) {
                struct pollfd p[2] = {{.fd = c->out_fd, .events = POLLOUT},
                                      {.fd = c->in_fd, .events = POLLIN}};
                if (poll(p, in_open ? 2 : 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return kiln_error_errno(err, errno, "poll");
                }
                /* What the peer says meanwhile is kept for the readers. */
                if (in_open && (p[1].revents & (POLLIN | POLLHUP))) {
                        int r = rfill(c);
                        if (r <= 0)
                                in_open = false;
                }
                if (!(p[0].revents & (POLLOUT | POLLERR | POLLHUP)))
                        continue;
                /* On a socket, a peer that is gone is EPIPE, not SIGPIPE. */
                ssize_t n = send(c->out_fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL);
                if (n < 0 && errno == ENOTSOCK)
                        n = write(c->out_fd, c->wbuf + off, c->wlen - off);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        c->wlen = 0;
                        if (errno == EPIPE)
                                return kiln_error_set(err, EPIPE, "%s closed the connection",
                                                      c->peer);
                        return kiln_error_errno(err, errno, "write to %s", c->peer);
                }
                off += (size_t)n;
        }
        c->wlen = 0;
        return 0;
}

int kiln_nix_read_raw(struct kiln_nix_conn *c, void *p, size_t n, struct kiln_error **err)
{
        uint8_t *out = p;
        while (n) {
                if (c->rpos == c->rlen) {
                        int r = rfill(c);
                        if (r < 0)
                                return kiln_error_errno(err, -r, "read from %s", c->peer);
                        if (r == 0)
                                return kiln_error_set(err, EPIPE, "%s closed the connection",
                                                      c->peer);
                        continue;
                }
                size_t k = KILN_MIN(n, c->rlen - c->rpos);
                memcpy(out, c->rbuf + c->rpos, k);
                c->rpos += k;
                out += k;
                n -= k;
        }
        return 0;
}

int kiln_nix_read_u64(struct kiln_nix_conn *c, uint64_t *ret, struct kiln_error **err)
{
        uint8_t b[8];
        int r = kiln_nix_read_raw(c, b, 8, err);
        if (r < 0)
                return r;
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | b[i];
        *ret = v;
        return 0;
}

int kiln_nix_read_string(struct kiln_nix_conn *c, size_t max, char **ret, size_t *ret_len,
                         struct kiln_error **err)
{
        uint64_t n;
        int r = kiln_nix_read_u64(c, &n, err);
        if (r < 0)
                return r;
        if (n > max)
                return kiln_error_set(err, EBADMSG, "%s sent a string of %" PRIu64
                                      " bytes (at most %zu expected)", c->peer, n, max);
        char *s = kiln_malloc((size_t)n + 1);
        r = kiln_nix_read_raw(c, s, (size_t)n, err);
        uint8_t pad[8] = {0};
        if (r == 0 && n % 8)
                r = kiln_nix_read_raw(c, pad, 8 - n % 8, err);
        if (r < 0) {
                free(s);
                return r;
        }
        s[n] = '\0';
        for (size_t i = 0; i < 8; i++)
                if (pad[i]) {
                        free(s);
                        return kiln_error_set(err, EBADMSG, "%s sent non-zero padding", c->peer);
                }
        if (memchr(s, 0, (size_t)n)) {
                free(s);
                return kiln_error_set(err, EBADMSG, "%s sent a string holding NUL", c->peer);
        }
        *ret = s;
        if (ret_len)
                *ret_len = (size_t)n;
        return 0;
}

int kiln_nix_read_strings(struct kiln_nix_conn *c, size_t max_count, size_t max_len,
                          struct kiln_strv *ret, struct kiln_error **err)
{
        uint64_t n;
        int r = kiln_nix_read_u64(c, &n, err);
        if (r < 0)
                return r;
        if (n > max_count)
                return kiln_error_set(err, EBADMSG, "%s sent a list of %" PRIu64 " strings",
                                      c->peer, n);
        *ret = (struct kiln_strv){0};
        for (uint64_t i = 0; i < n; i++) {
                char *s;
                r = kiln_nix_read_string(c, max_len, &s, NULL, err);
                if (r < 0) {
                        kiln_strv_done(ret);
                        return r;
                }
                ret->v = kiln_reallocarray(ret->v, ret->n + 1, sizeof(*ret->v));
                ret->v[ret->n++] = s;
        }
        return 0;
}
