/* objectstore+file:///abs/path and objectstore+memory://: Directories kept
 * as whole closures. The closure of root R is one object at
 * dirs/b3/<hex of R's first 2 bytes>/<hex of R>: a zstd stream of frames,
 * each a 4-byte big-endian length and the canonical bytes of one Directory,
 * root first, breadth-first. Only roots can be fetched, and an object, once
 * written, never changes.
 *
 * File objects are published atomically: a temp file in the shard
 * directory is written and fsynced, renamed to its name unless that exists,
 * and the directory is fsynced; a killed writer leaves at most a dot-named
 * temp file. The memory variant keeps the same compressed bytes in a map
 * under a rwlock; objects are never removed, so readers may keep pointers
 * to them without the lock.
 *
 * Reads stream: fixed zstd buffers and one frame at a time, its buffer
 * growing with the bytes that arrive rather than the length claimed (the
 * validator does keep a copy of each Directory yielded). Each frame's
 * digest is checked by a root-to-leaves closure validator before it is
 * decoded; damage of any kind (bad zstd data, truncation, unexpected
 * digests, undecodable or non-canonical bytes, a closure that ends
 * incomplete) is -EBADMSG naming the root. */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <zstd.h>

#include <kiln/castore/digest_map.h>

#include "backends.h"

#define OS_FRAME_LIMIT 1048576000u
#define OS_READ_CHUNK  (64 * 1024)

struct os_dir_service {
        struct kiln_directory_service base;
        int base_fd; /* objectstore+file, else -1 */
        char *base_path;
        pthread_rwlock_t lock;          /* objectstore+memory */
        struct kiln_digest_map objects; /* root -> struct kiln_buf * (object bytes) */
};

/* "dirs/b3/abcd/abcd…" */
#define OS_SHARD_FMT "dirs/b3/%.4s"
static void os_object_path(const struct kiln_digest *d, char shard[16], char name[80])
{
        char hex[KILN_DIGEST_HEX_BUFSZ];
        kiln_digest_to_hex(d, hex);
        snprintf(shard, 16, OS_SHARD_FMT, hex);
        snprintf(name, 80, OS_SHARD_FMT "/%s", hex, hex);
}

/* --- object access --- */

/* Where an object's bytes come from: an open file or a memory buffer. */
struct os_source {
        int fd;
        const uint8_t *mem;
        size_t mem_len, mem_pos;
};

/* 1 with *ret open, 0 when absent. */
static int os_object_open(struct os_dir_service *o, const struct kiln_digest *d,
                          struct os_source *ret, struct kiln_error **err)
{
        *ret = (struct os_source){.fd = -1};
        if (o->base_fd < 0) {
                pthread_rwlock_rdlock(&o->lock);
                const struct kiln_buf *b = kiln_digest_map_get(&o->objects, d);
                pthread_rwlock_unlock(&o->lock);
                if (!b)
                        return 0;
                ret->mem = b->data;
                ret->mem_len = b->len;
                return 1;
        }
        char shard[16], name[80];
        os_object_path(d, shard, name);
        int fd = openat(o->base_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                return kiln_error_errno(err, errno, "open '%s/%s'", o->base_path, name);
        }
        ret->fd = fd;
        return 1;
}

static ssize_t os_source_read(struct os_source *src, void *buf, size_t n)
{
        if (src->fd >= 0)
                return kiln_read_full(src->fd, buf, n);
        size_t k = KILN_MIN(n, src->mem_len - src->mem_pos);
        if (k)
                memcpy(buf, src->mem + src->mem_pos, k);
        src->mem_pos += k;
        return (ssize_t)k;
}

static void os_source_done(struct os_source *src)
{
        if (src->fd >= 0)
                close(src->fd);
        src->fd = -1;
}

