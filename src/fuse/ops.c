/* The FUSE low-level operations: a trust boundary, since requests come from
 * any process that can reach the mount. Every inode number is looked up in
 * the table (unknown → ENOENT), every name is checked, and nothing a request
 * says makes us allocate more than the request's own reply size.
 *
 * Attributes (docs/PROTOCOLS.md, "The FUSE view", with kiln's fixes): owner
 * root, timestamps 0, files 0444 or 0555, directories and the root 0555,
 * symlinks 0777 as the kernel shows them anyway. nlink is 1 for files and
 * symlinks and 2 + subdirectories for directories (the root too). A
 * directory's st_size is its number of entries, which is known from the
 * moment the directory is first looked up (that is when its Directory is
 * fetched) and so never changes; the root's is the number of root nodes.
 * Attributes and entries, negative ones included, never expire: the tree
 * cannot change.
 *
 * Reading: seekable blob readers are cached per inode (an LRU of idle
 * readers, bounded by max_idle, shared by every process reading the file).
 * A read takes the idle reader of its inode positioned exactly at its
 * offset, else the closest one below it (a forward seek), else any, else
 * opens one; so sequential readers and the kernel's parallel readahead
 * requests each keep streaming without re-reading chunks. Data is read into
 * a per-thread buffer and replied from there (fuse_reply_buf: one writev;
 * splice would not save the copy for data that is in our memory anyway).
 *
 * readdir offsets are indexes: the entry at index i ("." is 0, ".." is 1,
 * then the listing) carries offset i + 1, and a call with offset o starts at
 * index o. Listings are immutable (the root's too: its nodes are fixed at
 * mount time), so offsets are stable across calls, handles and buffer sizes,
 * and an entry that does not fit is simply sent next time (upstream loses
 * it). "." and ".." are listed; ".." always carries inode 1, since a shared
 * directory has no single parent. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "fuse_int.h"

#define KFUSE_TIMEOUT 1e9 /* seconds: "forever" without overflowing the kernel's jiffies */

#define XATTR_DIR  "user.tvix.castore.directory.digest"
#define XATTR_BLOB "user.tvix.castore.blob.digest"

/* --- attributes --- */

static struct kiln_fuse *req_fs(fuse_req_t req)
{
        return fuse_req_userdata(req);
}

static bool is_dir(const struct kfuse_inode *in)
{
        return in->kind == KFUSE_DIR || in->kind == KFUSE_ROOT;
}

/* dd: the listing of a directory (required for directories and the root). */
static void fill_attr(const struct kfuse_inode *in, const struct kfuse_dirdata *dd, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        st->st_ino = in->ino;
        st->st_blksize = 4096;
        switch (in->kind) {
        case KFUSE_ROOT:
        case KFUSE_DIR:
                st->st_mode = S_IFDIR | 0555;
                st->st_nlink = 2 + dd->nsubdirs;
                st->st_size = (off_t)dd->n;
                break;
        case KFUSE_FILE:
                st->st_mode = S_IFREG | (in->executable ? 0555 : 0444);
                st->st_nlink = 1;
                st->st_size = (off_t)in->size;
                st->st_blocks = (blkcnt_t)((in->size + 511) / 512);
                break;
        case KFUSE_SYMLINK:
                st->st_mode = S_IFLNK | 0777;
                st->st_nlink = 1;
                st->st_size = (off_t)in->size;
                break;
        }
}

/* The attributes of an inode; directories get listed first (EIO if that
 * fails). */
static int inode_attr(struct kiln_fuse *f, struct kfuse_inode *in, struct stat *st)
{
        const struct kfuse_dirdata *dd = NULL;
        if (is_dir(in)) {
                int r = kfuse_dir_get(f, in, &dd);
                if (r < 0)
                        return r;
        }
        fill_attr(in, dd, st);
        return 0;
}

static void fill_entry(struct fuse_entry_param *e, uint64_t ino)
{
        memset(e, 0, sizeof(*e));
        e->ino = ino;
        e->attr_timeout = KFUSE_TIMEOUT;
        e->entry_timeout = KFUSE_TIMEOUT;
}

/* --- lookups and attributes --- */

