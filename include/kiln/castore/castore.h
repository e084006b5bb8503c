/* The castore data model: nodes (directory, file, symlink) and Directories,
 * their validation, canonical encoding and digest. */
#pragma once

#include <kiln/castore/digest.h>

enum kiln_node_kind {
        KILN_NODE_DIRECTORY = 1,
        KILN_NODE_FILE = 2,
        KILN_NODE_SYMLINK = 3,
};

/* A byte string owned by the struct that contains it. */
struct kiln_bytes {
        uint8_t *data;
        size_t len;
};

struct kiln_node {
        enum kiln_node_kind kind;
        struct kiln_bytes name;    /* empty for an anonymous node */
        struct kiln_digest digest; /* directory and file */
        uint64_t size;             /* directory: subtree size; file: length */
        bool executable;           /* file */
        struct kiln_bytes target;  /* symlink */
};

/* How a node's name is checked. */
enum kiln_node_naming {
        KILN_NODE_NAMED,     /* name must be a valid path component */
        KILN_NODE_ANONYMOUS, /* name must be empty */
};

/* Formula for DirectoryNode.size. REF (2 × entries + Σ child sizes) is
 * what upstream peers compute and enforce; DOC is the documented meaning. */
enum kiln_size_formula {
        KILN_SIZE_REF,
        KILN_SIZE_DOC,
};
/* The formula this build uses (meson option directory_size, default ref). */
KILN_PUBLIC enum kiln_size_formula kiln_size_formula_default(void);

KILN_PUBLIC const char *kiln_node_kind_name(enum kiln_node_kind kind);

/* Frees the node's strings; the struct itself is the caller's. */
KILN_PUBLIC void kiln_node_done(struct kiln_node *n);
/* Deep copy into *dst (which is overwritten, not freed). */
KILN_PUBLIC void kiln_node_copy(struct kiln_node *dst, const struct kiln_node *src);
/* Replaces the node's name with a copy of (name, len). */
KILN_PUBLIC void kiln_node_set_name(struct kiln_node *n, const void *name, size_t len);
KILN_PUBLIC bool kiln_node_eq(const struct kiln_node *a, const struct kiln_node *b);

/* Checks a path component: -EINVAL with "cannot be empty", "cannot be
 * '..'", "cannot be '.'", "cannot be over 255 bytes long", "cannot contain null
 * bytes" or "cannot contain slashes". */
KILN_PUBLIC int kiln_name_validate(const void *name, size_t len, struct kiln_error **err);
/* Checks a symlink target. */
KILN_PUBLIC int kiln_symlink_target_validate(const void *target, size_t len,
                                             struct kiln_error **err);
/* Validates a node: its own fields, then the name per `naming`. */
KILN_PUBLIC int kiln_node_validate(const struct kiln_node *n, enum kiln_node_naming naming,
                                   struct kiln_error **err);

/* Appends the canonical encoding of a tvix.castore.v1.Node message. */
KILN_PUBLIC void kiln_node_encode(const struct kiln_node *n, struct kiln_buf *out);
/* Decodes and validates a Node message (any valid protobuf encoding). */
KILN_PUBLIC int kiln_node_decode(const void *data, size_t len, enum kiln_node_naming naming,
                                 struct kiln_node *ret, struct kiln_error **err);

/* A validated Directory: one list of nodes sorted by name (all kinds
 * interleaved), names unique, each node valid and named. */
struct kiln_directory {
        struct kiln_node *nodes;
        size_t n;
        size_t cap;
};
#define KILN_DIRECTORY_INIT {NULL, 0, 0}

KILN_PUBLIC void kiln_directory_done(struct kiln_directory *d);
KILN_PUBLIC struct kiln_directory *kiln_directory_new(void);
KILN_PUBLIC void kiln_directory_free(struct kiln_directory *d);
DEFINE_CLEANUP_FUNC(struct kiln_directory, kiln_directory_free)
KILN_PUBLIC void kiln_directory_copy(struct kiln_directory *dst, const struct kiln_directory *src);

/* Building a Directory (importers): add nodes in any order, moving them in
 * (*node is emptied), then seal. */
KILN_PUBLIC void kiln_directory_add(struct kiln_directory *d, struct kiln_node *node);
/* Sorts, validates every node (named), rejects duplicate names and a size
 * overflowing u64. On failure the Directory must be discarded. */
KILN_PUBLIC int kiln_directory_seal(struct kiln_directory *d, struct kiln_error **err);

/* Binary search by name; NULL if absent. */
KILN_PUBLIC const struct kiln_node *kiln_directory_find(const struct kiln_directory *d,
                                                        const void *name, size_t len);

/* Size of a DirectoryNode pointing at this Directory, under `formula`.
 * -EOVERFLOW "total size exceeds u64::MAX" when it does not fit. */
KILN_PUBLIC int kiln_directory_size_with(const struct kiln_directory *d,
                                         enum kiln_size_formula formula, uint64_t *ret,
                                         struct kiln_error **err);
/* Same with the build's default formula. A sealed Directory always fits. */
KILN_PUBLIC uint64_t kiln_directory_size(const struct kiln_directory *d);

/* Appends the canonical encoding. */
KILN_PUBLIC void kiln_directory_encode(const struct kiln_directory *d, struct kiln_buf *out);
/* Digest of the canonical encoding; `scratch` is a reusable buffer (may be NULL). */
KILN_PUBLIC void kiln_directory_digest(const struct kiln_directory *d, struct kiln_buf *scratch,
                                       struct kiln_digest *ret);

/* Decodes a wire Directory (any valid encoding, unknown fields dropped) and
 * validates it in upstream's order (docs/PROTOCOLS.md), reporting the first error. */
KILN_PUBLIC int kiln_directory_decode(const void *data, size_t len, struct kiln_directory *ret,
                                      struct kiln_error **err);

/* A node as received, before validation: the digest field may have had the
 * wrong length (then `digest` is zero and digest_len says what came). */
struct kiln_wire_node {
        struct kiln_node node;
        size_t digest_len;
};
/* Validates a received node: digest length and own fields, then the
 * name per `naming`. */
KILN_PUBLIC int kiln_wire_node_validate(const struct kiln_wire_node *w,
                                        enum kiln_node_naming naming, struct kiln_error **err);

/* The wire form of a Directory before validation: three lists in received
 * order. Decoders (protobuf, JSON) fill it and call kiln_directory_from_lists(). */
struct kiln_directory_lists {
        struct kiln_wire_node *dirs, *files, *symlinks;
        size_t n_dirs, n_files, n_symlinks;
};
KILN_PUBLIC void kiln_directory_lists_done(struct kiln_directory_lists *l);
/* Validates in upstream's order and moves the nodes into *ret (lists are emptied, even
 * on failure they must still be released with _done). */
KILN_PUBLIC int kiln_directory_from_lists(struct kiln_directory_lists *l,
                                          struct kiln_directory *ret, struct kiln_error **err);
/* Converts to a node for a parent: kind directory, digest and size filled,
 * name set to (name, len). */
KILN_PUBLIC void kiln_directory_to_node(const struct kiln_directory *d,
                                        const struct kiln_digest *digest, const void *name,
                                        size_t len, struct kiln_node *ret);
