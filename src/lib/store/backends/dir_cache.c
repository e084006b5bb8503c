/* cache+<far>?near=<near>: a read-through directory cache. A Directory the
 * near store lacks is fetched from the far store with its whole closure
 * (one recursive Get), checked as a closure (every Directory reachable from
 * the root, each verified against its digest by the far store's front end,
 * the sizes consistent), and stored in the near store in one multi-put
 * before it is answered from there. The near store therefore holds only
 * complete closures, and a Directory found there has all of its
 * descendants there too: Get and recursive Get of anything cached are
 * answered locally. Writes go to both stores, the far store first.
 *
 * Locking: as blob_cache.c, one mutex over the set of roots being fetched,
 * so concurrent readers of one missing closure fetch it once. */
#include <pthread.h>

#include <kiln/castore/digest_map.h>

#include "backends.h"

struct cache_dir_service {
        struct kiln_directory_service base;
        struct kiln_directory_service *near, *far;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct kiln_digest_map fetching; /* digest -> (void *)1 */
};

/* Copies the closure of root from far to near: 1 = copied, 0 = absent. */
static int copy_closure(struct cache_dir_service *c, const struct kiln_digest *root,
                        struct kiln_error **err)
{
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        int r = kiln_directory_get_recursive(c->far, root, &st, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_closure_freep) struct kiln_closure *cl =
                kiln_closure_new(KILN_CLOSURE_ROOT_TO_LEAVES, root);
        size_t n = 0;
        for (;; n++) {
                struct kiln_directory dir;
                struct kiln_digest d;
                r = kiln_directory_stream_next(st, &dir, &d, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "closure of %s from the far store",
                                                 KILN_DIGEST_B64(root));
                if (r == 0)
                        break;
                r = kiln_closure_add(cl, &dir, NULL, err);
                kiln_directory_done(&dir);
                if (r < 0)
                        return kiln_error_prefix(err, r, "closure of %s from the far store",
                                                 KILN_DIGEST_B64(root));
        }
        if (n == 0)
                return 0;
        r = kiln_closure_finish(cl, NULL, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "closure of %s from the far store",
                                         KILN_DIGEST_B64(root));
        const struct kiln_directory **dirs;
        size_t m = kiln_closure_drain(cl, KILN_CLOSURE_LEAVES_TO_ROOT, &dirs, NULL);
        _cleanup_(kiln_directory_putter_freep) struct kiln_directory_putter *p = NULL;
        r = kiln_directory_put_multiple_start(c->near, &p, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < m; i++) {
                r = kiln_directory_putter_put(p, dirs[i], err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "near store");
        }
        struct kiln_digest got;
        r = kiln_directory_putter_close(p, &got, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "near store");
        if (!kiln_digest_eq(&got, root))
                return kiln_error_set(err, EIO, "near store stored closure %s as %s",
                                      KILN_DIGEST_B64(root), KILN_DIGEST_B64(&got));
        return 1;
}

/* Whether root is in the near store (an answer of its get() filled into
 * *ret when ret is not NULL): 1, else 0. */
static int near_get(struct cache_dir_service *c, const struct kiln_digest *d,
                    struct kiln_directory *ret, struct kiln_error **err)
{
        struct kiln_directory tmp;
        int r = kiln_directory_get(c->near, d, ret ? ret : &tmp, err);
        if (r > 0 && !ret)
                kiln_directory_done(&tmp);
        return r;
}

/* Makes d's closure present in the near store if the far store has it. */
static int ensure(struct cache_dir_service *c, const struct kiln_digest *d,
                  struct kiln_error **err)
{
        pthread_mutex_lock(&c->lock);
        while (kiln_digest_map_get(&c->fetching, d))
                pthread_cond_wait(&c->cond, &c->lock);
        kiln_digest_map_put(&c->fetching, d, (void *)1);
        pthread_mutex_unlock(&c->lock);

        int r = near_get(c, d, NULL, err); /* fetched while we waited? */
        if (r == 0)
                r = copy_closure(c, d, err);

        pthread_mutex_lock(&c->lock);
        kiln_digest_map_remove(&c->fetching, d);
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int cache_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                     struct kiln_directory *ret, struct kiln_error **err)
{
        struct cache_dir_service *c = (struct cache_dir_service *)s;
        int r = near_get(c, d, ret, err);
        if (r != 0)
                return r;
        r = ensure(c, d, err);
        if (r <= 0)
                return r;
        r = near_get(c, d, ret, err);
        if (r == 0)
                return kiln_error_set(err, EIO, "directory %s vanished from the near store",
                                      KILN_DIGEST_B64(d));
        return r;
}