static void kfuse_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        struct kiln_fuse *f = req_fs(req);
        struct kfuse_inode *dir = kfuse_inode_get(f, parent);
        if (!dir) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        if (!is_dir(dir)) {
                fuse_reply_err(req, ENOTDIR);
                return;
        }
        const struct kfuse_dirdata *dd;
        if (kfuse_dir_get(f, dir, &dd) < 0) {
                fuse_reply_err(req, EIO);
                return;
        }
        size_t len = strlen(name);
        if (kiln_name_validate(name, len, NULL) < 0) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        struct fuse_entry_param e;
        if (dir->kind == KFUSE_ROOT && f->opts.dynamic_roots) {
                /* Names appear as roots are added: no negative entry. */
                struct kfuse_inode *in = kfuse_root_find(f, name, len);
                if (!in) {
                        fuse_reply_err(req, ENOENT);
                        return;
                }
                fill_entry(&e, in->ino);
                if (inode_attr(f, in, &e.attr) < 0) {
                        fuse_reply_err(req, EIO);
                        return;
                }
                fuse_reply_entry(req, &e);
                return;
        }
        const struct kfuse_dirent *ent = kfuse_dir_find(dd, name, len);
        if (!ent) {
                /* A negative entry that never expires: the name never appears. */
                fill_entry(&e, 0);
                fuse_reply_entry(req, &e);
                return;
        }
        fill_entry(&e, ent->inode->ino);
        if (inode_attr(f, ent->inode, &e.attr) < 0) {
                fuse_reply_err(req, EIO);
                return;
        }
        fuse_reply_entry(req, &e);
}

static void kfuse_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        (void)fi;
        struct kiln_fuse *f = req_fs(req);
        struct kfuse_inode *in = kfuse_inode_get(f, ino);
        if (!in) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        struct stat st;
        if (inode_attr(f, in, &st) < 0) {
                fuse_reply_err(req, EIO);
                return;
        }
        fuse_reply_attr(req, &st, KFUSE_TIMEOUT);
}

static void kfuse_readlink(fuse_req_t req, fuse_ino_t ino)
{
        struct kfuse_inode *in = kfuse_inode_get(req_fs(req), ino);
        if (!in)
                fuse_reply_err(req, ENOENT);
        else if (in->kind != KFUSE_SYMLINK)
                fuse_reply_err(req, EINVAL);
        else
                fuse_reply_readlink(req, in->target);
}

static void kfuse_statfs(fuse_req_t req, fuse_ino_t ino)
{
        (void)ino;
        struct statvfs sv = {
            .f_bsize = 4096,
            .f_frsize = 4096,
            .f_files = kfuse_inode_count(req_fs(req)),
            .f_namemax = 255,
            .f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV,
        };
        fuse_reply_statfs(req, &sv);
}

/* --- files --- */

/* A blob reader cached for reuse: busy (owned by one read) or idle (on its
 * inode's idle list and the mount's LRU list, under f->readers_lock). */
struct kfuse_reader {
        struct kiln_blob_reader *r;
        struct kfuse_inode *in;
        uint64_t pos;
        struct kfuse_reader *next_idle;           /* in->idle */
        struct kfuse_reader *lru_prev, *lru_next; /* f->lru_*, most recent first */
};

static void reader_free(struct kfuse_reader *rd)
{
        kiln_blob_reader_free(rd->r);
        free(rd);
}

/* Under readers_lock: takes an idle reader off both lists. */
static void idle_unlink(struct kiln_fuse *f, struct kfuse_reader *rd)
{
        struct kfuse_reader **pp = &rd->in->idle;
        while (*pp != rd)
                pp = &(*pp)->next_idle;
        *pp = rd->next_idle;
        if (rd->lru_prev)
                rd->lru_prev->lru_next = rd->lru_next;
        else
                f->lru_head = rd->lru_next;
        if (rd->lru_next)
                rd->lru_next->lru_prev = rd->lru_prev;
        else
                f->lru_tail = rd->lru_prev;
        rd->next_idle = rd->lru_prev = rd->lru_next = NULL;
        f->n_idle--;
}

