/* NAR, the Nix ARchive (Nix 2.8's archive.cc): a canonical serialisation of
 * a file, symlink or directory tree. Every string is a little-endian u64
 * length, the bytes and zero padding to a multiple of 8:
 *
 *   "nix-archive-1" node
 *   node = "(" "type" "regular" ["executable" ""] "contents" <bytes> ")"
 *        | "(" "type" "symlink" "target" <target> ")"
 *        | "(" "type" "directory" {"entry" "(" "name" <name> "node" node ")"} ")"
 *
 * with entries sorted by name (bytes). Writers and the reader stream: they
 * hold one bounded buffer each, reused throughout, never a whole file or NAR,
 * and produce the NAR's SHA-256 and size as they go. Each call is
 * independent; concurrent calls are fine when the stores are. */
#pragma once

#include <sys/types.h>

#include <kiln/nix/hash.h>
#include <kiln/store/store.h>

/* Where a writer's bytes go, in order, in pieces of any size. */
struct kiln_nix_nar_sink {
        int (*write)(void *ctx, const void *p, size_t n, struct kiln_error **err);
        void *ctx;
};
/* A sink writing to a file descriptor (ctx holds fd; no freeing needed). */
KILN_PUBLIC void kiln_nix_nar_sink_fd(int fd, struct kiln_nix_nar_sink *ret);

/* Where the reader's bytes come from: read() returns the count (up to n),
 * 0 at the end, or < 0 with *err set. */
struct kiln_nix_nar_source {
        ssize_t (*read)(void *ctx, void *buf, size_t n, struct kiln_error **err);
        void *ctx;
};
/* A source reading a file descriptor. */
KILN_PUBLIC void kiln_nix_nar_source_fd(int fd, struct kiln_nix_nar_source *ret);

/* The NAR's SHA-256 (Nix's narHash) and length (narSize). */
struct kiln_nix_nar_info {
        struct kiln_nix_hash hash;
        uint64_t size;
};

/* Serialises the tree at path (relative to dirfd), as `nix-store --dump`
 * does: symlinks are never followed, a file is executable when its owner may
 * execute it, other file types fail with -EINVAL naming the path. Writes to
 * sink when it is not NULL; *ret (may be NULL) gets hash and size. A file
 * that changes size while it is read fails with -EAGAIN. */
KILN_PUBLIC int kiln_nix_nar_dump_path(int dirfd, const char *path,
                                       const struct kiln_nix_nar_sink *sink,
                                       struct kiln_nix_nar_info *ret, struct kiln_error **err);

/* Serialises a stored castore tree: root is any node (its name is ignored);
 * its Directories come from dirs, file contents from blobs. A missing object
 * fails with -ENOENT, a blob whose length differs from its node with
 * -EBADMSG. */
KILN_PUBLIC int kiln_nix_nar_dump_node(struct kiln_blob_service *blobs,
                                       struct kiln_directory_service *dirs,
                                       const struct kiln_node *root,
                                       const struct kiln_nix_nar_sink *sink,
                                       struct kiln_nix_nar_info *ret, struct kiln_error **err);

/* Reads one NAR from src into the store: file contents are streamed into
 * blobs, Directories go to dirs through one putter, leaves to root, closed
 * only once the whole NAR (and nothing after it) has been read and checked.
 * Only the canonical form is accepted (the one writers produce, so that the
 * tree dumps back to the same bytes): -EINVAL "invalid NAR at byte N: …" for
 * a bad magic, tag, order of fields, non-zero padding, an entry name that is
 * empty, ".", "..", holds '/' or NUL or is over 255 bytes, names out of order
 * or repeated, a bad symlink target, nesting deeper than 1024 directories, a
 * truncated stream or trailing bytes. On failure no Directory refers to
 * anything missing (blobs already written may stay, unreferenced). *ret_root
 * gets the anonymous root node, *ret_info (may be NULL) hash and size. */
KILN_PUBLIC int kiln_nix_nar_import(struct kiln_blob_service *blobs,
                                    struct kiln_directory_service *dirs,
                                    const struct kiln_nix_nar_source *src,
                                    struct kiln_node *ret_root, struct kiln_nix_nar_info *ret_info,
                                    struct kiln_error **err);
