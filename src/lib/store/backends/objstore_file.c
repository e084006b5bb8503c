/* The file object store: objects are files below a base directory. See
 * objstore.h for the publication protocol. No locks: the only state shared
 * between threads is the base directory fd (read-only after open) and the
 * atomic "named temp files" flag, which only ever goes from false to true. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "objstore.h"

#define TMP_PREFIX     ".tmp-"
#define OBJECT_MODE    0444
#define DIR_MODE       0755
#define CLEAN_MAXDEPTH 8

bool kiln_objstore_file_no_tmpfile;

struct file_objstore {
        struct kiln_objstore base;
        int dirfd;
        char *path;
        atomic_bool named_tmp;  /* O_TMPFILE (or linking it) does not work here */
        atomic_bool no_openat2; /* kernel before 5.6 */
        atomic_bool dirty;      /* objects published since the last sync */
};

static bool component_ok(const char *c, size_t n)
{
        if (n == 0 || n > NAME_MAX)
                return false;
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                return false;
        return n < strlen(TMP_PREFIX) || memcmp(c, TMP_PREFIX, strlen(TMP_PREFIX)) != 0;
}

_unused_ static bool key_ok(const char *key)
{
        for (const char *p = key;;) {
                size_t n = strcspn(p, "/");
                if (!component_ok(p, n))
                        return false;
                if (!p[n])
                        return true;
                p += n + 1;
        }
}

/* One openat2 call resolving the whole parent path below the base without
 * following any symlink; -ENOSYS on kernels before 5.6. */
static int open_parent_fast(struct file_objstore *f, const char *key, const char *name)
{
        char parent[PATH_MAX];
        size_t n = (size_t)(name - key) - 1;
        if (n >= sizeof(parent))
                return -ENAMETOOLONG;
        memcpy(parent, key, n);
        parent[n] = '\0';
        struct open_how how = {
                .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int)syscall(SYS_openat2, f->dirfd, parent, &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}

/* Opens the directory holding key's object without following symlinks;
 * creates missing directories when `create`. 1 with *ret_fd and *ret_name
 * (pointing into key), 0 when a directory is missing and !create. */
static int open_parent(struct file_objstore *f, const char *key, bool create, int *ret_fd,
                       const char **ret_name, struct kiln_error **err)
{
        const char *slash = strrchr(key, '/');
        if (slash && !atomic_load(&f->no_openat2)) {
                int fd = open_parent_fast(f, key, slash + 1);
                if (fd >= 0) {
                        *ret_fd = fd;
                        *ret_name = slash + 1;
                        return 1;
                }
                if (fd == -ENOSYS)
                        atomic_store(&f->no_openat2, true);
                else if (fd != -ENOENT)
                        return kiln_error_errno(err, -fd, "open directory of '%s'", key);
                else if (!create)
                        return 0;
        }
        /* The walk: one component at a time (creating) or without openat2. */
        _cleanup_close_ int fd = fcntl(f->dirfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return kiln_error_errno(err, errno, "dup store directory fd");
        const char *p = key;
        for (;;) {
                size_t n = strcspn(p, "/");
                if (!p[n])
                        break;
                char comp[NAME_MAX + 1];
                memcpy(comp, p, n);
                comp[n] = '\0';
                int sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 && errno == ENOENT && create) {
                        if (mkdirat(fd, comp, DIR_MODE) < 0 && errno != EEXIST) {
                                return kiln_error_errno(err, errno, "create directory for '%s'",
                                                        key);
                        }
                        sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                if (sub < 0) {
                        if (errno == ENOENT && !create)
                                return 0;
                        return kiln_error_errno(err, errno, "open directory '%.*s' of '%s'",
                                                (int)(p + n - key), key, key);
                }
                close(fd);
                fd = sub;
                p += n + 1;
        }
        *ret_fd = TAKE_FD(fd);
        *ret_name = p;
        return 1;
}

static int file_exists(struct kiln_objstore *o, const char *key, struct kiln_error **err)
{
        struct file_objstore *f = (struct file_objstore *)o;
        assert(key_ok(key));
        _cleanup_close_ int dfd = -1;
        const char *name;
        int r = open_parent(f, key, false, &dfd, &name, err);
        if (r <= 0)
                return r;
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0;
                return kiln_error_errno(err, errno, "stat object '%s'", key);
        }
        return 1;
}

static int file_get(struct kiln_objstore *o, const char *key, size_t limit, struct kiln_buf *buf,
                    struct kiln_error **err)
{
        struct file_objstore *f = (struct file_objstore *)o;
        assert(key_ok(key));
        _cleanup_close_ int dfd = -1;
        const char *name;
        int r = open_parent(f, key, false, &dfd, &name, err);
        if (r <= 0)
                return r;
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                return kiln_error_errno(err, errno, "open object '%s'", key);
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return kiln_error_errno(err, errno, "stat object '%s'", key);
        if (!S_ISREG(st.st_mode))
                return kiln_error_set(err, EBADMSG, "object '%s' is not a regular file", key);
        if ((uint64_t)st.st_size > limit)
                return kiln_error_set(err, EBADMSG, "object '%s' is too large (%jd bytes)", key,
                                      (intmax_t)st.st_size);
        kiln_buf_clear(buf);
        kiln_buf_reserve(buf, (size_t)st.st_size + 1);
        /* One byte more than expected, to notice growth (never for our files). */
        ssize_t n = kiln_read_full(fd, buf->data, (size_t)st.st_size + 1);
        if (n < 0)
                return kiln_error_errno(err, (int)-n, "read object '%s'", key);
        if ((size_t)n > limit)
                return kiln_error_set(err, EBADMSG, "object '%s' is too large", key);
        buf->len = (size_t)n;
        return 1;
}

static int write_object(int fd, const void *p, size_t n, const char *key,
                        struct kiln_error **err)
{
        int r = kiln_write_all(fd, p, n);
        if (r < 0)
                return kiln_error_errno(err, -r, "write object '%s'", key);
        return 0;
}

/* O_TMPFILE publication. 1 stored, 0 present, -EOPNOTSUPP (without *err)
 * when this file system or process cannot do it. */
static int put_tmpfile(int dfd, const char *name, const char *key, const void *p, size_t n,
                       struct kiln_error **err)
{
        _cleanup_close_ int fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, OBJECT_MODE);
        if (fd < 0) {
                if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
                        return -EOPNOTSUPP;
                return kiln_error_errno(err, errno, "create temp file for '%s'", key);
        }
        int r = write_object(fd, p, n, key, err);
        if (r < 0)
                return r;
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        r = linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW);
        if (r < 0 && errno == ENOENT) /* no /proc: needs CAP_DAC_READ_SEARCH */
                r = linkat(fd, "", dfd, name, AT_EMPTY_PATH);
        if (r < 0) {
                if (errno == EEXIST)
                        return 0;
                if (errno == ENOENT || errno == EPERM)
                        return -EOPNOTSUPP;
                return kiln_error_errno(err, errno, "link object '%s'", key);
        }
        return 1;
}

