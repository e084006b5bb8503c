/* memory://: blobs in process memory. A digest map under a rwlock; stored
 * bytes are immutable and live as long as the service, so readers point into
 * them without copying. Content is hashed on the way in, so reads need no
 * second check. No finer chunking (chunks() is has() plus an empty list). */
#include <pthread.h>

#include <kiln/blake3/blake3.h>
#include <kiln/castore/digest_map.h>

#include "backends.h"

struct mem_blob {
        uint8_t *data;
        size_t len;
};

struct mem_blob_service {
        struct kiln_blob_service base;
        pthread_rwlock_t lock;
        struct kiln_digest_map blobs;
};

struct mem_blob_reader {
        struct kiln_blob_reader base;
        const struct mem_blob *blob;
};

struct mem_blob_writer {
        struct kiln_blob_writer base;
        struct mem_blob_service *svc;
        struct kiln_blake3 hasher;
        struct kiln_buf buf;
};

static const struct mem_blob *lookup(struct mem_blob_service *m, const struct kiln_digest *d)
{
        pthread_rwlock_rdlock(&m->lock);
        const struct mem_blob *b = kiln_digest_map_get(&m->blobs, d);
        pthread_rwlock_unlock(&m->lock);
        return b;
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
        (void)err;
        struct mem_blob_reader *mr = (struct mem_blob_reader *)r;
        size_t left = mr->blob->len - (size_t)r->pos;
        size_t take = KILN_MIN(n, left);
        memcpy(buf, mr->blob->data + r->pos, take);
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
        r->blob = b;
        *ret = &r->base;
        return 1;
}

static int mem_writer_write(struct kiln_blob_writer *w, const void *p, size_t n,
                            struct kiln_error **err)
{
        (void)err;
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        kiln_blake3_update(&mw->hasher, p, n);
        kiln_buf_append(&mw->buf, p, n);
        return 0;
}

static int mem_writer_close(struct kiln_blob_writer *w, struct kiln_digest *ret,
                            struct kiln_error **err)
{
        (void)err;
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        kiln_blake3_final(&mw->hasher, ret->b);
        struct mem_blob_service *m = mw->svc;
        pthread_rwlock_wrlock(&m->lock);
        if (!kiln_digest_map_get(&m->blobs, ret)) {
                struct mem_blob *b = kiln_malloc(sizeof(*b));
                b->data = kiln_buf_steal(&mw->buf, &b->len);
                kiln_digest_map_put(&m->blobs, ret, b);
        }
        pthread_rwlock_unlock(&m->lock);
        kiln_buf_done(&mw->buf);
        return 0;
}

static void mem_writer_free(struct kiln_blob_writer *w)
{
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
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
        free(b);
}

static void mem_blob_free(struct kiln_blob_service *s)
{
        struct mem_blob_service *m = (struct mem_blob_service *)s;
        kiln_digest_map_done(&m->blobs, free_blob);
        pthread_rwlock_destroy(&m->lock);
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
        *ret = &m->base;
        return 0;
}
