/* memory://: Directories in process memory as canonical bytes, keyed by
 * digest under a rwlock. get() decodes and re-checks the digest; recursive
 * get and multi-put use the generic breadth-first stream and putter. */
#include <pthread.h>

#include <kiln/castore/digest_map.h>

#include "backends.h"

struct mem_dir_service {
        struct kiln_directory_service base;
        pthread_rwlock_t lock;
        struct kiln_digest_map dirs; /* digest -> struct kiln_buf * */
};

static int mem_dir_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                       struct kiln_directory *ret, struct kiln_error **err)
{
        struct mem_dir_service *m = (struct mem_dir_service *)s;
        pthread_rwlock_rdlock(&m->lock);
        const struct kiln_buf *b = kiln_digest_map_get(&m->dirs, d);
        pthread_rwlock_unlock(&m->lock);
        if (!b)
                return 0;
        struct kiln_digest got;
        kiln_digest_of(b->data, b->len, &got);
        if (!kiln_digest_eq(&got, d))
                return kiln_error_set(err, EBADMSG, "directory %s: stored data has digest %s",
                                      KILN_DIGEST_B64(d), KILN_DIGEST_B64(&got));
        _cleanup_(kiln_error_freep) struct kiln_error *why = NULL;
        if (kiln_directory_decode(b->data, b->len, ret, &why) < 0)
                return kiln_error_set(err, EBADMSG, "directory %s: stored data is invalid: %s",
                                      KILN_DIGEST_B64(d), kiln_error_msg(why));
        return 1;
}

static int mem_dir_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                       struct kiln_digest *ret_digest, struct kiln_error **err)
{
        (void)err;
        struct mem_dir_service *m = (struct mem_dir_service *)s;
        struct kiln_buf *b = kiln_calloc(1, sizeof(*b));
        kiln_directory_encode(dir, b);
        kiln_digest_of(b->data, b->len, ret_digest);
        pthread_rwlock_wrlock(&m->lock);
        if (!kiln_digest_map_get(&m->dirs, ret_digest)) {
                kiln_digest_map_put(&m->dirs, ret_digest, b);
                b = NULL;
        }
        pthread_rwlock_unlock(&m->lock);
        if (b) {
                kiln_buf_done(b);
                free(b);
        }
        return 0;
}

static void free_buf(void *p)
{
        kiln_buf_done(p);
        free(p);
}

static void mem_dir_free(struct kiln_directory_service *s)
{
        struct mem_dir_service *m = (struct mem_dir_service *)s;
        kiln_digest_map_done(&m->dirs, free_buf);
        pthread_rwlock_destroy(&m->lock);
        free(m);
}

static const struct kiln_directory_service_ops mem_dir_ops = {
        .name = "memory",
        .get = mem_dir_get,
        .put = mem_dir_put,
        .free = mem_dir_free,
};

int kiln_directory_memory_new(const struct kiln_url *u, struct kiln_directory_service **ret,
                              struct kiln_error **err)
{
        (void)u, (void)err;
        struct mem_dir_service *m = kiln_calloc(1, sizeof(*m));
        m->base.ops = &mem_dir_ops;
        pthread_rwlock_init(&m->lock, NULL);
        *ret = &m->base;
        return 0;
}
