/* A hash map from digest to pointer (open addressing; digests are uniformly
 * random, so their first bytes are the hash). Not thread-safe: callers lock. */
#pragma once

#include <kiln/castore/digest.h>

struct kiln_digest_map_entry {
        struct kiln_digest key;
        void *value; /* NULL marks an empty slot: values must not be NULL */
};

struct kiln_digest_map {
        struct kiln_digest_map_entry *slots;
        size_t cap; /* power of two, or 0 */
        size_t n;
};
#define KILN_DIGEST_MAP_INIT {NULL, 0, 0}

/* The value for key, or NULL. */
KILN_PUBLIC void *kiln_digest_map_get(const struct kiln_digest_map *m, const struct kiln_digest *key);
/* Inserts or replaces; returns the previous value (or NULL). value != NULL. */
KILN_PUBLIC void *kiln_digest_map_put(struct kiln_digest_map *m, const struct kiln_digest *key,
                                      void *value);
/* Removes key; returns its value (or NULL). */
KILN_PUBLIC void *kiln_digest_map_remove(struct kiln_digest_map *m, const struct kiln_digest *key);
/* Frees the table; calls free_value on every value when given. */
KILN_PUBLIC void kiln_digest_map_done(struct kiln_digest_map *m, void (*free_value)(void *));

/* Iteration: for (size_t i = 0; kiln_digest_map_next(m, &i, &e);) */
static inline bool kiln_digest_map_next(const struct kiln_digest_map *m, size_t *i,
                                        struct kiln_digest_map_entry **ret)
{
        for (; *i < m->cap; (*i)++)
                if (m->slots[*i].value) {
                        *ret = &m->slots[(*i)++];
                        return true;
                }
        return false;
}
