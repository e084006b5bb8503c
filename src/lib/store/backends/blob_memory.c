/* memory://: blobs in process memory. A digest map under a rwlock; stored
 * bytes are immutable and live as long as the service. Content is hashed on
 * the way in, so reads need no second check. No finer chunking (chunks() is
 * has() plus an empty list).
 *
 * Small blobs live on the heap. Bigger ones live in one memfd, in extents of
 * EXTENT bytes written and read with pwrite/pread: on virtual machines a
 * process's first touch of each fresh page is a dear fault (PLATFORM: about
 * 400 MB/s here), while the kernel fills fresh shmem pages at several GB/s.
 * Extents of blobs that were already stored, or whose upload failed, are
 * reused by the next writer. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kiln/blake3/blake3.h>
#include <kiln/castore/digest_map.h>

#include "backends.h"

#define STAGE ((size_t)256 << 10) /* blobs up to this size stay on the heap */
#define EXTENT ((uint64_t)1 << 20)  /* a multiple of STAGE */

struct mem_blob {
        size_t len;
        uint8_t *data;     /* heap bytes, or NULL when in extents */
        uint64_t *extents; /* arena offsets of the len / EXTENT rounded up extents */
};

struct mem_blob_service {
        struct kiln_blob_service base;
        pthread_rwlock_t lock;
        struct kiln_digest_map blobs;

        pthread_mutex_t arena_lock;
        int arena_fd; /* -1 until the first big blob */
        uint64_t arena_end;
        uint64_t *free_ext;
        size_t n_free, cap_free;
};

struct mem_blob_reader {
        struct kiln_blob_reader base;
        struct mem_blob_service *svc;
        const struct mem_blob *blob;
};

struct mem_blob_writer {
        struct kiln_blob_writer base;
        struct mem_blob_service *svc;
        struct kiln_blake3 hasher;
        struct kiln_buf buf; /* bytes not yet hashed and stored */
        size_t len;          /* bytes in extents */
        uint64_t *extents;
        size_t n_ext, cap_ext;
};

static const struct mem_blob *lookup(struct mem_blob_service *m, const struct kiln_digest *d)
{
        pthread_rwlock_rdlock(&m->lock);
        const struct mem_blob *b = kiln_digest_map_get(&m->blobs, d);
        pthread_rwlock_unlock(&m->lock);
        return b;
}

static int extent_new(struct mem_blob_service *m, uint64_t *ret, struct kiln_error **err)
{
        int r = 0;
        pthread_mutex_lock(&m->arena_lock);
        if (m->n_free) {
                *ret = m->free_ext[--m->n_free];
        } else {
                if (m->arena_fd < 0)
                        m->arena_fd = memfd_create("kiln-memory-blobs", MFD_CLOEXEC);
                if (m->arena_fd < 0) {
                        r = kiln_error_errno(err, errno, "memory:// store: memfd_create");
                } else {
                        *ret = m->arena_end;
                        m->arena_end += EXTENT;
                }
        }
        pthread_mutex_unlock(&m->arena_lock);
        return r;
}

static void extents_release(struct mem_blob_service *m, const uint64_t *ext, size_t n)
{
        if (!n)
                return;
        pthread_mutex_lock(&m->arena_lock);
        if (m->n_free + n > m->cap_free) {
                m->cap_free = KILN_MAX(m->n_free + n, 2 * m->cap_free);
                m->free_ext = kiln_reallocarray(m->free_ext, m->cap_free, sizeof(*m->free_ext));
        }
        memcpy(m->free_ext + m->n_free, ext, n * sizeof(*ext));
        m->n_free += n;
        /* Give the pages back; the extent keeps its place in the arena. */
        for (size_t i = 0; i < n; i++)
                (void)fallocate(m->arena_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)ext[i], (off_t)EXTENT);
        pthread_mutex_unlock(&m->arena_lock);
}

static int mem_blob_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                        struct kiln_error **err)
{
        (void)err;
        return lookup((struct mem_blob_service *)s, d) ? 1 : 0;
}

static ssize_t mem_reader_read(struct kiln_blob_reader *r, void *buf, size_t n,
                               struct kiln_error **err)
{
        struct mem_blob_reader *mr = (struct mem_blob_reader *)r;
        const struct mem_blob *b = mr->blob;
        size_t take = KILN_MIN(n, b->len - (size_t)r->pos);
        if (b->data) {
                memcpy(buf, b->data + r->pos, take);
                return (ssize_t)take;
        }
        for (size_t done = 0; done < take;) {
                uint64_t pos = r->pos + done;
                size_t k = (size_t)KILN_MIN((uint64_t)(take - done), EXTENT - pos % EXTENT);
                ssize_t got = pread(mr->svc->arena_fd, (uint8_t *)buf + done, k,
                                    (off_t)(b->extents[pos / EXTENT] + pos % EXTENT));
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        return kiln_error_errno(err, got < 0 ? errno : EIO,
                                                "memory:// store: reading a blob");
                done += (size_t)got;
        }
        return (ssize_t)take;
}

static int mem_reader_seek(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err)
{
        (void)r, (void)pos, (void)err;
        return 0; /* the front end keeps the position */
}

static void mem_reader_free(struct kiln_blob_reader *r)
{
        free(r);
}

static const struct kiln_blob_reader_ops mem_reader_ops = {
        .read = mem_reader_read,
        .seek = mem_reader_seek,
        .free = mem_reader_free,
};

static int mem_blob_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                              struct kiln_blob_reader **ret, struct kiln_error **err)
{
        (void)err;
        const struct mem_blob *b = lookup((struct mem_blob_service *)s, d);
        if (!b)
                return 0;
        struct mem_blob_reader *r = kiln_calloc(1, sizeof(*r));
        r->base.ops = &mem_reader_ops;
        r->base.size = b->len;
        r->svc = (struct mem_blob_service *)s;
        r->blob = b;
        *ret = &r->base;
        return 1;
}

