/* The action cache: finished successful Builds remembered by the identity
 * of their BuildRequest (BLAKE3 of its canonical encoding, docs/PROTOCOLS.md
 * "Action cache"), and the caching build service that answers an identical
 * request from it and runs identical requests in flight once.
 *
 * A store holds records keyed by a request's identity; a record is a
 * tvix.build.v1.Build message without its build_request (the echo is the
 * request itself). Stores are chosen by URL: memory:// and lmdb:///abs/path,
 * both taking ?max-entries=N (default 100000): beyond N entries the least
 * recently used are evicted. Every op may be called from many threads at
 * once; lmdb:// may also be shared by several processes. */
#pragma once

#include <kiln/build/build.h>
#include <kiln/build/service.h>
#include <kiln/castore/digest.h>
#include <kiln/store/store.h>

#define KILN_ACTION_CACHE_MAX_ENTRIES 100000

/* The identity of a request: BLAKE3 of the canonical encoding of a copy in
 * which every list that is a set (inputs by name, scratch_paths, outputs,
 * environment_vars by key, additional_files by path, available_ro_paths) is
 * sorted and duplicate ro paths dropped, so requests that differ only in the
 * order of such lists have the same identity. Pure computation. */
KILN_PUBLIC void kiln_build_request_identity(const struct kiln_build_request *r,
                                             struct kiln_digest *ret);

struct kiln_action_cache;
struct kiln_action_cache_ops {
        const char *name; /* "memory", "lmdb" */
        /* 1 with the record in *ret (appended), 0 when absent. A hit counts
         * as a use for eviction. */
        int (*get)(struct kiln_action_cache *c, const struct kiln_digest *key,
                   struct kiln_buf *ret, struct kiln_error **err);
        /* Stores or replaces a record, then evicts the least recently used
         * entries beyond max_entries. */
        int (*put)(struct kiln_action_cache *c, const struct kiln_digest *key, const void *data,
                   size_t len, struct kiln_error **err);
        /* Removes a record; 1 if it was there, 0 if not. */
        int (*remove)(struct kiln_action_cache *c, const struct kiln_digest *key,
                      struct kiln_error **err);
        /* The number of records. */
        int (*count)(struct kiln_action_cache *c, uint64_t *ret, struct kiln_error **err);
        void (*free)(struct kiln_action_cache *c);
};
struct kiln_action_cache {
        const struct kiln_action_cache_ops *ops;
        uint64_t max_entries;
};

/* Opens a store by URL: memory://[?max-entries=N], lmdb:///abs/dir[?max-entries=N]
 * (the directory is created), or a daemon's that serves kiln.build.v1.ActionCache
 * (grpc+unix://, grpc+http://, grpc+https://). -EINVAL with one line naming
 * the problem. */
KILN_PUBLIC int kiln_action_cache_open(const char *url, struct kiln_action_cache **ret,
                                       struct kiln_error **err);
KILN_PUBLIC void kiln_action_cache_free(struct kiln_action_cache *c);
DEFINE_CLEANUP_FUNC(struct kiln_action_cache, kiln_action_cache_free)
/* lmdb://$KILN_HOME/action-cache. Heap string. */
KILN_PUBLIC char *kiln_default_action_cache_url(void);

/* The Build remembered for key: 1 with ret->outputs filled (ret->request
 * left empty), 0 when absent, -EBADMSG for a record that does not decode. */
KILN_PUBLIC int kiln_action_cache_lookup(struct kiln_action_cache *c,
                                         const struct kiln_digest *key, struct kiln_build *ret,
                                         struct kiln_error **err);
/* Remembers b's outputs under key. */
KILN_PUBLIC int kiln_action_cache_store(struct kiln_action_cache *c,
                                        const struct kiln_digest *key,
                                        const struct kiln_build *b, struct kiln_error **err);
KILN_PUBLIC int kiln_action_cache_remove(struct kiln_action_cache *c,
                                         const struct kiln_digest *key, struct kiln_error **err);
KILN_PUBLIC int kiln_action_cache_count(struct kiln_action_cache *c, uint64_t *ret,
                                        struct kiln_error **err);

/* The caching build service: a build service over `backend` (owned) that
 *  - answers a request whose identity `cache` (owned; NULL: no cache, only
 *    the deduplication below) remembers, once every output is still in
 *    `blobs` and `dirs` (borrowed: each file output's blob, each directory
 *    output's whole closure and every blob in it); else it builds again;
 *  - runs identical requests in flight once: the first one builds, the
 *    others wait for it and get the same Build or the same error. A waiter
 *    whose own call is cancelled stops waiting (-ECANCELED); when the build
 *    was cancelled by its own caller, the waiters start over (one of them
 *    builds);
 *  - remembers successful builds (a failure is never remembered; failing to
 *    remember is not a build failure).
 * The call's progress callback gets the phase "cache-hit" or "joined" (an
 * identical build in flight) when the request is answered so. Thread-safe. */
KILN_PUBLIC struct kiln_build_service *
kiln_build_service_cached_new(struct kiln_build_service *backend,
                              struct kiln_action_cache *cache, struct kiln_blob_service *blobs,
                              struct kiln_directory_service *dirs);

/* The action cache of a caching build service (owned by it), or NULL (no
 * cache, or another service). */
KILN_PUBLIC struct kiln_action_cache *
kiln_build_service_action_cache(struct kiln_build_service *s);

/* Counters of a caching build service (all 0 for any other service). */
struct kiln_build_cache_stats {
        uint64_t hits;   /* answered from the cache */
        uint64_t stale;  /* remembered, but an output was gone: built again */
        uint64_t builds; /* builds run by the backend */
        uint64_t joined; /* answered by an identical build in flight */
};
KILN_PUBLIC void kiln_build_service_cache_stats(struct kiln_build_service *s,
                                                struct kiln_build_cache_stats *ret);
