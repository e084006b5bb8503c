/* The worker protocol client: see daemon.h. The exchange (Nix 2.8's
 * daemon.cc and worker-protocol.hh):
 *
 *   client: WORKER_MAGIC_1, then its version; daemon: WORKER_MAGIC_2, its
 *   version; client: 0 (no CPU affinity), 0 (no reserved space); then the
 *   daemon's log messages up to STDERR_LAST.
 *
 * Every operation is the op number and its arguments, then log messages up
 * to STDERR_LAST (or STDERR_ERROR with the failure), then the reply. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <kiln/nix/daemon.h>

#define WORKER_MAGIC_1 0x6e697863
#define WORKER_MAGIC_2 0x6478696f
#define CLIENT_VERSION (1 << 8 | 25)

#define STDERR_NEXT           0x6f6c6d67
#define STDERR_READ           0x64617461
#define STDERR_WRITE          0x64617416
#define STDERR_LAST           0x616c7473
#define STDERR_ERROR          0x63787470
#define STDERR_START_ACTIVITY 0x53545254
#define STDERR_STOP_ACTIVITY  0x53544f50
#define STDERR_RESULT         0x52534c54

#define OP_QUERY_PATH_INFO  26
#define OP_ADD_TO_STORE_NAR 39

/* Bounds on what the daemon may make us allocate. */
#define MAX_STRING  (1u << 20)
#define MAX_LIST    (1u << 20)
#define NAR_FRAME   (256 * 1024)

struct kiln_nix_daemon {
        struct kiln_nix_conn conn;
        int fd;
        pid_t pid;
        uint64_t version;
};

extern char **environ;

void kiln_nix_path_info_done(struct kiln_nix_path_info *i)
{
        free(i->path);
        free(i->deriver);
        kiln_strv_done(&i->references);
        kiln_strv_done(&i->sigs);
        free(i->ca);
        *i = (struct kiln_nix_path_info){0};
}

/* Log fields: a count, then each as a type (0 number, 1 string) and value. */
static int skip_fields(struct kiln_nix_conn *c, struct kiln_error **err)
{
        uint64_t n, type, v;
        int r = kiln_nix_read_u64(c, &n, err);
        for (uint64_t i = 0; r == 0 && i < n; i++) {
                r = kiln_nix_read_u64(c, &type, err);
                if (r < 0)
                        break;
                if (type == 0) {
                        r = kiln_nix_read_u64(c, &v, err);
                } else if (type == 1) {
                        char *s;
                        r = kiln_nix_read_string(c, MAX_STRING, &s, NULL, err);
                        if (r == 0)
                                free(s);
                } else {
                        r = kiln_error_set(err, EPROTO, "nix-daemon sent a log field of type %" PRIu64,
                                           type);
                }
        }
        return r;
}

