/* Object stores: the flat key → bytes storage under the objectstore blob
 * backend. Objects are immutable and written at most once: a put
 * of a key that exists is a no-op, so content-addressed callers can race
 * freely. A reader sees either no object or the complete one, never a part.
 *
 * Keys are relative paths made of '/'-separated components, e.g.
 * "chunks/b3/41f8/41f8…"; no component is empty, "." or "..", or starts with
 * ".tmp-" (asserted: keys come from our own code, not from clients).
 *
 * All ops may be called from many threads at once on one store. */
#pragma once

#include <kiln/util/error.h>

struct kiln_objstore;

struct kiln_objstore_ops {
        const char *name; /* "file", "memory" */
        /* Stores p[0..n) under key unless an object exists there. 1 = stored,
         * 0 = already present (left untouched). */
        int (*put)(struct kiln_objstore *o, const char *key, const void *p, size_t n,
                   struct kiln_error **err);
        /* Reads the whole object into *buf, replacing its contents but reusing
         * its memory. 1 = found, 0 = absent. An object larger than limit fails
         * with -EBADMSG (a store we wrote never holds one). */
        int (*get)(struct kiln_objstore *o, const char *key, size_t limit, struct kiln_buf *buf,
                   struct kiln_error **err);
        /* 1 = exists, 0 = absent. */
        int (*exists)(struct kiln_objstore *o, const char *key, struct kiln_error **err);
        /* Optional: makes every object stored so far durable. */
        int (*sync)(struct kiln_objstore *o, struct kiln_error **err);
        void (*free)(struct kiln_objstore *o);
};

struct kiln_objstore {
        const struct kiln_objstore_ops *ops;
};

static inline void kiln_objstore_free(struct kiln_objstore *o)
{
        if (o)
                o->ops->free(o);
}
DEFINE_CLEANUP_FUNC(struct kiln_objstore, kiln_objstore_free)

/* A directory tree rooted at the absolute path `path`, created (mkdir -p,
 * mode 0755) when missing. Objects are files (mode 0444) at their key below
 * it, published atomically: an O_TMPFILE file in the target directory,
 * written, then linked to its name (link fails if the name exists, which is
 * the "if absent"), so a killed writer never leaves a partial object
 * visible. Durability is batched: sync() makes everything stored so far
 * durable with one syncfs, which callers issue before anything refers to the
 * objects (the directory closure of an import), instead of an fsync per
 * object and per directory. After a power loss an object published but not
 * yet synced can be damaged; every read verifies content, so that shows as a
 * data-loss error, never as wrong data. Where
 * O_TMPFILE or /proc is unavailable, a named temp file ".tmp-<random>" in the
 * target directory, flock()ed while its writer lives, renamed into place with
 * RENAME_NOREPLACE. In that mode opening the store removes temp files whose
 * writer died (their lock is free); with O_TMPFILE a killed writer leaves
 * nothing behind, so no scan is needed. Lookups walk the key one component at
 * a time with O_NOFOLLOW, so a symlink planted in the tree cannot lead out of
 * it. Stateless apart from the directory fd: thread-safe without locks. */
int kiln_objstore_file_new(const char *path, struct kiln_objstore **ret, struct kiln_error **err);

/* Test hook: when set before kiln_objstore_file_new(), the store uses named
 * temp files as if O_TMPFILE were unsupported. */
extern bool kiln_objstore_file_no_tmpfile;

/* Removes stale ".tmp-*" files (whose writer is gone) anywhere below the
 * store's directory. Returns the number removed. Called at open in named-temp
 * mode; exposed for tests. */
int kiln_objstore_file_clean(struct kiln_objstore *o, struct kiln_error **err);

/* An in-process store: a hash map under a rwlock, objects copied in and out.
 * Each call makes a new, empty store. */
int kiln_objstore_memory_new(struct kiln_objstore **ret);
