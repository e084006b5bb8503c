/* What a blob or directory store implements (like libgit2's sys/odb_backend.h).
 * Front-end policy (messages for absent objects, argument checks) lives in
 * store.c; a backend only does its own storage. Each backend's instance embeds
 * the base struct first and casts back. Ops marked optional may be NULL. */
#pragma once

#include <kiln/castore/closure.h>
#include <kiln/store/store.h>

struct kiln_blob_reader_ops {
        ssize_t (*read)(struct kiln_blob_reader *r, void *buf, size_t n, struct kiln_error **err);
        /* Optional: like read, handing out the reader's own memory in *ret
         * (valid until its next call) instead of copying. */
        ssize_t (*read_view)(struct kiln_blob_reader *r, size_t n, const void **ret,
                             struct kiln_error **err);
        /* Absolute target already range-checked by the front end (0..size). */
        int (*seek)(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err);
        void (*free)(struct kiln_blob_reader *r);
};
struct kiln_blob_reader {
        const struct kiln_blob_reader_ops *ops;
        uint64_t size; /* total length, set by the backend at open */
        uint64_t pos;  /* maintained by the front end */
};

struct kiln_blob_writer_ops {
        int (*write)(struct kiln_blob_writer *w, const void *p, size_t n, struct kiln_error **err);
        /* Called once; the front end remembers the digest for later closes. */
        int (*close)(struct kiln_blob_writer *w, struct kiln_digest *ret, struct kiln_error **err);
        /* Aborts if not closed, removing anything temporary. */
        void (*free)(struct kiln_blob_writer *w);
};
struct kiln_blob_writer {
        const struct kiln_blob_writer_ops *ops;
        bool closed;               /* front end */
        bool failed;               /* front end: a write failed, the writer is dead */
        struct kiln_digest digest; /* front end: valid once closed */
};

struct kiln_blob_service_ops {
        const char *name;
        int (*has)(struct kiln_blob_service *s, const struct kiln_digest *d,
                   struct kiln_error **err);
        int (*open_read)(struct kiln_blob_service *s, const struct kiln_digest *d,
                         struct kiln_blob_reader **ret, struct kiln_error **err);
        int (*open_write)(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                          struct kiln_error **err);
        /* Optional: NULL means "has() then an empty list". */
        int (*chunks)(struct kiln_blob_service *s, const struct kiln_digest *d,
                      struct kiln_chunk **ret, size_t *ret_n, struct kiln_error **err);
        /* Optional: NULL means writes are durable once closed (or that the
         * store has no durability to give). */
        int (*sync)(struct kiln_blob_service *s, struct kiln_error **err);
        void (*free)(struct kiln_blob_service *s);
};
struct kiln_blob_service {
        const struct kiln_blob_service_ops *ops;
};

struct kiln_directory_stream_ops {
        int (*next)(struct kiln_directory_stream *st, struct kiln_directory *ret,
                    struct kiln_digest *ret_digest, struct kiln_error **err);
        void (*free)(struct kiln_directory_stream *st);
};
struct kiln_directory_stream {
        const struct kiln_directory_stream_ops *ops;
};

struct kiln_directory_putter_ops {
        int (*put)(struct kiln_directory_putter *p, const struct kiln_directory *dir,
                   struct kiln_error **err);
        int (*close)(struct kiln_directory_putter *p, struct kiln_digest *ret_root,
                     struct kiln_error **err);
        void (*free)(struct kiln_directory_putter *p);
};
struct kiln_directory_putter {
        const struct kiln_directory_putter_ops *ops;
        bool closed; /* front end */
        struct kiln_digest root;
};

struct kiln_directory_service_ops {
        const char *name;
        int (*get)(struct kiln_directory_service *s, const struct kiln_digest *d,
                   struct kiln_directory *ret, struct kiln_error **err);
        int (*put)(struct kiln_directory_service *s, const struct kiln_directory *dir,
                   struct kiln_digest *ret_digest, struct kiln_error **err);
        /* Optional: NULL means breadth-first traversal through get(). */
        int (*get_recursive)(struct kiln_directory_service *s, const struct kiln_digest *root,
                             struct kiln_directory_stream **ret, struct kiln_error **err);
        /* Optional: a putter of the store's own (e.g. one that streams each
         * Directory to a server as it comes). NULL means the generic putter:
         * it validates the closure, then hands it to put_closure() if set,
         * else put()s each Directory leaves to root. */
        int (*put_multiple_start)(struct kiln_directory_service *s,
                                  struct kiln_directory_putter **ret, struct kiln_error **err);
        /* Optional: stores a validated closure at once (one transaction, one
         * object), the Directories in put_closure_order, each once. */
        int (*put_closure)(struct kiln_directory_service *s, const struct kiln_directory **dirs,
                           const struct kiln_digest *digests, size_t n, struct kiln_error **err);
        enum kiln_closure_order put_closure_order;
        void (*free)(struct kiln_directory_service *s);
};
struct kiln_directory_service {
        const struct kiln_directory_service_ops *ops;
};

/* Generic parts backends may reuse. */

/* Breadth-first get_recursive over s->ops->get (the default traversal). */
KILN_PUBLIC int kiln_directory_stream_bfs(struct kiln_directory_service *s,
                                          const struct kiln_digest *root,
                                          struct kiln_directory_stream **ret,
                                          struct kiln_error **err);