static void tmp_name(char buf[32])
{
        uint64_t x;
        if (getrandom(&x, sizeof(x), 0) != sizeof(x)) {
                static atomic_uint_fast64_t counter;
                x = ((uint64_t)getpid() << 32) ^ (uint64_t)atomic_fetch_add(&counter, 1) ^
                    (uint64_t)(uintptr_t)buf;
        }
        snprintf(buf, 32, TMP_PREFIX "%016llx", (unsigned long long)x);
}

/* Named-temp-file publication. The temp file is locked before it is used:
 * kiln_objstore_file_clean() removes only unlocked ones, and if it removed
 * ours between create and lock, st_nlink is 0 and we start over. */
static int put_named(int dfd, const char *name, const char *key, const void *p, size_t n,
                     struct kiln_error **err)
{
        char tmp[32];
        _cleanup_close_ int fd = -1;
        int r;

        for (unsigned attempt = 0;; attempt++) {
                tmp_name(tmp);
                fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                            OBJECT_MODE);
                if (fd < 0) {
                        if (errno == EEXIST && attempt < 16)
                                continue;
                        return kiln_error_errno(err, errno, "create temp file for '%s'", key);
                }
                if (flock(fd, LOCK_EX) < 0) {
                        r = kiln_error_errno(err, errno, "lock temp file for '%s'", key);
                        goto fail;
                }
                struct stat st;
                if (fstat(fd, &st) < 0) {
                        r = kiln_error_errno(err, errno, "stat temp file for '%s'", key);
                        goto fail;
                }
                if (st.st_nlink > 0)
                        break;
                close(TAKE_FD(fd));
                if (attempt >= 16)
                        return kiln_error_set(err, EAGAIN, "temp files for '%s' keep vanishing",
                                              key);
        }
        r = write_object(fd, p, n, key, err);
        if (r < 0)
                goto fail;
        if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST) {
                        unlinkat(dfd, tmp, 0);
                        return 0;
                }
                if (errno != EINVAL && errno != ENOSYS) {
                        r = kiln_error_errno(err, errno, "rename object '%s'", key);
                        goto fail;
                }
                /* No RENAME_NOREPLACE here: link (fails if present), unlink. */
                bool existed = false;
                if (linkat(dfd, tmp, dfd, name, 0) < 0) {
                        if (errno != EEXIST) {
                                r = kiln_error_errno(err, errno, "link object '%s'", key);
                                goto fail;
                        }
                        existed = true;
                }
                unlinkat(dfd, tmp, 0);
                if (existed)
                        return 0;
        }
        return 1;
fail:
        unlinkat(dfd, tmp, 0);
        return r;
}

