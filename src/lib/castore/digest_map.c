/* Digest-keyed open-addressing hash map with linear probing and
 * backward-shift deletion (no tombstones). */
#include <kiln/castore/digest_map.h>

static size_t slot_of(const struct kiln_digest *d, size_t cap)
{
        uint64_t h;
        memcpy(&h, d->b, sizeof(h));
        return (size_t)h & (cap - 1);
}

static struct kiln_digest_map_entry *find(const struct kiln_digest_map *m,
                                          const struct kiln_digest *key)
{
        if (m->cap == 0)
                return NULL;
        for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
                struct kiln_digest_map_entry *e = &m->slots[i];
                if (!e->value)
                        return NULL;
                if (kiln_digest_eq(&e->key, key))
                        return e;
        }
}

void *kiln_digest_map_get(const struct kiln_digest_map *m, const struct kiln_digest *key)
{
        struct kiln_digest_map_entry *e = find(m, key);
        return e ? e->value : NULL;
}

static void insert_new(struct kiln_digest_map *m, const struct kiln_digest *key, void *value)
{
        size_t i = slot_of(key, m->cap);
        while (m->slots[i].value)
                i = (i + 1) & (m->cap - 1);
        m->slots[i].key = *key;
        m->slots[i].value = value;
        m->n++;
}

static void grow(struct kiln_digest_map *m)
{
        struct kiln_digest_map old = *m;
        m->cap = old.cap ? old.cap * 2 : 16;
        m->slots = kiln_calloc(m->cap, sizeof(*m->slots));
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
                if (old.slots[i].value)
                        insert_new(m, &old.slots[i].key, old.slots[i].value);
        free(old.slots);
}

void *kiln_digest_map_put(struct kiln_digest_map *m, const struct kiln_digest *key, void *value)
{
        struct kiln_digest_map_entry *e = find(m, key);
        if (e) {
                void *prev = e->value;
                e->value = value;
                return prev;
        }
        if ((m->n + 1) * 4 > m->cap * 3)
                grow(m);
        insert_new(m, key, value);
        return NULL;
}

void *kiln_digest_map_remove(struct kiln_digest_map *m, const struct kiln_digest *key)
{
        struct kiln_digest_map_entry *e = find(m, key);
        if (!e)
                return NULL;
        void *value = e->value;
        size_t mask = m->cap - 1;
        size_t hole = (size_t)(e - m->slots);
        /* Shift later members of the probe run back into the hole. */
        for (size_t j = (hole + 1) & mask; m->slots[j].value; j = (j + 1) & mask) {
                size_t home = slot_of(&m->slots[j].key, m->cap);
                if (((j - home) & mask) >= ((j - hole) & mask)) {
                        m->slots[hole] = m->slots[j];
                        hole = j;
                }
        }
        m->slots[hole].value = NULL;
        m->n--;
        return value;
}

void kiln_digest_map_done(struct kiln_digest_map *m, void (*free_value)(void *))
{
        if (free_value)
                for (size_t i = 0; i < m->cap; i++)
                        if (m->slots[i].value)
                                free_value(m->slots[i].value);
        free(m->slots);
        *m = (struct kiln_digest_map)KILN_DIGEST_MAP_INIT;
}