void kfuse_readers_free_all(struct kiln_fuse *f)
{
        while (f->lru_head) {
                struct kfuse_reader *rd = f->lru_head;
                idle_unlink(f, rd);
                reader_free(rd);
        }
}

/* An idle reader of `in` for a read at off: the one exactly there, else
 * the closest one below (a forward seek within or past its chunk is
 * cheap), else any. NULL if there is none. */
static struct kfuse_reader *reader_take(struct kiln_fuse *f, struct kfuse_inode *in, uint64_t off)
{
        pthread_mutex_lock(&f->readers_lock);
        struct kfuse_reader *best = NULL;
        for (struct kfuse_reader *rd = in->idle; rd; rd = rd->next_idle) {
                if (rd->pos == off) {
                        best = rd;
                        break;
                }
                if (!best || (rd->pos < off && (best->pos > off || rd->pos > best->pos)))
                        best = rd;
        }
        if (best)
                idle_unlink(f, best);
        pthread_mutex_unlock(&f->readers_lock);
        return best;
}

/* Returns a reader to the cache, evicting the least recently used ones
 * beyond the limit. A reader at the end of its blob is of no further use. */
static void reader_put(struct kiln_fuse *f, struct kfuse_reader *rd)
{
        if (rd->pos >= rd->in->size) {
                reader_free(rd);
                return;
        }
        struct kfuse_reader *evicted = NULL;
        pthread_mutex_lock(&f->readers_lock);
        rd->next_idle = rd->in->idle;
        rd->in->idle = rd;
        rd->lru_prev = NULL;
        rd->lru_next = f->lru_head;
        if (f->lru_head)
                f->lru_head->lru_prev = rd;
        else
                f->lru_tail = rd;
        f->lru_head = rd;
        f->n_idle++;
        while (f->n_idle > f->max_idle) {
                struct kfuse_reader *old = f->lru_tail;
                idle_unlink(f, old);
                old->next_idle = evicted;
                evicted = old;
        }
        pthread_mutex_unlock(&f->readers_lock);
        while (evicted) {
                struct kfuse_reader *next = evicted->next_idle;
                reader_free(evicted);
                evicted = next;
        }
}

/* Opens a reader and checks it against the FileNode: 0 or -EIO (logged). */
static int reader_open(struct kiln_fuse *f, struct kfuse_inode *in, struct kfuse_reader **ret)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_blob_reader *r = NULL;
        int found = kiln_blob_open_read(f->blobs, &in->digest, &r, &err);
        if (found < 0) {
                kfuse_log(f, "blob %s: %s", KILN_DIGEST_B64(&in->digest), kiln_error_msg(err));
                return -EIO;
        }
        if (found == 0) {
                kfuse_log(f, "blob %s not found", KILN_DIGEST_B64(&in->digest));
                return -EIO;
        }
        if (kiln_blob_reader_size(r) != in->size) {
                kfuse_log(f, "blob %s has %llu bytes, its file node says %llu",
                          KILN_DIGEST_B64(&in->digest),
                          (unsigned long long)kiln_blob_reader_size(r),
                          (unsigned long long)in->size);
                kiln_blob_reader_free(r);
                return -EIO;
        }
        struct kfuse_reader *rd = kiln_calloc(1, sizeof(*rd));
        rd->r = r;
        rd->in = in;
        *ret = rd;
        return 0;
}

/* Reads [off, off + n) of a file into buf: the byte count, or -EIO (logged). */
static ssize_t file_read(struct kiln_fuse *f, struct kfuse_inode *in, uint8_t *buf, size_t n,
                         uint64_t off)
{
        struct kfuse_reader *rd = reader_take(f, in, off);
        if (!rd && reader_open(f, in, &rd) < 0)
                return -EIO;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        size_t got = 0;
        int r = 0;
        if (rd->pos != off)
                r = kiln_blob_reader_seek(rd->r, (int64_t)off, SEEK_SET, NULL, &err);
        while (r >= 0 && got < n) {
                ssize_t k = kiln_blob_reader_read(rd->r, buf + got, n - got, &err);
                if (k < 0)
                        r = (int)k;
                else if (k == 0)
                        break;
                else
                        got += (size_t)k;
        }
        if (r < 0) {
                kfuse_log(f, "blob %s: read at %llu: %s", KILN_DIGEST_B64(&in->digest),
                          (unsigned long long)off, kiln_error_msg(err));
                reader_free(rd); /* its state is unknown now */
                return -EIO;
        }
        rd->pos = off + got;
        reader_put(f, rd);
        return (ssize_t)got;
}