static bool os_object_exists(struct os_dir_service *o, const struct kiln_digest *d)
{
        if (o->base_fd < 0) {
                pthread_rwlock_rdlock(&o->lock);
                bool found = kiln_digest_map_get(&o->objects, d) != NULL;
                pthread_rwlock_unlock(&o->lock);
                return found;
        }
        char shard[16], name[80];
        struct stat st;
        os_object_path(d, shard, name);
        return fstatat(o->base_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int mkdirat_p(int dfd, const char *rel, const char *base, struct kiln_error **err)
{
        _cleanup_free_ char *p = kiln_strdup(rel);
        for (char *s = p;; s++) {
                if (*s != '/' && *s != '\0')
                        continue;
                char saved = *s;
                *s = '\0';
                if (mkdirat(dfd, p, 0755) < 0 && errno != EEXIST)
                        return kiln_error_errno(err, errno, "create directory '%s/%s'", base, p);
                *s = saved;
                if (!saved)
                        return 0;
        }
}

static atomic_uint os_tmp_counter;

/* Publishes a file object: temp file, fsync, rename unless present, fsync
 * of the directory. */
static int os_file_publish(struct os_dir_service *o, const struct kiln_digest *d,
                           const struct kiln_buf *bytes, struct kiln_error **err)
{
        char shard[16], name[80];
        os_object_path(d, shard, name);
        const char *leaf = name + strlen(shard) + 1;
        int r = mkdirat_p(o->base_fd, shard, o->base_path, err);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = openat(o->base_fd, shard, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return kiln_error_errno(err, errno, "open '%s/%s'", o->base_path, shard);

        char tmp[128];
        _cleanup_close_ int fd = -1;
        for (int tries = 0; fd < 0; tries++) {
                snprintf(tmp, sizeof(tmp), ".%.16s.%d.%u.tmp", leaf, (int)getpid(),
                         atomic_fetch_add(&os_tmp_counter, 1));
                fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (fd < 0 && (errno != EEXIST || tries > 100))
                        return kiln_error_errno(err, errno, "create '%s/%s/%s'", o->base_path,
                                                shard, tmp);
        }
        r = kiln_write_all(fd, bytes->data, bytes->len);
        if (r < 0) {
                r = kiln_error_errno(err, -r, "write '%s/%s/%s'", o->base_path, shard, tmp);
                goto fail;
        }
        if (fsync(fd) < 0) {
                r = kiln_error_errno(err, errno, "fsync '%s/%s/%s'", o->base_path, shard, tmp);
                goto fail;
        }
        close(TAKE_FD(fd));
        if (renameat2(dfd, tmp, dfd, leaf, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST) {
                        /* Someone else published the same closure first. */
                        unlinkat(dfd, tmp, 0);
                        return 0;
                }
                if ((errno != EINVAL && errno != ENOSYS) || renameat(dfd, tmp, dfd, leaf) < 0) {
                        r = kiln_error_errno(err, errno, "rename to '%s/%s'", o->base_path, name);
                        goto fail;
                }
        }
        if (fsync(dfd) < 0)
                return kiln_error_errno(err, errno, "fsync '%s/%s'", o->base_path, shard);
        return 0;

fail:
        unlinkat(dfd, tmp, 0);
        return r;
}

static void free_buf(void *p)
{
        kiln_buf_done(p);
        free(p);
}

static void free_bufp(struct kiln_buf **p)
{
        if (*p)
                free_buf(*p);
}

/* Encodes and compresses the closure (root first, breadth-first) and stores
 * it under the root's digest unless an object is there already. */
static int os_write_closure(struct os_dir_service *o, const struct kiln_directory *const *dirs,
                            const struct kiln_digest *digests, size_t n, struct kiln_error **err)
{
        if (os_object_exists(o, &digests[0]))
                return 0;

        struct kiln_buf raw = KILN_BUF_INIT;
        _cleanup_(free_bufp) struct kiln_buf *out = kiln_calloc(1, sizeof(*out));
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        if (!cctx)
                abort();
        int r = 0;
        for (size_t i = 0; i <= n; i++) {
                ZSTD_EndDirective mode = i == n ? ZSTD_e_end : ZSTD_e_continue;
                kiln_buf_clear(&raw);
                if (i < n) {
                        kiln_buf_append(&raw, "\0\0\0\0", 4);
                        kiln_directory_encode(dirs[i], &raw);
                        size_t len = raw.len - 4;
                        if (len > OS_FRAME_LIMIT) {
                                r = kiln_error_set(err, EINVAL,
                                                   "directory %s is %zu bytes, over the object "
                                                   "store's limit of %u",
                                                   KILN_DIGEST_B64(&digests[i]), len,
                                                   OS_FRAME_LIMIT);
                                break;
                        }
                        raw.data[0] = (uint8_t)(len >> 24);
                        raw.data[1] = (uint8_t)(len >> 16);
                        raw.data[2] = (uint8_t)(len >> 8);
                        raw.data[3] = (uint8_t)len;
                }
                ZSTD_inBuffer in = {raw.data, raw.len, 0};
                size_t left;
                do {
                        kiln_buf_reserve(out, ZSTD_CStreamOutSize());
                        ZSTD_outBuffer ob = {out->data + out->len, out->cap - out->len, 0};
                        left = ZSTD_compressStream2(cctx, &ob, &in, mode);
                        if (ZSTD_isError(left)) {
                                r = kiln_error_set(err, EIO, "zstd compression: %s",
                                                   ZSTD_getErrorName(left));
                                break;
                        }
                        out->len += ob.pos;
                } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
                if (r < 0)
                        break;
        }
        ZSTD_freeCCtx(cctx);
        kiln_buf_done(&raw);
        if (r < 0)
                return r;

        if (o->base_fd >= 0)
                return os_file_publish(o, &digests[0], out, err);
        pthread_rwlock_wrlock(&o->lock);
        if (!kiln_digest_map_get(&o->objects, &digests[0]))
                kiln_digest_map_put(&o->objects, &digests[0], TAKE_PTR(out));
        pthread_rwlock_unlock(&o->lock);
        return 0;
}

/* --- reading --- */

struct os_stream {
        struct kiln_directory_stream base;
        struct kiln_digest root;
        bool found, done, failed;
        struct os_source src;
        ZSTD_DStream *zds;
        uint8_t *in;
        ZSTD_inBuffer inb;
        bool in_eof;
        uint8_t *out;
        size_t out_cap, out_pos, out_len;
        bool out_full;    /* the last call filled out: zstd may hold more */
        size_t zstd_left; /* last ZSTD_decompressStream result: 0 at a frame end */
        struct kiln_closure *closure;
        struct kiln_buf frame, scratch;
        size_t n_frames;
};

_printf_(3, 4) static int os_corrupt(struct os_stream *st, struct kiln_error **err, const char *fmt,
                                     ...)
{
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *what = NULL;
        if (vasprintf(&what, fmt, ap) < 0)
                abort();
        va_end(ap);
        st->failed = true;
        return kiln_error_set(err, EBADMSG, "directory %s: stored closure is corrupt: %s",
                              KILN_DIGEST_B64(&st->root), what);
}

/* Makes decompressed bytes available: 1, or 0 at the end of the object. */
static int os_stream_fill(struct os_stream *st, struct kiln_error **err)
{
        while (st->out_pos == st->out_len) {
                if (st->inb.pos == st->inb.size && !st->out_full) {
                        if (st->in_eof)
                                return 0;
                        ssize_t n = os_source_read(&st->src, st->in, OS_READ_CHUNK);
                        if (n < 0) {
                                st->failed = true;
                                return kiln_error_errno(err, (int)-n, "directory %s: read object",
                                                        KILN_DIGEST_B64(&st->root));
                        }
                        if (n == 0) {
                                st->in_eof = true;
                                continue;
                        }
                        st->inb = (ZSTD_inBuffer){st->in, (size_t)n, 0};
                }
                ZSTD_outBuffer ob = {st->out, st->out_cap, 0};
                size_t ret = ZSTD_decompressStream(st->zds, &ob, &st->inb);
                if (ZSTD_isError(ret))
                        return os_corrupt(st, err, "zstd: %s", ZSTD_getErrorName(ret));
                st->zstd_left = ret;
                st->out_full = ob.pos == ob.size;
                st->out_pos = 0;
                st->out_len = ob.pos;
        }
        return 1;
}

/* Appends up to n decompressed bytes to b; returns how many came (fewer
 * only at the end of the object). */
static ssize_t os_stream_read(struct os_stream *st, struct kiln_buf *b, size_t n,
                              struct kiln_error **err)
{
        size_t got = 0;
        while (got < n) {
                int r = os_stream_fill(st, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                size_t k = KILN_MIN(n - got, st->out_len - st->out_pos);
                kiln_buf_append(b, st->out + st->out_pos, k);
                st->out_pos += k;
                got += k;
        }
        return (ssize_t)got;
}

/* Reads the next frame into st->frame: 1, 0 at a clean end, < 0. */
static int os_stream_frame(struct os_stream *st, struct kiln_error **err)
{
        kiln_buf_clear(&st->frame);
        ssize_t got = os_stream_read(st, &st->frame, 4, err);
        if (got < 0)
                return (int)got;
        if (got == 0) {
                if (st->zstd_left != 0)
                        return os_corrupt(st, err, "truncated zstd data");
                return 0;
        }
        if (got < 4)
                return os_corrupt(st, err, "truncated frame header");
        const uint8_t *h = st->frame.data;
        uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
        if (len > OS_FRAME_LIMIT)
                return os_corrupt(st, err, "frame of %" PRIu32 " bytes exceeds the limit of %u",
                                  len, OS_FRAME_LIMIT);
        kiln_buf_clear(&st->frame);
        /* Grow with the data that actually arrives, not with the claimed length. */
        for (size_t left = len; left > 0;) {
                size_t step = KILN_MIN(left, (size_t)1 << 20);
                got = os_stream_read(st, &st->frame, step, err);
                if (got < 0)
                        return (int)got;
                if ((size_t)got < step)
                        return os_corrupt(st, err, "truncated frame %zu", st->n_frames + 1);
                left -= step;
        }
        st->n_frames++;
        return 1;
}

static int os_stream_next(struct kiln_directory_stream *s, struct kiln_directory *ret,
                          struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct os_stream *st = (struct os_stream *)s;
        if (st->failed)
                return kiln_error_set(err, EBADMSG, "directory %s: stream failed earlier",
                                      KILN_DIGEST_B64(&st->root));
        if (!st->found || st->done)
                return 0;
        for (;;) {
                int r = os_stream_frame(st, err);
                if (r < 0)
                        return r;
                if (r == 0) {
                        struct kiln_error *e = NULL;
                        if (st->n_frames == 0)
                                return os_corrupt(st, err, "no directories");
                        if (kiln_closure_finish(st->closure, NULL, &e) < 0) {
                                r = os_corrupt(st, err, "%s", kiln_error_msg(e));
                                kiln_error_free(e);
                                return r;
                        }
                        st->done = true;
                        os_source_done(&st->src);
                        return 0;
                }

                /* Check the digest before decoding anything. */
                struct kiln_digest d;
                kiln_digest_of(st->frame.data, st->frame.len, &d);
                struct kiln_error *e = NULL;
                r = kiln_closure_want(st->closure, &d, &e);
                if (r < 0) {
                        kiln_error_free(e);
                        return os_corrupt(st, err, "frame %zu has unexpected digest %s",
                                          st->n_frames, KILN_DIGEST_B64(&d));
                }
                if (r == 0)
                        continue; /* a duplicate: each Directory is yielded once */

                struct kiln_directory dir;
                r = kiln_directory_decode(st->frame.data, st->frame.len, &dir, &e);
                if (r < 0) {
                        r = os_corrupt(st, err, "directory %s: %s", KILN_DIGEST_B64(&d),
                                       kiln_error_msg(e));
                        kiln_error_free(e);
                        return r;
                }
                kiln_buf_clear(&st->scratch);
                kiln_directory_encode(&dir, &st->scratch);
                if (st->scratch.len != st->frame.len ||
                    (st->frame.len && memcmp(st->scratch.data, st->frame.data, st->frame.len))) {
                        kiln_directory_done(&dir);
                        return os_corrupt(st, err, "directory %s is not canonically encoded",
                                          KILN_DIGEST_B64(&d));
                }
                r = kiln_closure_add(st->closure, &dir, NULL, &e);
                if (r < 0) {
                        kiln_directory_done(&dir);
                        r = os_corrupt(st, err, "directory %s: %s", KILN_DIGEST_B64(&d),
                                       kiln_error_msg(e));
                        kiln_error_free(e);
                        return r;
                }
                *ret = dir;
                if (ret_digest)
                        *ret_digest = d;
                return 1;
        }
}

static void os_stream_free(struct kiln_directory_stream *s)
{
        struct os_stream *st = (struct os_stream *)s;
        os_source_done(&st->src);
        ZSTD_freeDStream(st->zds);
        free(st->in);
        free(st->out);
        kiln_closure_free(st->closure);
        kiln_buf_done(&st->frame);
        kiln_buf_done(&st->scratch);
        free(st);
}

static const struct kiln_directory_stream_ops os_stream_ops = {
    .next = os_stream_next,
    .free = os_stream_free,
};

static int os_dir_get_recursive(struct kiln_directory_service *s, const struct kiln_digest *root,
                                struct kiln_directory_stream **ret, struct kiln_error **err)
{
        struct os_dir_service *o = (struct os_dir_service *)s;
        struct os_stream *st = kiln_calloc(1, sizeof(*st));
        st->base.ops = &os_stream_ops;
        st->root = *root;
        int r = os_object_open(o, root, &st->src, err);
        if (r < 0) {
                free(st);
                return r;
        }
        st->found = r > 0;
        if (st->found) {
                st->zds = ZSTD_createDStream();
                if (!st->zds)
                        abort();
                ZSTD_initDStream(st->zds);
                st->in = kiln_malloc(OS_READ_CHUNK);
                st->out_cap = ZSTD_DStreamOutSize();
                st->out = kiln_malloc(st->out_cap);
                st->zstd_left = 1; /* an empty object is not a complete zstd stream */
                st->closure = kiln_closure_new(KILN_CLOSURE_ROOT_TO_LEAVES, root);
        }
        *ret = &st->base;
        return 0;
}

/* Only roots are stored: get is the first element of get_recursive. */
static int os_dir_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                      struct kiln_directory *ret, struct kiln_error **err)
{
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        int r = os_dir_get_recursive(s, d, &st, err);
        if (r < 0)
                return r;
        return os_stream_next(st, ret, NULL, err);
}

/* --- writing --- */

static int os_dir_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                      struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct os_dir_service *o = (struct os_dir_service *)s;
        for (size_t i = 0; i < dir->n; i++)
                if (dir->nodes[i].kind == KILN_NODE_DIRECTORY)
                        return kiln_error_set(err, EINVAL,
                                              "only put_multiple_start is supported for "
                                              "directories with children");
        struct kiln_digest d;
        kiln_directory_digest(dir, NULL, &d);
        int r = os_write_closure(o, &dir, &d, 1, err);
        if (r < 0)
                return r;
        *ret_digest = d;
        return 0;
}

/* The object holds the closure root first, breadth-first. */
static int os_dir_put_closure(struct kiln_directory_service *s,
                              const struct kiln_directory **dirs,
                              const struct kiln_digest *digests, size_t n,
                              struct kiln_error **err)
{
        return os_write_closure((struct os_dir_service *)s, dirs, digests, n, err);
}

static void os_dir_free(struct kiln_directory_service *s)
{
        struct os_dir_service *o = (struct os_dir_service *)s;
        if (o->base_fd >= 0)
                close(o->base_fd);
        free(o->base_path);
        kiln_digest_map_done(&o->objects, free_buf);
        pthread_rwlock_destroy(&o->lock);
        free(o);
}

static const struct kiln_directory_service_ops os_dir_ops = {
    .name = "objectstore",
    .get = os_dir_get,
    .put = os_dir_put,
    .get_recursive = os_dir_get_recursive,
    .put_closure = os_dir_put_closure,
    .put_closure_order = KILN_CLOSURE_ROOT_TO_LEAVES,
    .free = os_dir_free,
};

/* --- construction --- */

static int os_open_base(const char *path, int *ret, struct kiln_error **err)
{
        /* Create the base if needed; a read-only one that exists is fine. */
        _cleanup_close_ int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return kiln_error_errno(err, errno, "open '/'");
        const char *rel = path + strspn(path, "/");
        if (*rel) {
                struct kiln_error *e = NULL;
                int r = mkdirat_p(root, rel, "", &e);
                kiln_error_free(e);
                (void)r;
        }
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return kiln_error_errno(err, errno, "open object store directory '%s'", path);
        *ret = fd;
        return 0;
}

#define OS_URL_HINT "use objectstore+file:///abs/path or objectstore+memory://"

int kiln_directory_objectstore_new(const struct kiln_url *u, struct kiln_directory_service **ret,
                                   struct kiln_error **err)
{
        int r;
        if (!u->sub)
                return kiln_error_set(err, EINVAL, "invalid URL: objectstore needs a store, %s",
                                      OS_URL_HINT);
        bool file = !strcmp(u->sub, "file");
        if (!file && strcmp(u->sub, "memory"))
                return kiln_error_set(err, ENOTSUP,
                                      "invalid URL: objectstore+%s is not supported by kiln; %s",
                                      u->sub, OS_URL_HINT);
        if (u->host || u->port)
                return kiln_error_set(err, EINVAL, "invalid URL: objectstore+%s takes no host; %s",
                                      u->sub, OS_URL_HINT);
        if (file && u->path[0] != '/')
                return kiln_error_set(err, EINVAL,
                                      "invalid URL: objectstore+file needs an absolute path; %s",
                                      OS_URL_HINT);
        if (!file && u->path[0] && strcmp(u->path, "/"))
                return kiln_error_set(
                    err, EINVAL, "invalid URL: objectstore+memory takes no path; %s", OS_URL_HINT);
        static const char *const allowed[] = {NULL};
        r = kiln_url_query_check(u, allowed, "objectstore", err);
        if (r < 0)
                return r;

        struct os_dir_service *o = kiln_calloc(1, sizeof(*o));
        o->base.ops = &os_dir_ops;
        o->base_fd = -1;
        pthread_rwlock_init(&o->lock, NULL);
        if (file) {
                o->base_path = kiln_strdup(u->path);
                r = os_open_base(o->base_path, &o->base_fd, err);
                if (r < 0) {
                        os_dir_free(&o->base);
                        return r;
                }
        }
        *ret = &o->base;
        return 0;
}