/* Removes terminal escape sequences (ESC [ … letter) in place. */
static void strip_ansi(char *s)
{
        char *o = s;
        for (const char *p = s; *p; p++) {
                if (p[0] == '\033' && p[1] == '[') {
                        p += 2;
                        while (*p && !((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                                p++;
                        if (!*p)
                                break;
                        continue;
                }
                *o++ = *p;
        }
        *o = '\0';
}

/* Reads log messages up to STDERR_LAST; STDERR_ERROR becomes -EIO with
 * the daemon's message. The daemon's own log lines go to our stderr. */
static int process_stderr(struct kiln_nix_daemon *d, struct kiln_error **err)
{
        struct kiln_nix_conn *c = &d->conn;
        for (;;) {
                uint64_t msg, v;
                char *s = NULL;
                int r = kiln_nix_read_u64(c, &msg, err);
                if (r < 0)
                        return r;
                switch (msg) {
                case STDERR_LAST:
                        return 0;
                case STDERR_NEXT:
                        r = kiln_nix_read_string(c, MAX_STRING, &s, NULL, err);
                        if (r < 0)
                                return r;
                        strip_ansi(s);
                        fprintf(stderr, "nix-daemon: %s", s);
                        free(s);
                        break;
                case STDERR_ERROR: {
                        r = kiln_nix_read_string(c, MAX_STRING, &s, NULL, err);
                        if (r == 0)
                                r = kiln_nix_read_u64(c, &v, err);
                        if (r < 0) {
                                free(s);
                                return r;
                        }
                        /* Nix's messages carry ANSI colours and end in a newline. */
                        strip_ansi(s);
                        size_t n = strlen(s);
                        while (n && (s[n - 1] == '\n'))
                                s[--n] = '\0';
                        if (!strncmp(s, "error: ", 7))
                                memmove(s, s + 7, n - 6);
                        r = kiln_error_set(err, EIO, "%s", s);
                        free(s);
                        return r;
                }
                case STDERR_START_ACTIVITY:
                        /* id, level, type, text, fields, parent */
                        for (int i = 0; r == 0 && i < 3; i++)
                                r = kiln_nix_read_u64(c, &v, err);
                        if (r == 0)
                                r = kiln_nix_read_string(c, MAX_STRING, &s, NULL, err);
                        free(s);
                        if (r == 0)
                                r = skip_fields(c, err);
                        if (r == 0)
                                r = kiln_nix_read_u64(c, &v, err);
                        if (r < 0)
                                return r;
                        break;
                case STDERR_STOP_ACTIVITY:
                        r = kiln_nix_read_u64(c, &v, err);
                        if (r < 0)
                                return r;
                        break;
                case STDERR_RESULT:
                        r = kiln_nix_read_u64(c, &v, err);
                        if (r == 0)
                                r = kiln_nix_read_u64(c, &v, err);
                        if (r == 0)
                                r = skip_fields(c, err);
                        if (r < 0)
                                return r;
                        break;
                default:
                        /* STDERR_READ / STDERR_WRITE: not for the ops we send. */
                        return kiln_error_set(err, EPROTO,
                                              "nix-daemon sent unexpected message 0x%" PRIx64, msg);
                }
        }
}

static int handshake(struct kiln_nix_daemon *d, struct kiln_error **err)
{
        struct kiln_nix_conn *c = &d->conn;
        kiln_nix_write_u64(c, WORKER_MAGIC_1);
        int r = kiln_nix_flush(c, err);
        uint64_t magic;
        if (r == 0)
                r = kiln_nix_read_u64(c, &magic, err);
        if (r == 0 && magic != WORKER_MAGIC_2)
                return kiln_error_set(err, EPROTO, "nix-daemon: protocol mismatch");
        if (r == 0)
                r = kiln_nix_read_u64(c, &d->version, err);
        if (r < 0)
                return r;
        if ((d->version >> 8) != 1 || (d->version & 0xff) < 25)
                return kiln_error_set(err, EPROTO,
                                      "nix-daemon speaks protocol %" PRIu64 ".%" PRIu64
                                      ", kiln needs 1.25 or newer",
                                      d->version >> 8, d->version & 0xff);
        kiln_nix_write_u64(c, CLIENT_VERSION);
        kiln_nix_write_u64(c, 0); /* no CPU affinity */
        kiln_nix_write_u64(c, 0); /* reserveSpace, obsolete */
        r = kiln_nix_flush(c, err);
        return r < 0 ? r : process_stderr(d, err);
}

int kiln_nix_daemon_open(const char *program, struct kiln_nix_daemon **ret,
                         struct kiln_error **err)
{
        if (!program)
                program = "nix-daemon";
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return kiln_error_errno(err, errno, "socketpair");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
        char *const argv[] = {(char *)program, (char *)"--stdio", NULL};
        pid_t pid;
        int e = posix_spawnp(&pid, program, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(sv[1]);
        if (e) {
                close(sv[0]);
                return kiln_error_errno(err, e, "cannot run %s", program);
        }
        struct kiln_nix_daemon *d = kiln_malloc(sizeof(*d));
        *d = (struct kiln_nix_daemon){.fd = sv[0], .pid = pid};
        kiln_nix_conn_init(&d->conn, sv[0], sv[0], "nix-daemon");
        int r = handshake(d, err);
        if (r < 0) {
                kiln_nix_daemon_close(d);
                return kiln_error_prefix(err, r, "cannot talk to %s", program);
        }
        *ret = d;
        return 0;
}

void kiln_nix_daemon_close(struct kiln_nix_daemon *d)
{
        if (!d)
                return;
        /* End of input ends the daemon's loop. */
        close(d->fd);
        int status;
        while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
                ;
        kiln_nix_conn_done(&d->conn);
        free(d);
}

static int read_hash_base16(struct kiln_nix_conn *c, struct kiln_nix_hash *ret,
                            struct kiln_error **err)
{
        _cleanup_free_ char *s = NULL;
        size_t n;
        int r = kiln_nix_read_string(c, MAX_STRING, &s, &n, err);
        if (r < 0)
                return r;
        r = kiln_nix_hash_parse_bare(s, n, KILN_NIX_HASH_SHA256, ret, err);
        return r < 0 ? kiln_error_prefix(err, r, "nix-daemon sent a bad NAR hash") : 0;
}

int kiln_nix_daemon_query_path_info(struct kiln_nix_daemon *d, const char *path,
                                    struct kiln_nix_path_info *ret, struct kiln_error **err)
{
        struct kiln_nix_conn *c = &d->conn;
        kiln_nix_write_u64(c, OP_QUERY_PATH_INFO);
        kiln_nix_write_string(c, path);
        int r = kiln_nix_flush(c, err);
        if (r == 0)
                r = process_stderr(d, err);
        uint64_t valid, v = 0;
        if (r == 0)
                r = kiln_nix_read_u64(c, &valid, err);
        if (r < 0)
                return r;
        if (!valid)
                return 0;
        struct kiln_nix_path_info i = {.path = kiln_strdup(path)};
        r = kiln_nix_read_string(c, MAX_STRING, &i.deriver, NULL, err);
        if (r == 0 && !i.deriver[0]) {
                free(i.deriver);
                i.deriver = NULL;
        }
        if (r == 0)
                r = read_hash_base16(c, &i.nar_hash, err);
        if (r == 0)
                r = kiln_nix_read_strings(c, MAX_LIST, MAX_STRING, &i.references, err);
        if (r == 0)
                r = kiln_nix_read_u64(c, &i.registration_time, err);
        if (r == 0)
                r = kiln_nix_read_u64(c, &i.nar_size, err);
        if (r == 0)
                r = kiln_nix_read_u64(c, &v, err);
        i.ultimate = v != 0;
        if (r == 0)
                r = kiln_nix_read_strings(c, MAX_LIST, MAX_STRING, &i.sigs, err);
        if (r == 0)
                r = kiln_nix_read_string(c, MAX_STRING, &i.ca, NULL, err);
        if (r == 0 && !i.ca[0]) {
                free(i.ca);
                i.ca = NULL;
        }
        if (r < 0) {
                kiln_nix_path_info_done(&i);
                return r;
        }
        *ret = i;
        return 1;
}

/* The NAR goes to the daemon in frames: a length, then that many bytes; an
 * empty frame ends it. */
struct frame_sink {
        struct kiln_nix_daemon *d;
        uint8_t *buf;
        size_t len;
};

static int frame_flush(struct frame_sink *f, struct kiln_error **err)
{
        if (!f->len)
                return 0;
        kiln_nix_write_u64(&f->d->conn, f->len);
        kiln_nix_write_raw(&f->d->conn, f->buf, f->len);
        f->len = 0;
        return kiln_nix_flush(&f->d->conn, err);
}

static int frame_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        struct frame_sink *f = ctx;
        const uint8_t *b = p;
        while (n) {
                size_t k = KILN_MIN(n, (size_t)NAR_FRAME - f->len);
                memcpy(f->buf + f->len, b, k);
                f->len += k;
                b += k;
                n -= k;
                if (f->len == NAR_FRAME) {
                        int r = frame_flush(f, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int kiln_nix_daemon_add_nar(struct kiln_nix_daemon *d, const struct kiln_nix_path_info *info,
                            kiln_nix_nar_producer produce, void *ctx, struct kiln_error **err)
{
        struct kiln_nix_conn *c = &d->conn;
        char hex[2 * 32 + 1];
        for (size_t i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", info->nar_hash.b[i]);
        kiln_nix_write_u64(c, OP_ADD_TO_STORE_NAR);
        kiln_nix_write_string(c, info->path);
        kiln_nix_write_string(c, info->deriver ? info->deriver : "");
        kiln_nix_write_string(c, hex);
        kiln_nix_write_u64(c, info->references.n);
        for (size_t i = 0; i < info->references.n; i++)
                kiln_nix_write_string(c, info->references.v[i]);
        kiln_nix_write_u64(c, info->registration_time);
        kiln_nix_write_u64(c, info->nar_size);
        kiln_nix_write_u64(c, info->ultimate);
        kiln_nix_write_u64(c, info->sigs.n);
        for (size_t i = 0; i < info->sigs.n; i++)
                kiln_nix_write_string(c, info->sigs.v[i]);
        kiln_nix_write_string(c, info->ca ? info->ca : "");
        kiln_nix_write_u64(c, 0); /* repair */
        kiln_nix_write_u64(c, 1); /* dontCheckSigs */

        struct frame_sink f = {.d = d, .buf = kiln_malloc(NAR_FRAME)};
        struct kiln_nix_nar_sink sink = {.write = frame_write, .ctx = &f};
        int r = produce(ctx, &sink, err);
        if (r == 0)
                r = frame_flush(&f, err);
        free(f.buf);
        if (r < 0) {
                /* The daemon is mid-NAR: this connection cannot go on. */
                shutdown(d->fd, SHUT_RDWR);
                return r;
        }
        kiln_nix_write_u64(c, 0);
        r = kiln_nix_flush(c, err);
        return r < 0 ? r : process_stderr(d, err);
}