/* Files need no per-open state: readers are cached per inode, so with
 * FUSE_CAP_NO_OPEN_SUPPORT (no_open) opens and closes never reach us and
 * the kernel keeps the page cache (its default for no-open). Without it,
 * open answers with keep_cache. Either way a missing blob fails the first
 * read that needs the store, not the open, and a re-read from the page cache
 * never touches the store. */
static void kfuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct kiln_fuse *f = req_fs(req);
        struct kfuse_inode *in = kfuse_inode_get(f, ino);
        if (!in) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        /* Directories are opened through opendir; a symlink only reaches
         * open if the kernel did not resolve it (it always does, and answers
         * O_NOFOLLOW with ELOOP itself). */
        if (is_dir(in)) {
                fuse_reply_err(req, EISDIR);
                return;
        }
        if (in->kind == KFUSE_SYMLINK) {
                fuse_reply_err(req, ELOOP);
                return;
        }
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_APPEND | O_CREAT))) {
                fuse_reply_err(req, EROFS);
                return;
        }
        if (f->no_open) {
                fuse_reply_err(req, ENOSYS); /* "no open needed": the kernel stops asking */
                return;
        }
        fi->fh = 0;
        fi->keep_cache = 1; /* contents never change */
        fi->noflush = 1;
        fuse_reply_open(req, fi);
}

static atomic_uint_fast64_t stat_reads, stat_read_bytes;

void kiln_fuse_read_stats(uint64_t *ret_reads, uint64_t *ret_bytes)
{
        *ret_reads = atomic_load(&stat_reads);
        *ret_bytes = atomic_load(&stat_read_bytes);
}

static void kfuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
        (void)fi;
        struct kiln_fuse *f = req_fs(req);
        struct kfuse_inode *in = kfuse_inode_get(f, ino);
        if (!in || in->kind != KFUSE_FILE) {
                fuse_reply_err(req, in ? EISDIR : ENOENT);
                return;
        }
        if (off < 0 || (uint64_t)off >= in->size || size == 0) {
                fuse_reply_buf(req, NULL, 0);
                return;
        }
        size_t n = (size_t)KILN_MIN((uint64_t)size, in->size - (uint64_t)off);
        uint8_t *buf = kfuse_thread_buf(n);
        ssize_t got = file_read(f, in, buf, n, (uint64_t)off);
        if (got < 0) {
                fuse_reply_err(req, EIO);
                return;
        }
        atomic_fetch_add(&stat_reads, 1);
        atomic_fetch_add(&stat_read_bytes, (uint64_t)got);
        fuse_reply_buf(req, (const char *)buf, (size_t)got);
}

static void kfuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        (void)ino, (void)fi;
        fuse_reply_err(req, 0);
}

/* --- directories --- */