/* Appends to the extents, taking new ones at each EXTENT boundary. */
static int extents_write(struct mem_blob_writer *mw, const uint8_t *p, size_t n,
                         struct kiln_error **err)
{
        while (n) {
                if (mw->len % EXTENT == 0) {
                        if (mw->n_ext == mw->cap_ext) {
                                mw->cap_ext = mw->cap_ext ? 2 * mw->cap_ext : 16;
                                mw->extents = kiln_reallocarray(mw->extents, mw->cap_ext,
                                                                sizeof(*mw->extents));
                        }
                        int r = extent_new(mw->svc, &mw->extents[mw->n_ext], err);
                        if (r < 0)
                                return r;
                        mw->n_ext++;
                }
                uint64_t in = mw->len % EXTENT;
                size_t k = (size_t)KILN_MIN((uint64_t)n, EXTENT - in);
                ssize_t put = pwrite(mw->svc->arena_fd, p, k,
                                     (off_t)(mw->extents[mw->n_ext - 1] + in));
                if (put < 0 && errno == EINTR)
                        continue;
                if (put <= 0)
                        return kiln_error_errno(err, put < 0 ? errno : EIO,
                                                "memory:// store: storing a blob");
                p += put;
                n -= (size_t)put;
                mw->len += (size_t)put;
        }
        return 0;
}

/* Input is gathered into STAGE-sized, chunk-aligned runs before it is hashed
 * and stored: network slices are small and unaligned, which would keep the
 * hasher off its widest path and cost a syscall each. */
static int flush_stage(struct mem_blob_writer *mw, struct kiln_error **err)
{
        kiln_blake3_update(&mw->hasher, mw->buf.data, mw->buf.len);
        int r = extents_write(mw, mw->buf.data, mw->buf.len, err);
        kiln_buf_clear(&mw->buf);
        return r;
}

static int mem_writer_write(struct kiln_blob_writer *w, const void *p, size_t n,
                            struct kiln_error **err)
{
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        const uint8_t *in = p;
        while (n) {
                size_t k = KILN_MIN(n, STAGE - mw->buf.len);
                kiln_buf_append(&mw->buf, in, k);
                in += k;
                n -= k;
                if (mw->buf.len == STAGE) {
                        int r = flush_stage(mw, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int mem_writer_close(struct kiln_blob_writer *w, struct kiln_digest *ret,
                            struct kiln_error **err)
{
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        if (mw->n_ext && mw->buf.len) {
                int r = flush_stage(mw, err);
                if (r < 0)
                        return r;
        } else {
                kiln_blake3_update(&mw->hasher, mw->buf.data, mw->buf.len);
        }
        kiln_blake3_final(&mw->hasher, ret->b);
        struct mem_blob_service *m = mw->svc;
        pthread_rwlock_wrlock(&m->lock);
        if (!kiln_digest_map_get(&m->blobs, ret)) {
                struct mem_blob *b = kiln_calloc(1, sizeof(*b));
                b->len = mw->len + mw->buf.len;
                if (mw->n_ext) {
                        b->extents = TAKE_PTR(mw->extents);
                        mw->n_ext = 0;
                } else {
                        b->data = kiln_buf_steal(&mw->buf, NULL);
                }
                kiln_digest_map_put(&m->blobs, ret, b);
        }
        pthread_rwlock_unlock(&m->lock);
        return 0;
}

static void mem_writer_free(struct kiln_blob_writer *w)
{
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        extents_release(mw->svc, mw->extents, mw->n_ext); /* not stored: reuse them */
        free(mw->extents);
        kiln_buf_done(&mw->buf);
        free(mw);
}

static const struct kiln_blob_writer_ops mem_writer_ops = {
        .write = mem_writer_write,
        .close = mem_writer_close,
        .free = mem_writer_free,
};

static int mem_blob_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                               struct kiln_error **err)
{
        (void)err;
        struct mem_blob_writer *w = kiln_calloc(1, sizeof(*w));
        w->base.ops = &mem_writer_ops;
        w->svc = (struct mem_blob_service *)s;
        kiln_blake3_init(&w->hasher);
        *ret = &w->base;
        return 0;
}

static void free_blob(void *p)
{
        struct mem_blob *b = p;
        free(b->data);
        free(b->extents);
        free(b);
}

static void mem_blob_free(struct kiln_blob_service *s)
{
        struct mem_blob_service *m = (struct mem_blob_service *)s;
        kiln_digest_map_done(&m->blobs, free_blob);
        pthread_rwlock_destroy(&m->lock);
        pthread_mutex_destroy(&m->arena_lock);
        if (m->arena_fd >= 0)
                close(m->arena_fd);
        free(m->free_ext);
        free(m);
}

static const struct kiln_blob_service_ops mem_blob_ops = {
        .name = "memory",
        .has = mem_blob_has,
        .open_read = mem_blob_open_read,
        .open_write = mem_blob_open_write,
        .free = mem_blob_free,
};

int kiln_blob_memory_new(const struct kiln_url *u, struct kiln_blob_service **ret,
                         struct kiln_error **err)
{
        (void)u, (void)err;
        struct mem_blob_service *m = kiln_calloc(1, sizeof(*m));
        m->base.ops = &mem_blob_ops;
        pthread_rwlock_init(&m->lock, NULL);
        pthread_mutex_init(&m->arena_lock, NULL);
        m->arena_fd = -1;
        *ret = &m->base;
        return 0;
}
