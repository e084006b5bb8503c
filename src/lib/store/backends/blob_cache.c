/* cache+<far>?near=<near>: a read-through blob cache. Reads look in the near
 * store (local, fast) first; a blob found only in the far store (a shared
 * remote castore) is copied into the near store before it is read from
 * there, so a builder fetches each input once. Writes go to both, the far
 * store first: it is the one others read.
 *
 * A copy streams the far blob into a near writer while hashing it, and
 * commits the near writer only when the whole blob arrived and its BLAKE3
 * digest is the one asked for: a far store that sends other bytes, or
 * fails half-way, leaves nothing in the near store (the writer is aborted).
 *
 * Locking: the near and far stores lock for themselves. One mutex guards
 * the set of digests being copied; a reader of a blob being copied waits on
 * the condition variable until that copy ends, then looks in the near store
 * again (and copies it itself if the first copy failed), so concurrent
 * readers of one missing blob fetch it once. */
#include <pthread.h>

#include <kiln/blake3/blake3.h>
#include <kiln/castore/digest_map.h>

#include "backends.h"

#define COPY_BUF ((size_t)256 << 10)

struct cache_blob_service {
        struct kiln_blob_service base;
        struct kiln_blob_service *near, *far;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct kiln_digest_map copying; /* digest -> (void *)1 */
};

/* Copies blob d from far to near, verified. 1 = copied, 0 = absent in far. */
static int copy_blob(struct cache_blob_service *c, const struct kiln_digest *d,
                     struct kiln_error **err)
{
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *rd = NULL;
        int r = kiln_blob_open_read(c->far, d, &rd, err);
        if (r <= 0)
                return r;
        _cleanup_(kiln_blob_writer_freep) struct kiln_blob_writer *w = NULL;
        r = kiln_blob_open_write(c->near, &w, err);
        if (r < 0)
                return r;
        _cleanup_free_ uint8_t *buf = kiln_malloc(COPY_BUF);
        struct kiln_blake3 h;
        kiln_blake3_init(&h);
        for (;;) {
                ssize_t n = kiln_blob_reader_read(rd, buf, COPY_BUF, err);
                if (n < 0)
                        return kiln_error_prefix(err, (int)n, "blob %s from the far store",
                                                 KILN_DIGEST_B64(d));
                if (n == 0)
                        break;
                kiln_blake3_update(&h, buf, (size_t)n);
                r = kiln_blob_writer_write(w, buf, (size_t)n, err);
                if (r < 0)
                        return r;
        }
        struct kiln_digest got;
        kiln_blake3_final(&h, got.b);
        if (!kiln_digest_eq(&got, d))
                return kiln_error_set(err, EBADMSG,
                                      "blob %s from the far store (%s) has digest %s: not cached",
                                      KILN_DIGEST_B64(d), kiln_blob_service_name(c->far),
                                      KILN_DIGEST_B64(&got));
        struct kiln_digest stored;
        r = kiln_blob_writer_close(w, &stored, err);
        if (r < 0)
                return r;
        if (!kiln_digest_eq(&stored, d))
                return kiln_error_set(err, EIO, "near store stored blob %s as %s",
                                      KILN_DIGEST_B64(d), KILN_DIGEST_B64(&stored));
        return 1;
}

/* Makes d present in the near store if the far store has it: 1 = in near
 * now, 0 = in neither. One copy per digest at a time. */
static int ensure(struct cache_blob_service *c, const struct kiln_digest *d,
                  struct kiln_error **err)
{
        pthread_mutex_lock(&c->lock);
        while (kiln_digest_map_get(&c->copying, d))
                pthread_cond_wait(&c->cond, &c->lock);
        kiln_digest_map_put(&c->copying, d, (void *)1);
        pthread_mutex_unlock(&c->lock);

        int r = kiln_blob_has(c->near, d, err); /* copied while we waited? */
        if (r == 0)
                r = copy_blob(c, d, err);

        pthread_mutex_lock(&c->lock);
        kiln_digest_map_remove(&c->copying, d);
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int cache_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                     struct kiln_error **err)
{
        struct cache_blob_service *c = (struct cache_blob_service *)s;
        int r = kiln_blob_has(c->near, d, err);
        return r != 0 ? r : kiln_blob_has(c->far, d, err);
}