static void kfuse_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct kiln_fuse *f = req_fs(req);
        struct kfuse_inode *in = kfuse_inode_get(f, ino);
        if (!in) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        if (!is_dir(in)) {
                fuse_reply_err(req, ENOTDIR);
                return;
        }
        if (in->kind == KFUSE_ROOT && !f->opts.list_root) {
                fuse_reply_err(req, EPERM);
                return;
        }
        const struct kfuse_dirdata *dd;
        if (kfuse_dir_get(f, in, &dd) < 0) {
                fuse_reply_err(req, EIO);
                return;
        }
        /* Like files, directories need no per-open state. With
         * FUSE_CAP_NO_OPENDIR_SUPPORT the kernel stops sending OPENDIR and
         * RELEASEDIR after this and caches listings by default; the root's
         * EPERM then comes from readdir. */
        if (f->no_opendir) {
                fuse_reply_err(req, ENOSYS);
                return;
        }
        /* Listings never change: let the kernel cache them. */
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
        fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
        struct kiln_fuse *f = req_fs(req);
        struct kfuse_inode *in = kfuse_inode_get(f, ino);
        const struct kfuse_dirdata *dd;
        if (!in) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        if (in->kind == KFUSE_ROOT && !f->opts.list_root) {
                fuse_reply_err(req, EPERM);
                return;
        }
        if (kfuse_dir_get(f, in, &dd) < 0) {
                fuse_reply_err(req, EIO);
                return;
        }
        if (off < 0) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        char *buf = kfuse_thread_buf(size);
        size_t used = 0;
        for (uint64_t idx = (uint64_t)off; idx < dd->n + 2; idx++) {
                const char *name;
                struct fuse_entry_param e;
                memset(&e, 0, sizeof(e));
                if (idx < 2) {
                        /* "." and "..": no lookup reference, just the type;
                         * ".." of a shared directory has no single parent. */
                        name = idx == 0 ? "." : "..";
                        e.attr.st_ino = idx == 0 ? in->ino : KFUSE_ROOT_INO;
                        e.attr.st_mode = S_IFDIR;
                } else {
                        const struct kfuse_dirent *ent = &dd->ents[idx - 2];
                        struct kfuse_inode *c = ent->inode;
                        const struct kfuse_dirdata *cdd =
                            c->kind == KFUSE_DIR
                                ? atomic_load_explicit(&c->dd, memory_order_acquire)
                                : NULL;
                        name = ent->name;
                        if (plus && (c->kind != KFUSE_DIR || cdd)) {
                                fill_entry(&e, c->ino);
                                fill_attr(c, cdd, &e.attr);
                        } else {
                                /* Not yet listed directories go without
                                 * attributes (ino 0): listing a directory
                                 * must not fetch all its subdirectories. The
                                 * kernel looks them up when needed. */
                                e.attr.st_ino = c->ino;
                                e.attr.st_mode = c->kind == KFUSE_DIR       ? S_IFDIR
                                                 : c->kind == KFUSE_SYMLINK ? S_IFLNK
                                                                            : S_IFREG;
                        }
                }
                size_t rem = size - used;
                size_t need =
                    plus ? fuse_add_direntry_plus(req, buf + used, rem, name, &e, (off_t)idx + 1)
                         : fuse_add_direntry(req, buf + used, rem, name, &e.attr, (off_t)idx + 1);
                if (need > rem)
                        break; /* not added; the next call starts with it */
                used += need;
        }
        fuse_reply_buf(req, buf, used);
}

static void kfuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                          struct fuse_file_info *fi)
{
        (void)fi;
        do_readdir(req, ino, size, off, false);
}

static void kfuse_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                              struct fuse_file_info *fi)
{
        (void)fi;
        do_readdir(req, ino, size, off, true);
}

static void kfuse_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        (void)ino, (void)fi;
        fuse_reply_err(req, 0);
}

/* --- extended attributes --- */

static void kfuse_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
        struct kiln_fuse *f = req_fs(req);
        if (!f->opts.show_xattr) {
                fuse_reply_err(req, ENOSYS); /* the kernel stops asking: EOPNOTSUPP */
                return;
        }
        struct kfuse_inode *in = kfuse_inode_get(f, ino);
        if (!in) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        bool match = (in->kind == KFUSE_DIR && !strcmp(name, XATTR_DIR)) ||
                     (in->kind == KFUSE_FILE && !strcmp(name, XATTR_BLOB));
        if (!match) {
                fuse_reply_err(req, ENODATA);
                return;
        }
        char value[KILN_DIGEST_B64_BUFSZ];
        kiln_digest_to_b64(&in->digest, value);
        size_t len = strlen(value); /* no trailing NUL */
        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (size < len)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, value, len);
}

static void kfuse_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
        struct kiln_fuse *f = req_fs(req);
        if (!f->opts.show_xattr) {
                fuse_reply_err(req, ENOSYS);
                return;
        }
        struct kfuse_inode *in = kfuse_inode_get(f, ino);
        if (!in) {
                fuse_reply_err(req, ENOENT);
                return;
        }
        const char *names = in->kind == KFUSE_DIR    ? XATTR_DIR
                            : in->kind == KFUSE_FILE ? XATTR_BLOB
                                                     : "";
        size_t len = *names ? strlen(names) + 1 : 0; /* NUL-terminated list */
        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (size < len)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, names, len);
}

