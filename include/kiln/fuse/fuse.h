/* A read-only FUSE view of castore trees, as used by `kiln mount`
 * and by the build service for build inputs. Lives in libkiln-fuse, which
 * links libkiln and libfuse3.
 *
 * The mount root holds the named root nodes; below them directories, files
 * (0444, or 0555 when executable) and symlinks, owned by root, timestamps 0.
 * Directories are fetched on first lookup or listing and then cached; a
 * directory's st_size is its number of entries and its nlink 2 + its
 * subdirectories, both fixed from the first lookup on. Files are read
 * through seekable blob readers, opened by the first read that needs the
 * store and cached per inode; the kernel keeps file contents and listings in
 * its caches (they never change). Inodes stay for the life of the mount, so
 * their numbers are stable. Missing or damaged objects make the operation
 * fail with EIO (a file: its first read; a directory: its lookup) and log
 * one line naming the digest; modifications of any kind fail with EROFS. */
#pragma once

#include <kiln/store/store.h>

struct kiln_fuse;

struct kiln_fuse_options {
        /* Worker threads serving requests; 0 = number of CPUs (4 if unknown). */
        unsigned threads;
        /* Let users other than the mounting one in (needed for bind mounts into
         * containers with a user namespace). */
        bool allow_other;
        /* Allow listing the mount root; when off, opendir on it fails with
         * EPERM (lookups by name still work). */
        bool list_root;
        /* Expose user.tvix.castore.{directory,blob}.digest extended attributes
         * ("b3:<base64>", no NUL); when off, getxattr/listxattr fail with
         * EOPNOTSUPP. */
        bool show_xattr;
        /* Roots are added while mounted (kiln_fuse_root_add) rather than
         * given to kiln_fuse_mount; the root cannot be listed. */
        bool dynamic_roots;
        /* Kernel readahead for the mount in KiB; 0 = the default (4096). */
        unsigned readahead_kb;
        /* Where the filesystem's log lines go (one line per call, no newline);
         * NULL = stderr, prefixed "kiln: fuse: ". Called from worker threads,
         * possibly concurrently. */
        void (*log)(void *ctx, const char *line);
        void *log_ctx;
};

/* Mounts read-only at mountpoint (an existing directory) with the given root
 * nodes, which must have unique valid names (-EINVAL otherwise). A dead FUSE
 * mount left at mountpoint by a crashed server (ENOTCONN) is detached first.
 * The services and roots must outlive the mount; roots are copied. Returns 0
 * once the kernel has initialised the mount and requests are being served,
 * with *ret to be passed to kiln_fuse_free(). o may be NULL (defaults: all
 * false, show_xattr false). */
KILN_PUBLIC int kiln_fuse_mount(struct kiln_blob_service *blobs,
                                struct kiln_directory_service *dirs, const struct kiln_node *roots,
                                size_t n_roots, const char *mountpoint,
                                const struct kiln_fuse_options *o, struct kiln_fuse **ret,
                                struct kiln_error **err);

/* Blocks until the filesystem is unmounted from outside (fusermount3 -u,
 * umount) or kiln_fuse_stop() is called, in which case it unmounts (lazily
 * if busy) before returning. 0, or < 0 if serving failed. Call from one
 * thread at a time. */
KILN_PUBLIC int kiln_fuse_wait(struct kiln_fuse *f, struct kiln_error **err);

/* Asks kiln_fuse_wait() to unmount and return. Only writes to an eventfd, so
 * it may be called from any thread or a signal handler. */
KILN_PUBLIC void kiln_fuse_stop(struct kiln_fuse *f);

/* Unmounts if still mounted (lazily if busy: processes that still hold files
 * open then get ENOTCONN), stops and joins the worker threads and frees.
 * NULL is fine. */
KILN_PUBLIC void kiln_fuse_free(struct kiln_fuse *f);
DEFINE_CLEANUP_FUNC(struct kiln_fuse, kiln_fuse_free)

/* For a mount with dynamic_roots: makes a directory or file node (its name
 * is ignored) reachable at the mount root and sets *ret_name (to be freed)
 * to the entry's name there: "d-<hex digest>" for a directory, "f-" or "x-"
 * (executable) "<hex digest>-<size>" for a file. The same node always gets
 * the same name and inode; a file root is never shared with the files found
 * in directories (whose sizes their Directory vouches for), so a wrong size
 * claimed by one caller reaches only its own name. A name stays for the
 * life of the mount. -EINVAL for symlinks and invalid nodes, -ENOSPC when
 * the inode table is full. Thread-safe. */
KILN_PUBLIC int kiln_fuse_root_add(struct kiln_fuse *f, const struct kiln_node *node,
                                   char **ret_name, struct kiln_error **err);
/* The number of inodes the mount holds (they live as long as it does). */
KILN_PUBLIC uint64_t kiln_fuse_inode_count(struct kiln_fuse *f);

/* The mount point, made absolute against the cwd at mount time. */
KILN_PUBLIC const char *kiln_fuse_mountpoint(const struct kiln_fuse *f);
/* Reads answered by every mount of this process so far, and their bytes. */
KILN_PUBLIC void kiln_fuse_read_stats(uint64_t *ret_reads, uint64_t *ret_bytes);
