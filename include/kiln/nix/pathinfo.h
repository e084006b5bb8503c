/* kiln's PathInfo store: what kiln knows of a Nix store path it holds in
 * castore (the tvix.store.v1 PathInfo model): the root node of its contents,
 * its NAR hash and size, references, deriver and content address. Kept in an
 * LMDB environment ($KILN_HOME/pathinfo by default), one record per store
 * path keyed by its 20-byte digest, the value a PathInfo message. Every
 * record read is decoded and checked (its node named by the path's
 * basename, digests of the right sizes); a bad one is -EBADMSG. Safe for
 * several threads and processes at once. */
#pragma once

#include <kiln/castore/castore.h>
#include <kiln/nix/hash.h>
#include <kiln/nix/store_path.h>

struct kiln_nix_pathinfo {
        char *path;             /* absolute store path */
        struct kiln_node node;  /* named by the path's basename */
        struct kiln_nix_hash nar_hash; /* SHA-256 */
        uint64_t nar_size;
        struct kiln_strv references; /* absolute store paths, sorted */
        char *deriver;               /* absolute .drv path, or NULL */
        char *ca;                    /* "fixed:r:sha256:…" and the like, or NULL */
};
KILN_PUBLIC void kiln_nix_pathinfo_done(struct kiln_nix_pathinfo *p);

/* Encodes p as a tvix.store.v1.PathInfo message (canonical encoding). */
KILN_PUBLIC int kiln_nix_pathinfo_encode(const struct kiln_nix_pathinfo *p, struct kiln_buf *out,
                                         struct kiln_error **err);
/* Decodes and checks a PathInfo message of store path `path` (NULL: the
 * path its node is named by). */
KILN_PUBLIC int kiln_nix_pathinfo_decode(const char *path, const void *data, size_t len,
                                         struct kiln_nix_pathinfo *ret, struct kiln_error **err);

struct kiln_nix_pathinfo_store;
/* Opens (creating it) the store in directory dir; NULL for the default. */
KILN_PUBLIC int kiln_nix_pathinfo_store_open(const char *dir, struct kiln_nix_pathinfo_store **ret,
                                             struct kiln_error **err);
KILN_PUBLIC void kiln_nix_pathinfo_store_close(struct kiln_nix_pathinfo_store *s);
DEFINE_CLEANUP_FUNC(struct kiln_nix_pathinfo_store, kiln_nix_pathinfo_store_close)

/* 1 and *ret filled, or 0 when the store has no record of path. */
KILN_PUBLIC int kiln_nix_pathinfo_get(struct kiln_nix_pathinfo_store *s, const char *path,
                                      struct kiln_nix_pathinfo *ret, struct kiln_error **err);
/* The closure of roots under the references the store records, in the order
 * found (roots first); -ENOENT "path '…' is not valid" for a path it has no
 * record of. */
KILN_PUBLIC int kiln_nix_pathinfo_closure(struct kiln_nix_pathinfo_store *s,
                                          const struct kiln_strv *roots, struct kiln_strv *ret,
                                          struct kiln_error **err);
/* Stores the record of p->path, durably. A path already held keeps its
 * record: as in Nix, a valid path never changes. The store is keyed by hash
 * part, so a path whose hash part it holds under another name is refused
 * (EEXIST); with honest clients the two cannot meet. */
KILN_PUBLIC int kiln_nix_pathinfo_put(struct kiln_nix_pathinfo_store *s,
                                      const struct kiln_nix_pathinfo *p, struct kiln_error **err);
/* Calls fn for every record, in digest order; a negative return stops. */
KILN_PUBLIC int kiln_nix_pathinfo_list(struct kiln_nix_pathinfo_store *s,
                                       int (*fn)(void *ctx, const struct kiln_nix_pathinfo *p,
                                                 struct kiln_error **err),
                                       void *ctx, struct kiln_error **err);