/* --- everything that would modify: EROFS (the mount is read-only too, so
 * the kernel normally answers these itself) --- */

static void erofs(fuse_req_t req)
{
        fuse_reply_err(req, EROFS);
}

static void kfuse_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                          struct fuse_file_info *fi)
{
        (void)ino, (void)attr, (void)to_set, (void)fi;
        erofs(req);
}

static void kfuse_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                        dev_t rdev)
{
        (void)parent, (void)name, (void)mode, (void)rdev;
        erofs(req);
}

static void kfuse_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
        (void)parent, (void)name, (void)mode;
        erofs(req);
}

static void kfuse_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
        (void)parent, (void)name;
        erofs(req);
}

static void kfuse_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
        (void)link, (void)parent, (void)name;
        erofs(req);
}

static void kfuse_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                         const char *newname, unsigned int flags)
{
        (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
        erofs(req);
}

static void kfuse_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
        (void)ino, (void)newparent, (void)newname;
        erofs(req);
}

static void kfuse_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
        (void)ino, (void)buf, (void)size, (void)off, (void)fi;
        erofs(req);
}

static void kfuse_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                           size_t size, int flags)
{
        (void)ino, (void)name, (void)value, (void)size, (void)flags;
        erofs(req);
}

static void kfuse_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
        (void)ino, (void)name;
        erofs(req);
}

static void kfuse_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                         struct fuse_file_info *fi)
{
        (void)parent, (void)name, (void)mode, (void)fi;
        erofs(req);
}

static void kfuse_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                            struct fuse_file_info *fi)
{
        (void)ino, (void)mode, (void)offset, (void)length, (void)fi;
        erofs(req);
}

/* --- session --- */

static void kfuse_init(void *userdata, struct fuse_conn_info *conn)
{
        struct kiln_fuse *f = userdata;
        /* max_read must match the mount option (mount.c); max_write sizes
         * max_pages, which bounds reads too. */
        conn->max_read = KFUSE_MAX_READ;
        conn->max_write = KFUSE_MAX_READ;
        unsigned want = FUSE_CAP_ASYNC_READ | FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO |
                        FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_CACHE_SYMLINKS;
        conn->want |= want & conn->capable;
        f->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
        f->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
        /* Content never changes (no AUTO_INVAL_DATA); replies come from
         * memory (no splice); nothing is ever written. */
        conn->want &=
            ~(unsigned)(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
                        FUSE_CAP_SPLICE_MOVE | FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_POSIX_ACL |
                        FUSE_CAP_HANDLE_KILLPRIV);
        pthread_mutex_lock(&f->init_lock);
        f->init_done = true;
        pthread_cond_broadcast(&f->init_cond);
        pthread_mutex_unlock(&f->init_lock);
}

const struct fuse_lowlevel_ops kfuse_ops = {
    .init = kfuse_init,
    .lookup = kfuse_lookup,
    .getattr = kfuse_getattr,
    .setattr = kfuse_setattr,
    .readlink = kfuse_readlink,
    .mknod = kfuse_mknod,
    .mkdir = kfuse_mkdir,
    .unlink = kfuse_unlink,
    .rmdir = kfuse_unlink,
    .symlink = kfuse_symlink,
    .rename = kfuse_rename,
    .link = kfuse_link,
    .open = kfuse_open,
    .read = kfuse_read,
    .write = kfuse_write,
    .release = kfuse_release,
    .opendir = kfuse_opendir,
    .readdir = kfuse_readdir,
    .readdirplus = kfuse_readdirplus,
    .releasedir = kfuse_releasedir,
    .statfs = kfuse_statfs,
    .setxattr = kfuse_setxattr,
    .getxattr = kfuse_getxattr,
    .listxattr = kfuse_listxattr,
    .removexattr = kfuse_removexattr,
    .create = kfuse_create,
    .fallocate = kfuse_fallocate,
};
