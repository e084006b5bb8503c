/* Internals of libkiln-fuse: the inode table (inode.c), the FUSE operations
 * (ops.c) and the mount/thread machinery (mount.c).
 *
 * Locking. Inodes are created and never freed while the mount lives, so an
 * inode pointer, once handed out, stays valid. Their identity fields (kind,
 * digest, size, executable, target) are written before the inode is
 * published and never change. What can change:
 *   - the table (pages of inode pointers) and the dedup maps: f->lock;
 *   - a directory's listing (struct dirdata), written once: published with
 *     release semantics in inode->dd and read with acquire loads, without a
 *     lock. Fetching it is serialised per inode by inode->fetching under
 *     f->fetch_lock / f->fetch_cond, so concurrent first lookups fetch once;
 *   - cached blob readers: f->readers_lock (a reader being used belongs
 *     to one worker and is on no list).
 *   - closures fetched for root-only directory stores: f->closure_lock,
 *     which is held while such a closure streams in (rare, serialised).
 * f->lock and f->fetch_lock are never held across I/O (the fetching flag
 * is). Lock order: closure_lock, then lock. */
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>

#include <kiln/castore/digest_map.h>
#include <kiln/fuse/fuse.h>

#define KFUSE_ROOT_INO 1

/* Largest read the kernel sends (max_read, and max_pages via max_write). */
#define KFUSE_MAX_READ             (1024 * 1024)
#define KFUSE_DEFAULT_READAHEAD_KB 4096

/* Inode table: a fixed directory of lazily allocated pages. Lookups index it
 * without a lock. 2^16 pages of 2^12 inodes: 2^28 inodes at most. */
#define KFUSE_PAGE_BITS 12
#define KFUSE_PAGE_SIZE (1u << KFUSE_PAGE_BITS)
#define KFUSE_MAX_PAGES (1u << 16)

enum kfuse_kind {
        KFUSE_ROOT = 0,
        KFUSE_DIR,
        KFUSE_FILE,
        KFUSE_SYMLINK,
};

/* One entry of a directory listing; names are NUL-terminated (castore names
 * cannot contain NUL) and live in the dirdata's allocation. */
struct kfuse_dirent {
        const char *name;
        uint32_t name_len;
        struct kfuse_inode *inode;
};

/* A populated directory: entries in castore (byte-wise) name order, which
 * is also the readdir order. Immutable once published. */
struct kfuse_dirdata {
        size_t n;
        uint64_t nsubdirs;
        struct kfuse_dirent ents[];
};

/* Directories found through a mount root share its closure state, used when
 * the directory store can only return whole closures (objectstore). */
struct kfuse_origin {
        struct kiln_digest root;
        bool loaded; /* under f->closure_lock */
        struct kfuse_origin *next; /* dynamic roots' origins, under f->lock */
};

struct kfuse_page;
struct kfuse_reader;

struct kfuse_inode {
        uint64_t ino;
        enum kfuse_kind kind;
        bool executable;
        struct kiln_digest digest; /* file: blob; directory: Directory */
        uint64_t size;             /* file: length; symlink: target length */
        char *target;              /* symlink, NUL-terminated */
        /* directories */
        struct kfuse_dirdata *_Atomic dd;
        bool fetching;               /* under f->fetch_lock */
        struct kfuse_origin *origin; /* where it was first found; may be NULL */
        /* files */
        struct kfuse_reader *idle; /* idle cached readers, under f->readers_lock */
};

struct kiln_fuse {
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_fuse_options opts;
        char *mountpoint;

        pthread_mutex_t lock;
        _Atomic(struct kfuse_page *) *pages; /* KFUSE_MAX_PAGES slots */
        uint64_t next_ino;
        struct kiln_digest_map dir_map, file_map, exec_map, link_map;
        struct kfuse_inode root;
        /* dynamic roots: BLAKE3 of the entry name -> inode, and the origins
         * of directory roots (under f->lock) */
        struct kiln_digest_map root_map;
        struct kfuse_origin *dyn_origins;

        pthread_mutex_t fetch_lock;
        pthread_cond_t fetch_cond;

        /* Whole closures fetched for stores that only serve roots: digest ->
         * struct kiln_directory *, consumed as directories are populated. */
        pthread_mutex_t closure_lock;
        struct kiln_digest_map closure_dirs;
        struct kfuse_origin *origins;
        size_t n_origins;

        /* serving */
        struct fuse_session *se;
        bool mounted;
        dev_t dev;
        int stop_fd, done_fd; /* eventfds */
        pthread_t *workers;
        struct kfuse_worker *worker_state;
        unsigned n_workers;
        atomic_uint running;
        int loop_error;

        /* Idle blob readers (ops.c), per inode and in one LRU list. */
        pthread_mutex_t readers_lock;
        struct kfuse_reader *lru_head, *lru_tail;
        unsigned n_idle, max_idle;
        bool no_open;    /* the kernel can do without OPEN/RELEASE for files */
        bool no_opendir; /* ... and without OPENDIR/RELEASEDIR */

        pthread_mutex_t init_lock;
        pthread_cond_t init_cond;
        bool init_done;
};

/* inode.c */
void kfuse_table_init(struct kiln_fuse *f);
void kfuse_table_done(struct kiln_fuse *f);
/* The inode with that number, or NULL. Lock-free. */
struct kfuse_inode *kfuse_inode_get(struct kiln_fuse *f, uint64_t ino);
/* Sets up the root listing from the mount's root nodes. */
int kfuse_roots_init(struct kiln_fuse *f, const struct kiln_node *roots, size_t n,
                     struct kiln_error **err);
/* A dynamic root by name, or NULL. */
struct kfuse_inode *kfuse_root_find(struct kiln_fuse *f, const char *name, size_t len);
/* The listing of a directory (or the root), fetching it on first use.
 * -EIO after logging when the Directory is missing or broken. */
int kfuse_dir_get(struct kiln_fuse *f, struct kfuse_inode *in, const struct kfuse_dirdata **ret);
/* Binary search in a listing; NULL if absent. */
const struct kfuse_dirent *kfuse_dir_find(const struct kfuse_dirdata *dd, const char *name,
                                          size_t len);
/* Number of inodes so far. */
uint64_t kfuse_inode_count(struct kiln_fuse *f);

/* ops.c */
extern const struct fuse_lowlevel_ops kfuse_ops;
/* Frees the cached readers (once no worker runs). */
void kfuse_readers_free_all(struct kiln_fuse *f);
void kfuse_log(struct kiln_fuse *f, const char *fmt, ...) _printf_(2, 3);
/* Per-thread buffer of at least n bytes, kept for the thread's life. */
void *kfuse_thread_buf(size_t n);
void kfuse_thread_buf_free(void);