static int cache_get_recursive(struct kiln_directory_service *s, const struct kiln_digest *root,
                               struct kiln_directory_stream **ret, struct kiln_error **err)
{
        struct cache_dir_service *c = (struct cache_dir_service *)s;
        int r = near_get(c, root, NULL, err);
        if (r == 0)
                r = ensure(c, root, err);
        if (r < 0)
                return r;
        /* absent from both: the near store's (empty) stream */
        return kiln_directory_get_recursive(c->near, root, ret, err);
}

static int cache_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                     struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct cache_dir_service *c = (struct cache_dir_service *)s;
        struct kiln_digest df;
        int r = kiln_directory_put(c->far, dir, &df, err);
        if (r < 0)
                return r;
        r = kiln_directory_put(c->near, dir, ret_digest, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "near store");
        if (!kiln_digest_eq(&df, ret_digest))
                return kiln_error_set(err, EIO, "far store stored directory %s as %s",
                                      KILN_DIGEST_B64(ret_digest), KILN_DIGEST_B64(&df));
        return 0;
}

/* --- multi-put: to both stores --- */

struct tee_putter {
        struct kiln_directory_putter base;
        struct kiln_directory_putter *far, *near;
};

static int tee_put(struct kiln_directory_putter *p, const struct kiln_directory *dir,
                   struct kiln_error **err)
{
        struct tee_putter *t = (struct tee_putter *)p;
        int r = kiln_directory_putter_put(t->far, dir, err);
        return r < 0 ? r : kiln_directory_putter_put(t->near, dir, err);
}

static int tee_close(struct kiln_directory_putter *p, struct kiln_digest *ret_root,
                     struct kiln_error **err)
{
        struct tee_putter *t = (struct tee_putter *)p;
        struct kiln_digest df, dn;
        int r = kiln_directory_putter_close(t->far, &df, err);
        if (r < 0)
                return r;
        r = kiln_directory_putter_close(t->near, &dn, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "near store");
        if (!kiln_digest_eq(&df, &dn))
                return kiln_error_set(err, EIO, "far store stored closure %s as %s",
                                      KILN_DIGEST_B64(&dn), KILN_DIGEST_B64(&df));
        *ret_root = dn;
        return 0;
}

static void tee_free(struct kiln_directory_putter *p)
{
        struct tee_putter *t = (struct tee_putter *)p;
        kiln_directory_putter_free(t->far);
        kiln_directory_putter_free(t->near);
        free(t);
}

static const struct kiln_directory_putter_ops tee_putter_ops = {
        .put = tee_put,
        .close = tee_close,
        .free = tee_free,
};

static int cache_put_multiple_start(struct kiln_directory_service *s,
                                    struct kiln_directory_putter **ret, struct kiln_error **err)
{
        struct cache_dir_service *c = (struct cache_dir_service *)s;
        struct kiln_directory_putter *far = NULL, *near = NULL;
        int r = kiln_directory_put_multiple_start(c->far, &far, err);
        if (r < 0)
                return r;
        r = kiln_directory_put_multiple_start(c->near, &near, err);
        if (r < 0) {
                kiln_directory_putter_free(far);
                return r;
        }
        struct tee_putter *t = kiln_calloc(1, sizeof(*t));
        t->base.ops = &tee_putter_ops;
        t->far = far;
        t->near = near;
        *ret = &t->base;
        return 0;
}

static void cache_free(struct kiln_directory_service *s)
{
        struct cache_dir_service *c = (struct cache_dir_service *)s;
        kiln_directory_service_free(c->near);
        kiln_directory_service_free(c->far);
        kiln_digest_map_done(&c->fetching, NULL);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static const struct kiln_directory_service_ops cache_dir_ops = {
        .name = "cache",
        .get = cache_get,
        .put = cache_put,
        .get_recursive = cache_get_recursive,
        .put_multiple_start = cache_put_multiple_start,
        .free = cache_free,
};

struct kiln_directory_service *kiln_directory_cache_over(struct kiln_directory_service *near,
                                                         struct kiln_directory_service *far)
{
        struct cache_dir_service *c = kiln_calloc(1, sizeof(*c));
        c->base.ops = &cache_dir_ops;
        c->near = near;
        c->far = far;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        return &c->base;
}
