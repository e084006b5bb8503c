/* memory:// action cache: records in a digest map and a doubly linked list
 * in order of use (most recent first), under one mutex (a hit moves its
 * entry to the front, so even reads write). Eviction drops from the tail. */
#include <pthread.h>

#include <kiln/castore/digest_map.h>

#include "action_cache_backends.h"

struct mem_entry {
        struct kiln_digest key;
        struct mem_entry *prev, *next; /* prev: more recently used */
        uint8_t *data;
        size_t len;
};

struct mem_cache {
        struct kiln_action_cache base;
        pthread_mutex_t lock;
        struct kiln_digest_map map; /* key -> struct mem_entry * */
        struct mem_entry *head, *tail;
};

static void unlink_entry(struct mem_cache *m, struct mem_entry *e)
{
        if (e->prev)
                e->prev->next = e->next;
        else
                m->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                m->tail = e->prev;
        e->prev = e->next = NULL;
}

static void push_front(struct mem_cache *m, struct mem_entry *e)
{
        e->prev = NULL;
        e->next = m->head;
        if (m->head)
                m->head->prev = e;
        m->head = e;
        if (!m->tail)
                m->tail = e;
}

static void entry_free(void *p)
{
        struct mem_entry *e = p;
        free(e->data);
        free(e);
}

static int mem_get(struct kiln_action_cache *c, const struct kiln_digest *key,
                   struct kiln_buf *ret, struct kiln_error **err)
{
        (void)err;
        struct mem_cache *m = (struct mem_cache *)c;
        pthread_mutex_lock(&m->lock);
        struct mem_entry *e = kiln_digest_map_get(&m->map, key);
        if (e) {
                unlink_entry(m, e);
                push_front(m, e);
                kiln_buf_append(ret, e->data, e->len);
        }
        pthread_mutex_unlock(&m->lock);
        return e ? 1 : 0;
}

static int mem_put(struct kiln_action_cache *c, const struct kiln_digest *key, const void *data,
                   size_t len, struct kiln_error **err)
{
        (void)err;
        struct mem_cache *m = (struct mem_cache *)c;
        struct mem_entry *n = kiln_calloc(1, sizeof(*n));
        n->key = *key;
        n->data = kiln_memdup(data, len);
        n->len = len;
        pthread_mutex_lock(&m->lock);
        struct mem_entry *old = kiln_digest_map_put(&m->map, key, n);
        if (old)
                unlink_entry(m, old);
        push_front(m, n);
        while (m->map.n > m->base.max_entries) {
                struct mem_entry *t = m->tail;
                unlink_entry(m, t);
                kiln_digest_map_remove(&m->map, &t->key);
                entry_free(t);
        }
        pthread_mutex_unlock(&m->lock);
        if (old)
                entry_free(old);
        return 0;
}

static int mem_remove(struct kiln_action_cache *c, const struct kiln_digest *key,
                      struct kiln_error **err)
{
        (void)err;
        struct mem_cache *m = (struct mem_cache *)c;
        pthread_mutex_lock(&m->lock);
        struct mem_entry *e = kiln_digest_map_remove(&m->map, key);
        if (e)
                unlink_entry(m, e);
        pthread_mutex_unlock(&m->lock);
        if (!e)
                return 0;
        entry_free(e);
        return 1;
}

static int mem_count(struct kiln_action_cache *c, uint64_t *ret, struct kiln_error **err)
{
        (void)err;
        struct mem_cache *m = (struct mem_cache *)c;
        pthread_mutex_lock(&m->lock);
        *ret = m->map.n;
        pthread_mutex_unlock(&m->lock);
        return 0;
}

static void mem_free(struct kiln_action_cache *c)
{
        struct mem_cache *m = (struct mem_cache *)c;
        kiln_digest_map_done(&m->map, entry_free);
        pthread_mutex_destroy(&m->lock);
        free(m);
}

static const struct kiln_action_cache_ops mem_ops = {
        .name = "memory",
        .get = mem_get,
        .put = mem_put,
        .remove = mem_remove,
        .count = mem_count,
        .free = mem_free,
};

int kiln_action_cache_memory_new(uint64_t max_entries, struct kiln_action_cache **ret,
                                 struct kiln_error **err)
{
        (void)err;
        struct mem_cache *m = kiln_calloc(1, sizeof(*m));
        m->base.ops = &mem_ops;
        m->base.max_entries = max_entries;
        pthread_mutex_init(&m->lock, NULL);
        m->map = (struct kiln_digest_map)KILN_DIGEST_MAP_INIT;
        *ret = &m->base;
        return 0;
}
