/* The in-memory object store: a digest map keyed by BLAKE3 of the key string,
 * under a rwlock. Objects are immutable and live as long as the store, so get
 * copies out after dropping the lock. */
#include <pthread.h>

#include <kiln/blake3/blake3.h>
#include <kiln/castore/digest_map.h>

#include "objstore.h"

struct mem_object {
        size_t len;
        uint8_t data[];
};

struct mem_objstore {
        struct kiln_objstore base;
        pthread_rwlock_t lock;
        struct kiln_digest_map objects;
};

static void key_digest(const char *key, struct kiln_digest *ret)
{
        kiln_blake3(key, strlen(key), ret->b);
}

static const struct mem_object *lookup(struct mem_objstore *m, const char *key)
{
        struct kiln_digest k;
        key_digest(key, &k);
        pthread_rwlock_rdlock(&m->lock);
        const struct mem_object *obj = kiln_digest_map_get(&m->objects, &k);
        pthread_rwlock_unlock(&m->lock);
        return obj;
}

static int mem_put(struct kiln_objstore *o, const char *key, const void *p, size_t n,
                   struct kiln_error **err)
{
        (void)err;
        struct mem_objstore *m = (struct mem_objstore *)o;
        if (lookup(m, key))
                return 0;
        /* Copy outside the lock; the loser of a race frees its copy. */
        struct mem_object *obj = kiln_malloc(sizeof(*obj) + n);
        obj->len = n;
        if (n)
                memcpy(obj->data, p, n);
        struct kiln_digest k;
        key_digest(key, &k);
        pthread_rwlock_wrlock(&m->lock);
        bool present = kiln_digest_map_get(&m->objects, &k) != NULL;
        if (!present)
                kiln_digest_map_put(&m->objects, &k, obj);
        pthread_rwlock_unlock(&m->lock);
        if (present) {
                free(obj);
                return 0;
        }
        return 1;
}

static int mem_get(struct kiln_objstore *o, const char *key, size_t limit, struct kiln_buf *buf,
                   struct kiln_error **err)
{
        const struct mem_object *obj = lookup((struct mem_objstore *)o, key);
        if (!obj)
                return 0;
        if (obj->len > limit)
                return kiln_error_set(err, EBADMSG, "object '%s' is too large (%zu bytes)", key,
                                      obj->len);
        kiln_buf_clear(buf);
        kiln_buf_reserve(buf, obj->len + 1); /* data is never NULL after a get */
        kiln_buf_append(buf, obj->data, obj->len);
        return 1;
}

static int mem_exists(struct kiln_objstore *o, const char *key, struct kiln_error **err)
{
        (void)err;
        return lookup((struct mem_objstore *)o, key) ? 1 : 0;
}

static void mem_free(struct kiln_objstore *o)
{
        struct mem_objstore *m = (struct mem_objstore *)o;
        kiln_digest_map_done(&m->objects, free);
        pthread_rwlock_destroy(&m->lock);
        free(m);
}

static const struct kiln_objstore_ops mem_ops = {
        .name = "memory",
        .put = mem_put,
        .get = mem_get,
        .exists = mem_exists,
        .free = mem_free,
};

int kiln_objstore_memory_new(struct kiln_objstore **ret)
{
        struct mem_objstore *m = kiln_calloc(1, sizeof(*m));
        m->base.ops = &mem_ops;
        pthread_rwlock_init(&m->lock, NULL);
        *ret = &m->base;
        return 0;
}