static int cache_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                           struct kiln_blob_reader **ret, struct kiln_error **err)
{
        struct cache_blob_service *c = (struct cache_blob_service *)s;
        int r = kiln_blob_open_read(c->near, d, ret, err);
        if (r != 0)
                return r;
        r = ensure(c, d, err);
        if (r <= 0)
                return r;
        r = kiln_blob_open_read(c->near, d, ret, err);
        if (r == 0)
                return kiln_error_set(err, EIO, "blob %s vanished from the near store",
                                      KILN_DIGEST_B64(d));
        return r;
}

static int cache_chunks(struct kiln_blob_service *s, const struct kiln_digest *d,
                        struct kiln_chunk **ret, size_t *ret_n, struct kiln_error **err)
{
        struct cache_blob_service *c = (struct cache_blob_service *)s;
        int r = kiln_blob_has(c->near, d, err);
        if (r == 0)
                r = ensure(c, d, err);
        if (r <= 0)
                return r;
        return kiln_blob_chunks(c->near, d, ret, ret_n, err);
}

static int cache_sync(struct kiln_blob_service *s, struct kiln_error **err)
{
        struct cache_blob_service *c = (struct cache_blob_service *)s;
        int r = kiln_blob_sync(c->far, err);
        return r < 0 ? r : kiln_blob_sync(c->near, err);
}

/* --- writes: to both stores --- */

struct tee_writer {
        struct kiln_blob_writer base;
        struct kiln_blob_writer *far, *near;
};

static int tee_write(struct kiln_blob_writer *w, const void *p, size_t n,
                     struct kiln_error **err)
{
        struct tee_writer *t = (struct tee_writer *)w;
        int r = kiln_blob_writer_write(t->far, p, n, err);
        return r < 0 ? r : kiln_blob_writer_write(t->near, p, n, err);
}

static int tee_close(struct kiln_blob_writer *w, struct kiln_digest *ret,
                     struct kiln_error **err)
{
        struct tee_writer *t = (struct tee_writer *)w;
        struct kiln_digest df, dn;
        int r = kiln_blob_writer_close(t->far, &df, err);
        if (r < 0)
                return r;
        r = kiln_blob_writer_close(t->near, &dn, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "near store");
        if (!kiln_digest_eq(&df, &dn))
                return kiln_error_set(err, EIO, "far store stored blob %s as %s",
                                      KILN_DIGEST_B64(&dn), KILN_DIGEST_B64(&df));
        *ret = dn;
        return 0;
}

static void tee_free(struct kiln_blob_writer *w)
{
        struct tee_writer *t = (struct tee_writer *)w;
        kiln_blob_writer_free(t->far);
        kiln_blob_writer_free(t->near);
        free(t);
}

static const struct kiln_blob_writer_ops tee_writer_ops = {
        .write = tee_write,
        .close = tee_close,
        .free = tee_free,
};

static int cache_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                            struct kiln_error **err)
{
        struct cache_blob_service *c = (struct cache_blob_service *)s;
        struct kiln_blob_writer *far = NULL, *near = NULL;
        int r = kiln_blob_open_write(c->far, &far, err);
        if (r < 0)
                return r;
        r = kiln_blob_open_write(c->near, &near, err);
        if (r < 0) {
                kiln_blob_writer_free(far);
                return r;
        }
        struct tee_writer *t = kiln_calloc(1, sizeof(*t));
        t->base.ops = &tee_writer_ops;
        t->far = far;
        t->near = near;
        *ret = &t->base;
        return 0;
}

static void cache_free(struct kiln_blob_service *s)
{
        struct cache_blob_service *c = (struct cache_blob_service *)s;
        kiln_blob_service_free(c->near);
        kiln_blob_service_free(c->far);
        kiln_digest_map_done(&c->copying, NULL);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static const struct kiln_blob_service_ops cache_blob_ops = {
        .name = "cache",
        .has = cache_has,
        .open_read = cache_open_read,
        .open_write = cache_open_write,
        .chunks = cache_chunks,
        .sync = cache_sync,
        .free = cache_free,
};

struct kiln_blob_service *kiln_blob_cache_over(struct kiln_blob_service *near,
                                               struct kiln_blob_service *far)
{
        struct cache_blob_service *c = kiln_calloc(1, sizeof(*c));
        c->base.ops = &cache_blob_ops;
        c->near = near;
        c->far = far;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        return &c->base;
}