static int file_put(struct kiln_objstore *o, const char *key, const void *p, size_t n,
                    struct kiln_error **err)
{
        struct file_objstore *f = (struct file_objstore *)o;
        assert(key_ok(key));
        _cleanup_close_ int dfd = -1;
        const char *name;
        int r = open_parent(f, key, true, &dfd, &name, err);
        if (r < 0)
                return r;
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return 0;
        if (errno != ENOENT)
                return kiln_error_errno(err, errno, "stat object '%s'", key);
        if (!atomic_load(&f->named_tmp)) {
                r = put_tmpfile(dfd, name, key, p, n, err);
                if (r == -EOPNOTSUPP)
                        atomic_store(&f->named_tmp, true);
        }
        if (atomic_load(&f->named_tmp))
                r = put_named(dfd, name, key, p, n, err);
        if (r > 0)
                atomic_store(&f->dirty, true);
        return r;
}

static int clean_dir(int dfd, unsigned depth, const char *what, struct kiln_error **err)
{
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return kiln_error_errno(err, errno, "open '%s'", what);
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return kiln_error_errno(err, errno, "read '%s'", what);
        }
        int removed = 0, r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                bool tmp = !strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX));
                if (de->d_type == DT_DIR || (de->d_type == DT_UNKNOWN && !tmp)) {
                        if (depth >= CLEAN_MAXDEPTH)
                                continue;
                        int sub = openat(dirfd(d), de->d_name,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0)
                                continue; /* DT_UNKNOWN that is not a directory */
                        r = clean_dir(sub, depth + 1, what, err);
                        close(sub);
                        if (r < 0)
                                break;
                        removed += r;
                        r = 0;
                } else if (tmp) {
                        int tfd = openat(dirfd(d), de->d_name,
                                         O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
                        if (tfd < 0)
                                continue;
                        /* A free lock means the writer is gone (locks die with
                         * their process). We unlink while holding it, so a
                         * writer that races us sees st_nlink == 0. */
                        if (flock(tfd, LOCK_EX | LOCK_NB) == 0 &&
                            unlinkat(dirfd(d), de->d_name, 0) == 0)
                                removed++;
                        close(tfd);
                }
        }
        closedir(d);
        return r < 0 ? r : removed;
}

int kiln_objstore_file_clean(struct kiln_objstore *o, struct kiln_error **err)
{
        struct file_objstore *f = (struct file_objstore *)o;
        int r = clean_dir(f->dirfd, 0, f->path, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "remove stale temp files");
        return r;
}

static int file_sync(struct kiln_objstore *o, struct kiln_error **err)
{
        struct file_objstore *f = (struct file_objstore *)o;
        /* Nothing new (an import of what is stored already): no flush. A put
         * racing with us sets the flag again for its own sync. */
        if (!atomic_exchange(&f->dirty, false))
                return 0;
        if (syncfs(f->dirfd) < 0)
                return kiln_error_errno(err, errno, "sync object store '%s'", f->path);
        return 0;
}

static void file_free(struct kiln_objstore *o)
{
        struct file_objstore *f = (struct file_objstore *)o;
        if (f->dirfd >= 0)
                close(f->dirfd);
        free(f->path);
        free(f);
}

static const struct kiln_objstore_ops file_ops = {
        .name = "file",
        .put = file_put,
        .get = file_get,
        .exists = file_exists,
        .sync = file_sync,
        .free = file_free,
};

/* mkdir -p */
static int mkdir_p(const char *path, struct kiln_error **err)
{
        _cleanup_free_ char *p = kiln_strdup(path);
        for (char *s = p + 1;; s++) {
                if (*s != '/' && *s)
                        continue;
                char c = *s;
                *s = '\0';
                if (mkdir(p, DIR_MODE) < 0 && errno != EEXIST)
                        return kiln_error_errno(err, errno, "create directory '%s'", p);
                *s = c;
                if (!c)
                        return 0;
        }
}

/* Whether O_TMPFILE files can be created and named through /proc here. */
static bool tmpfile_works(int dfd)
{
        _cleanup_close_ int fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, OBJECT_MODE);
        if (fd < 0)
                return false;
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        struct stat st;
        return stat(proc, &st) == 0;
}

int kiln_objstore_file_new(const char *path, struct kiln_objstore **ret, struct kiln_error **err)
{
        assert(path[0] == '/');
        int r = mkdir_p(path, err);
        if (r < 0)
                return r;
        struct file_objstore *f = kiln_calloc(1, sizeof(*f));
        f->base.ops = &file_ops;
        f->path = kiln_strdup(path);
        f->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (f->dirfd < 0) {
                r = kiln_error_errno(err, errno, "open store directory '%s'", path);
                file_free(&f->base);
                return r;
        }
        bool named = kiln_objstore_file_no_tmpfile || !tmpfile_works(f->dirfd);
        atomic_init(&f->named_tmp, named);
        if (named) {
                r = kiln_objstore_file_clean(&f->base, err);
                if (r < 0) {
                        file_free(&f->base);
                        return r;
                }
        }
        *ret = &f->base;
        return 0;
}
