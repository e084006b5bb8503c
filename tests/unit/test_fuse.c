/* libkiln-fuse: the library entry points (mount, wait, stop, free) and the
 * filesystem seen through a real mount, served from this process. Needs
 * root and a usable /dev/fuse: skips otherwise, unless KILN_TEST_MUST_RUN=1,
 * which turns the skip into a failure. */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>

#include <kiln/store/backend.h>
#include <kiln/fuse/fuse.h>
#include <kiln/ingest/import.h>
#include <kiln/store/store.h>

static char base[64];
static char mnt[128];
static char fuse_skip_reason[128];

/* --- log capture --- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kiln_buf log_buf;

static void capture_log(void *ctx, const char *line)
{
        (void)ctx;
        pthread_mutex_lock(&log_lock);
        kiln_buf_append(&log_buf, line, strlen(line));
        kiln_buf_append(&log_buf, "\n", 2); /* keeps a NUL after the text */
        log_buf.len--;
        pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *needle)
{
        pthread_mutex_lock(&log_lock);
        bool r = log_buf.data && strstr((const char *)log_buf.data, needle);
        pthread_mutex_unlock(&log_lock);
        return r;
}

static void log_reset(void)
{
        pthread_mutex_lock(&log_lock);
        kiln_buf_done(&log_buf);
        pthread_mutex_unlock(&log_lock);
}

/* --- a directory service that counts gets and can be slow --- */

struct counting_dirs {
        struct kiln_directory_service base;
        struct kiln_directory_service *inner;
        atomic_int gets;
        unsigned delay_ms;
};

static int counting_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                        struct kiln_directory *ret, struct kiln_error **err)
{
        struct counting_dirs *c = (struct counting_dirs *)s;
        atomic_fetch_add(&c->gets, 1);
        if (c->delay_ms) {
                struct timespec ts = {0, (long)c->delay_ms * 1000000L};
                nanosleep(&ts, NULL);
        }
        return kiln_directory_get(c->inner, d, ret, err);
}

static int counting_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                        struct kiln_digest *ret, struct kiln_error **err)
{
        return kiln_directory_put(((struct counting_dirs *)s)->inner, dir, ret, err);
}

static void counting_free(struct kiln_directory_service *s)
{
        free(s);
}

static const struct kiln_directory_service_ops counting_ops = {
    .name = "counting",
    .get = counting_get,
    .put = counting_put,
    .free = counting_free,
};

static struct counting_dirs *counting_new(struct kiln_directory_service *inner, unsigned delay)
{
        struct counting_dirs *c = kiln_calloc(1, sizeof(*c));
        c->base.ops = &counting_ops;
        c->inner = inner;
        c->delay_ms = delay;
        return c;
}

/* --- a blob service that counts opened readers --- */

struct counting_blobs {
        struct kiln_blob_service base;
        struct kiln_blob_service *inner;
        atomic_int opens;
};

static int cb_has(struct kiln_blob_service *s, const struct kiln_digest *d, struct kiln_error **err)
{
        return kiln_blob_has(((struct counting_blobs *)s)->inner, d, err);
}

static int cb_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                        struct kiln_blob_reader **ret, struct kiln_error **err)
{
        struct counting_blobs *c = (struct counting_blobs *)s;
        atomic_fetch_add(&c->opens, 1);
        return kiln_blob_open_read(c->inner, d, ret, err);
}

static int cb_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                         struct kiln_error **err)
{
        return kiln_blob_open_write(((struct counting_blobs *)s)->inner, ret, err);
}

static void cb_free(struct kiln_blob_service *s)
{
        free(s);
}

static const struct kiln_blob_service_ops counting_blob_ops = {
    .name = "counting",
    .has = cb_has,
    .open_read = cb_open_read,
    .open_write = cb_open_write,
    .free = cb_free,
};

/* --- fixture --- */

static struct kiln_blob_service *blobs;
static struct kiln_directory_service *dirs;
static struct kiln_node tree; /* the imported source tree */
static struct kiln_digest same_digest;

static void write_file(const char *rel, const void *p, size_t n, mode_t mode)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/src/%s", base, rel);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(kiln_write_all(fd, p, n), 0);
        close(fd);
}

static void mkdir_src(const char *rel)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/src/%s", base, rel);
        assert_int_equal(mkdir(path, 0755), 0);
}

static bool fuse_usable(void)
{
        if (geteuid() != 0) {
                snprintf(fuse_skip_reason, sizeof(fuse_skip_reason), "not running as root");
                return false;
        }
        int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                snprintf(fuse_skip_reason, sizeof(fuse_skip_reason), "cannot open /dev/fuse: %s",
                         strerror(errno));
                return false;
        }
        close(fd);
        return true;
}

static int group_setup(void **state)
{
        (void)state;
        if (!fuse_usable())
                return 0;
        snprintf(base, sizeof(base), "/tmp/kiln-fuse-test.XXXXXX");
        assert_non_null(mkdtemp(base));
        snprintf(mnt, sizeof(mnt), "%s/mnt", base);
        assert_int_equal(mkdir(mnt, 0755), 0);

        mkdir_src("");
        mkdir_src("a");
        mkdir_src("a/b");
        mkdir_src("empty");
        write_file("a/hello", "hello\n", 6, 0644);
        write_file("a/b/empty-file", "", 0, 0644);
        write_file("plain", "same bytes", 10, 0644);
        write_file("plain2", "same bytes", 10, 0644);
        write_file("exec", "same bytes", 10, 0755);
        size_t big_n = 3 * 1024 * 1024 + 17;
        uint8_t *big = kiln_malloc(big_n);
        for (size_t i = 0; i < big_n; i++)
                big[i] = (uint8_t)(i * 2654435761u >> 13);
        write_file("a/big", big, big_n, 0644);
        free(big);
        char p[512];
        snprintf(p, sizeof(p), "%s/src/link", base);
        assert_int_equal(symlink("a/hello", p), 0);

        struct kiln_error *err = NULL;
        assert_ok(kiln_blob_service_open("memory://", &blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &dirs, &err), err);
        struct kiln_import_options io = {.blobs = blobs, .dirs = dirs};
        snprintf(p, sizeof(p), "%s/src", base);
        assert_ok(kiln_import_path(&io, AT_FDCWD, p, &tree, &err), err);
        kiln_node_set_name(&tree, "src", 3);
        kiln_digest_of("same bytes", 10, &same_digest);
        return 0;
}

static int rm_cb(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st, (void)type, (void)ftw;
        return remove(p);
}

static int group_teardown(void **state)
{
        (void)state;
        if (!base[0])
                return 0;
        for (int i = 0; i < 8 && umount2(mnt, MNT_DETACH) == 0; i++)
                ;
        nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        kiln_node_done(&tree);
        kiln_blob_service_free(blobs);
        kiln_directory_service_free(dirs);
        log_reset();
        return 0;
}

static int test_setup(void **state)
{
        (void)state;
        if (!base[0]) {
                if (getenv("KILN_TEST_MUST_RUN") && !strcmp(getenv("KILN_TEST_MUST_RUN"), "1"))
                        fail_msg("FUSE unusable (%s) and KILN_TEST_MUST_RUN=1", fuse_skip_reason);
                printf("skipped: FUSE unusable: %s\n", fuse_skip_reason);
                skip();
        }
        log_reset();
        /* A failed test may have left its mount: start each on a clean point. */
        for (int i = 0; i < 8 && umount2(mnt, MNT_DETACH) == 0; i++)
                ;
        return 0;
}

static struct kiln_fuse *mount_with(struct kiln_blob_service *bs, struct kiln_directory_service *ds,
                                    const struct kiln_node *roots, size_t n, bool list_root)
{
        struct kiln_fuse_options o = {
            .threads = 4, .list_root = list_root, .show_xattr = true, .log = capture_log};
        struct kiln_fuse *f = NULL;
        struct kiln_error *err = NULL;
        assert_ok(kiln_fuse_mount(bs, ds, roots, n, mnt, &o, &f, &err), err);
        return f;
}

static struct kiln_fuse *mount_roots(struct kiln_directory_service *ds,
                                     const struct kiln_node *roots, size_t n, bool list_root)
{
        struct kiln_fuse_options o = {
            .threads = 4, .list_root = list_root, .show_xattr = true, .log = capture_log};
        struct kiln_fuse *f = NULL;
        struct kiln_error *err = NULL;
        assert_ok(kiln_fuse_mount(blobs, ds, roots, n, mnt, &o, &f, &err), err);
        return f;
}

static void unmount(struct kiln_fuse *f)
{
        kiln_fuse_stop(f);
        struct kiln_error *err = NULL;
        assert_ok(kiln_fuse_wait(f, &err), err);
        kiln_fuse_free(f);
        struct stat st, st_base;
        assert_int_equal(stat(mnt, &st), 0);
        assert_int_equal(stat(base, &st_base), 0);
        assert_true(st.st_dev == st_base.st_dev); /* really gone */
}

/* 0 if a directory can be listed, else the errno of opendir or readdir
 * (the root's EPERM comes from either, depending on whether the kernel
 * still sends OPENDIR). */
static int list_errno(const char *path)
{
        DIR *d = opendir(path);
        if (!d)
                return errno;
        errno = 0;
        while (readdir(d))
                ;
        int e = errno;
        closedir(d);
        return e;
}

static char *at(const char *rel)
{
        static __thread char p[600];
        snprintf(p, sizeof(p), "%s/%s", mnt, rel);
        return p;
}

static size_t read_all(const char *path, uint8_t *buf, size_t cap)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        ssize_t n = kiln_read_full(fd, buf, cap);
        assert_true(n >= 0);
        close(fd);
        return (size_t)n;
}

/* --- tests --- */

static void test_tree(void **state)
{
        (void)state;
        struct kiln_fuse *f = mount_roots(dirs, &tree, 1, false);
        struct stat st;

        assert_int_equal(stat(mnt, &st), 0);
        assert_int_equal(st.st_ino, 1);
        assert_int_equal(st.st_nlink, 3); /* one directory root */
        assert_int_equal(st.st_size, 1);
        /* list_root off: the root cannot be listed, but looked into */
        assert_int_equal(list_errno(mnt), EPERM);

        assert_int_equal(stat(at("src"), &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0555);
        assert_int_equal(st.st_nlink, 4); /* a, empty */
        assert_int_equal(st.st_size, 6);  /* a empty exec link plain plain2 */
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(st.st_mtime, 0);

        assert_int_equal(stat(at("src/empty"), &st), 0);
        assert_int_equal(st.st_nlink, 2);
        assert_int_equal(st.st_size, 0);

        struct stat plain, plain2, exec;
        assert_int_equal(stat(at("src/plain"), &plain), 0);
        assert_int_equal(stat(at("src/plain2"), &plain2), 0);
        assert_int_equal(stat(at("src/exec"), &exec), 0);
        assert_int_equal(plain.st_mode, S_IFREG | 0444);
        assert_int_equal(exec.st_mode, S_IFREG | 0555);
        assert_int_equal(plain.st_nlink, 1);
        assert_int_equal(plain.st_size, 10);
        assert_int_equal(plain.st_ino, plain2.st_ino);   /* same content, same inode */
        assert_int_not_equal(plain.st_ino, exec.st_ino); /* but not when executable */

        char target[64];
        ssize_t n = readlink(at("src/link"), target, sizeof(target));
        assert_int_equal(n, 7);
        assert_memory_equal(target, "a/hello", 7);
        assert_int_equal(lstat(at("src/link"), &st), 0);
        assert_int_equal(st.st_nlink, 1);
        assert_int_equal(st.st_size, 7);

        uint8_t buf[64];
        assert_int_equal(read_all(at("src/link"), buf, sizeof(buf)), 6);
        assert_memory_equal(buf, "hello\n", 6);
        assert_int_equal(read_all(at("src/a/b/empty-file"), buf, sizeof(buf)), 0);

        /* the big file, whole and at odd offsets */
        size_t big_n = 3 * 1024 * 1024 + 17;
        uint8_t *big = kiln_malloc(big_n + 1);
        assert_int_equal(read_all(at("src/a/big"), big, big_n + 1), big_n);
        for (size_t i = 0; i < big_n; i++)
                if (big[i] != (uint8_t)(i * 2654435761u >> 13))
                        fail_msg("big differs at %zu", i);
        int fd = open(at("src/a/big"), O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, buf, 10, 2000001), 10);
        for (size_t i = 0; i < 10; i++)
                assert_int_equal(buf[i], (uint8_t)((2000001 + i) * 2654435761u >> 13));
        assert_int_equal(pread(fd, buf, 10, (off_t)big_n - 3), 3);
        assert_int_equal(pread(fd, buf, 10, (off_t)big_n + 5), 0);
        close(fd);
        free(big);

        /* xattrs */
        char val[64];
        char want[KILN_DIGEST_B64_BUFSZ];
        kiln_digest_to_b64(&same_digest, want);
        assert_int_equal(getxattr(at("src/plain"), "user.tvix.castore.blob.digest", NULL, 0),
                         strlen(want));
        n = getxattr(at("src/plain"), "user.tvix.castore.blob.digest", val, sizeof(val));
        assert_int_equal(n, strlen(want));
        assert_memory_equal(val, want, strlen(want));
        assert_int_equal(getxattr(at("src/plain"), "user.tvix.castore.blob.digest", val, 10), -1);
        assert_int_equal(errno, ERANGE);
        assert_int_equal(getxattr(at("src/plain"), "user.other", val, sizeof(val)), -1);
        assert_int_equal(errno, ENODATA);
        kiln_digest_to_b64(&tree.digest, want);
        n = getxattr(at("src"), "user.tvix.castore.directory.digest", val, sizeof(val));
        assert_int_equal(n, strlen(want));
        assert_memory_equal(val, want, strlen(want));
        char names[128];
        n = listxattr(at("src"), names, sizeof(names));
        assert_int_equal(n, sizeof("user.tvix.castore.directory.digest"));
        assert_string_equal(names, "user.tvix.castore.directory.digest");
        assert_int_equal(listxattr(at("src/plain"), NULL, 0),
                         sizeof("user.tvix.castore.blob.digest"));

        /* nothing can be changed */
        assert_int_equal(open(at("src/plain"), O_WRONLY | O_CLOEXEC), -1);
        assert_int_equal(errno, EROFS);
        assert_int_equal(open(at("src/new"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), -1);
        assert_int_equal(errno, EROFS);
        assert_int_equal(mkdir(at("src/d"), 0755), -1);
        assert_int_equal(errno, EROFS);
        assert_int_equal(unlink(at("src/plain")), -1);
        assert_int_equal(errno, EROFS);
        assert_int_equal(chmod(at("src/plain"), 0777), -1);
        assert_int_equal(errno, EROFS);
        assert_int_equal(rename(at("src/plain"), at("src/x")), -1);
        assert_int_equal(errno, EROFS);
        assert_int_equal(setxattr(at("src/plain"), "user.x", "1", 1, 0), -1);
        assert_int_equal(errno, EROFS);

        /* missing names, including the root's */
        assert_int_equal(stat(at("src/nope"), &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(stat(at("sr"), &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(stat(at("srcc"), &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(stat(at("src/plain/x"), &st), -1);
        assert_int_equal(errno, ENOTDIR);
        unmount(f);
}

static struct kiln_node file_node(const char *name, const struct kiln_digest *d, uint64_t size)
{
        struct kiln_node n = {.kind = KILN_NODE_FILE, .digest = *d, .size = size};
        kiln_node_set_name(&n, name, strlen(name));
        return n;
}

/* Lists a directory with getdents64 into a buffer of bufsz bytes; returns
 * the names (heap, NULL-terminated) and the d_off of every entry. */
static char **list_getdents(const char *path, size_t bufsz, off_t start, off_t **ret_offs,
                            size_t *ret_n)
{
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        if (start)
                assert_int_equal(lseek(fd, start, SEEK_SET), start);
        char *buf = kiln_malloc(bufsz);
        char **names = NULL;
        off_t *offs = NULL;
        size_t n = 0;
        for (;;) {
                long k = syscall(SYS_getdents64, fd, buf, bufsz);
                assert_true(k >= 0);
                if (k == 0)
                        break;
                for (long pos = 0; pos < k;) {
                        struct {
                                uint64_t ino;
                                int64_t off;
                                unsigned short reclen;
                                unsigned char type;
                                char name[];
                        } *d = (void *)(buf + pos);
                        names = kiln_reallocarray(names, n + 2, sizeof(*names));
                        offs = kiln_reallocarray(offs, n + 1, sizeof(*offs));
                        names[n] = kiln_strdup(d->name);
                        offs[n] = d->off;
                        n++;
                        pos += d->reclen;
                }
        }
        if (names)
                names[n] = NULL;
        free(buf);
        close(fd);
        *ret_offs = offs;
        *ret_n = n;
        return names;
}

static void free_names(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* Checks that a listing is ".", "..", then name_<i> for i in [from, count),
 * in castore order (which for zero-padded names is numeric order). */
static void check_listing(char **names, size_t n, size_t from, size_t count, bool dots)
{
        size_t i = 0;
        if (dots) {
                assert_true(n >= 2);
                assert_string_equal(names[0], ".");
                assert_string_equal(names[1], "..");
                i = 2;
        }
        assert_int_equal(n - i, count - from);
        for (size_t k = from; k < count; k++, i++) {
                char want[32];
                snprintf(want, sizeof(want), "f%05zu", k);
                assert_string_equal(names[i], want);
        }
}

static void test_readdir_offsets(void **state)
{
        (void)state;
        enum { N = 10000, NROOTS = 700 };
        struct kiln_error *err = NULL;
        struct kiln_directory *d = kiln_directory_new();
        struct kiln_digest hello;
        kiln_digest_of("hello\n", 6, &hello);
        for (size_t i = 0; i < N; i++) {
                char name[16];
                snprintf(name, sizeof(name), "f%05zu", i);
                struct kiln_node n = file_node(name, &hello, 6);
                kiln_directory_add(d, &n);
        }
        assert_ok(kiln_directory_seal(d, &err), err);
        struct kiln_digest dd;
        assert_ok(kiln_directory_put(dirs, d, &dd, &err), err);
        kiln_directory_free(d);

        /* the big directory as one root, plus many file roots for the root listing */
        struct kiln_node *roots = kiln_calloc(NROOTS, sizeof(*roots));
        for (size_t i = 0; i < NROOTS; i++) {
                char name[16];
                snprintf(name, sizeof(name), "f%05zu", i);
                roots[i] = file_node(name, &hello, 6);
        }
        roots[NROOTS - 1].kind = KILN_NODE_DIRECTORY;
        roots[NROOTS - 1].digest = dd;
        roots[NROOTS - 1].size = 0;
        struct kiln_fuse *f = mount_roots(dirs, roots, NROOTS, true);

        const char *big = at("f00699");
        off_t *offs, *offs2;
        size_t n, n2;
        char **names = list_getdents(big, 32768, 0, &offs, &n);
        check_listing(names, n, 0, N, true);
        /* tiny buffers: one or two entries per call */
        char **names2 = list_getdents(big, 64, 0, &offs2, &n2);
        assert_int_equal(n2, n);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(names[i], names2[i]);
                assert_int_equal(offs[i], offs2[i]);
        }
        free_names(names2, n2);
        free(offs2);
        /* resuming at a reported offset gives exactly the rest */
        names2 = list_getdents(big, 4096, offs[5000], &offs2, &n2);
        check_listing(names2, n2, 5000 - 1, N, false);
        free_names(names2, n2);
        free(offs2);
        free_names(names, n);
        free(offs);

        /* the root listing too */
        names = list_getdents(mnt, 100, 0, &offs, &n);
        check_listing(names, n, 0, NROOTS, true);
        names2 = list_getdents(mnt, 4096, offs[300], &offs2, &n2);
        check_listing(names2, n2, 300 - 1, NROOTS, false);
        free_names(names2, n2);
        free(offs2);
        free_names(names, n);
        free(offs);

        /* readdir with stat (readdirplus) agrees with lookups */
        DIR *dir = opendir(big);
        assert_non_null(dir);
        struct dirent *de;
        size_t seen = 0;
        while ((de = readdir(dir))) {
                if (de->d_name[0] == '.')
                        continue;
                struct stat st;
                assert_int_equal(fstatat(dirfd(dir), de->d_name, &st, 0), 0);
                assert_int_equal(st.st_ino, de->d_ino);
                assert_int_equal(de->d_type, DT_REG);
                seen++;
        }
        closedir(dir);
        assert_int_equal(seen, N);

        for (size_t i = 0; i < NROOTS; i++)
                kiln_node_done(&roots[i]);
        free(roots);
        unmount(f);
}

struct stat_job {
        const char *path;
        int result;
};

static void *stat_thread(void *arg)
{
        struct stat_job *j = arg;
        struct stat st;
        j->result = stat(j->path, &st) < 0 ? -errno : (int)st.st_nlink;
        return NULL;
}

static void test_concurrent_first_lookups(void **state)
{
        (void)state;
        struct counting_dirs *c = counting_new(dirs, 100);
        struct kiln_fuse *f = mount_roots(&c->base, &tree, 1, false);
        enum { T = 8 };
        pthread_t th[T];
        struct stat_job jobs[T];
        for (size_t i = 0; i < T; i++) {
                jobs[i] = (struct stat_job){.path = at("src/a/b")};
                pthread_create(&th[i], NULL, stat_thread, &jobs[i]);
        }
        for (size_t i = 0; i < T; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(jobs[i].result, 2);
        }
        /* src, src/a, src/a/b: each fetched once */
        assert_int_equal(atomic_load(&c->gets), 3);
        unmount(f);
        counting_free(&c->base);
}

static void test_missing_objects(void **state)
{
        (void)state;
        struct kiln_digest nowhere;
        memset(&nowhere, 0x42, sizeof(nowhere));
        struct kiln_node roots[2] = {
            {.kind = KILN_NODE_DIRECTORY, .digest = nowhere},
            file_node("file", &nowhere, 100),
        };
        kiln_node_set_name(&roots[0], "dir", 3);
        struct kiln_fuse *f = mount_roots(dirs, roots, 2, true);
        char b64[KILN_DIGEST_B64_BUFSZ];
        kiln_digest_to_b64(&nowhere, b64);

        struct stat st;
        assert_int_equal(stat(at("dir"), &st), -1);
        assert_int_equal(errno, EIO);
        char want[128];
        snprintf(want, sizeof(want), "directory %s not found", b64);
        assert_true(log_has(want));

        assert_int_equal(stat(at("file"), &st), 0);      /* metadata is in the node */
        int fd = open(at("file"), O_RDONLY | O_CLOEXEC); /* the store is not asked yet */
        assert_true(fd >= 0);
        char c;
        assert_int_equal(read(fd, &c, 1), -1);
        assert_int_equal(errno, EIO);
        close(fd);
        snprintf(want, sizeof(want), "blob %s not found", b64);
        assert_true(log_has(want));

        /* the root listing still works, a broken directory's does not */
        assert_int_equal(list_errno(mnt), 0);
        assert_int_equal(list_errno(at("dir")), EIO);
        kiln_node_done(&roots[0]);
        kiln_node_done(&roots[1]);
        unmount(f);
}

/* A directory store that only returns whole closures by their root
 * (objectstore): subdirectories come from the root's closure. */
static void test_closure_only_store(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_directory_service *os = NULL;
        assert_ok(kiln_directory_service_open("objectstore+memory://", &os, &err), err);
        struct kiln_import_options io = {.blobs = blobs, .dirs = os};
        char p[512];
        snprintf(p, sizeof(p), "%s/src", base);
        struct kiln_node root;
        assert_ok(kiln_import_path(&io, AT_FDCWD, p, &root, &err), err);
        kiln_node_set_name(&root, "src", 3);

        struct kiln_fuse *f = mount_roots(os, &root, 1, false);
        struct stat st;
        assert_int_equal(list_errno(mnt), EPERM);
        assert_int_equal(list_errno(at("src")), 0);
        assert_int_equal(list_errno(mnt), EPERM); /* also once OPENDIR is skipped */
        assert_int_equal(stat(at("src/a/b/empty-file"), &st), 0);
        assert_int_equal(stat(at("src/empty"), &st), 0);
        assert_int_equal(st.st_nlink, 2);
        uint8_t buf[16];
        assert_int_equal(read_all(at("src/a/hello"), buf, sizeof(buf)), 6);
        unmount(f);
        kiln_node_done(&root);
        kiln_directory_service_free(os);
}

/* Re-reads come from the page cache: reopening a file does not open
 * another blob reader, and one sequential read of a large file uses one. */
static void test_store_read_once(void **state)
{
        (void)state;
        struct counting_blobs *cb = kiln_calloc(1, sizeof(*cb));
        cb->base.ops = &counting_blob_ops;
        cb->inner = blobs;
        struct kiln_fuse *f = mount_with(&cb->base, dirs, &tree, 1, false);
        size_t big_n = 3 * 1024 * 1024 + 17;
        uint8_t *big = kiln_malloc(big_n);
        /* The first pass opens readers (a few, if readahead runs requests in
         * parallel); passes after reopening open none. */
        assert_int_equal(read_all(at("src/a/big"), big, big_n), big_n);
        int first = atomic_load(&cb->opens);
        assert_true(first >= 1 && first <= 8);
        for (int i = 0; i < 2; i++)
                assert_int_equal(read_all(at("src/a/big"), big, big_n), big_n);
        assert_int_equal(atomic_load(&cb->opens), first);
        for (int i = 0; i < 3; i++)
                assert_int_equal(read_all(at("src/a/hello"), big, big_n), 6);
        assert_int_equal(atomic_load(&cb->opens), first + 1);
        free(big);
        unmount(f);
        cb_free(&cb->base);
}

/* A mount whose roots are added while it serves (the build service's
 * inputs view): each root appears under a name of its node, at once (no
 * negative entry survives), files keep the size their caller claimed
 * without sharing an inode with anyone else's claim, and the root stays
 * unlistable. */
static void test_dynamic_roots(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_fuse_options o = {.threads = 2, .dynamic_roots = true, .log = capture_log};
        struct kiln_fuse *f = NULL;
        assert_int_equal(kiln_fuse_mount(blobs, dirs, &tree, 1, mnt, &o, &f, &err), -EINVAL);
        kiln_error_free(err);
        err = NULL;
        assert_ok(kiln_fuse_mount(blobs, dirs, NULL, 0, mnt, &o, &f, &err), err);
        assert_int_equal(list_errno(mnt), EPERM);

        struct kiln_node dir = {0};
        kiln_node_copy(&dir, &tree);
        kiln_node_set_name(&dir, "", 0);
        char dname[80], *name = NULL;
        snprintf(dname, sizeof(dname), "d-%s", KILN_DIGEST_HEX(&dir.digest));
        struct stat st;
        assert_int_equal(stat(at(dname), &st), -1);
        assert_int_equal(errno, ENOENT);
        uint64_t before = kiln_fuse_inode_count(f);
        assert_ok(kiln_fuse_root_add(f, &dir, &name, &err), err);
        assert_string_equal(name, dname);
        free(name);
        assert_int_equal(stat(at(dname), &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        uint8_t buf[16];
        char rel[128];
        snprintf(rel, sizeof(rel), "%s/a/hello", dname);
        assert_int_equal(read_all(at(rel), buf, sizeof(buf)), 6);
        assert_memory_equal(buf, "hello\n", 6);
        assert_ok(kiln_fuse_root_add(f, &dir, &name, &err), err);
        assert_string_equal(name, dname);
        free(name);
        assert_true(kiln_fuse_inode_count(f) > before);

        /* a file, and a wrong size claimed for the same blob */
        char p[512];
        snprintf(p, sizeof(p), "%s/src/a/hello", base);
        struct kiln_import_options io = {.blobs = blobs, .dirs = dirs};
        struct kiln_node file;
        assert_ok(kiln_import_path(&io, AT_FDCWD, p, &file, &err), err);
        kiln_node_set_name(&file, "hello", 5);
        assert_ok(kiln_fuse_root_add(f, &file, &name, &err), err);
        char want[100];
        snprintf(want, sizeof(want), "f-%s-6", KILN_DIGEST_HEX(&file.digest));
        assert_string_equal(name, want);
        assert_int_equal(stat(at(name), &st), 0);
        assert_int_equal(st.st_mode, S_IFREG | 0444);
        assert_int_equal(read_all(at(name), buf, sizeof(buf)), 6);
        free(name);
        file.size = 5;
        assert_ok(kiln_fuse_root_add(f, &file, &name, &err), err);
        snprintf(want, sizeof(want), "f-%s-5", KILN_DIGEST_HEX(&file.digest));
        assert_string_equal(name, want);
        free(name);
        snprintf(want, sizeof(want), "f-%s-6", KILN_DIGEST_HEX(&file.digest));
        assert_int_equal(read_all(at(want), buf, sizeof(buf)), 6);
        assert_int_equal(read_all(at(rel), buf, sizeof(buf)), 6);

        struct kiln_node link = {.kind = KILN_NODE_SYMLINK};
        kiln_node_set_name(&link, "l", 1);
        link.target.data = (uint8_t *)kiln_strdup("/");
        link.target.len = 1;
        assert_int_equal(kiln_fuse_root_add(f, &link, &name, &err), -EINVAL);
        kiln_error_free(err);
        err = NULL;
        assert_int_equal(list_errno(mnt), EPERM);
        unmount(f);

        /* a mount with fixed roots takes no more */
        f = mount_roots(dirs, &tree, 1, false);
        assert_int_equal(kiln_fuse_root_add(f, &dir, &name, &err), -EINVAL);
        kiln_error_free(err);
        unmount(f);
        kiln_node_done(&link);
        kiln_node_done(&file);
        kiln_node_done(&dir);
}

static void *stopper(void *arg)
{
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        kiln_fuse_stop(arg);
        return NULL;
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Stopping while a process keeps a file open: the mount is detached and
 * the open file stops working, but nothing hangs. */
static void test_stop_busy(void **state)
{
        (void)state;
        struct kiln_fuse *f = mount_roots(dirs, &tree, 1, false);
        int fd = open(at("src/a/hello"), O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        pthread_t th;
        pthread_create(&th, NULL, stopper, f);
        double t0 = now_s();
        struct kiln_error *err = NULL;
        assert_ok(kiln_fuse_wait(f, &err), err);
        pthread_join(th, NULL);
        assert_true(now_s() - t0 < 5);
        kiln_fuse_free(f);
        char c;
        assert_int_equal(pread(fd, &c, 1, 0), -1);
        assert_int_equal(errno, ENOTCONN);
        close(fd);
        struct stat st, st_base;
        assert_int_equal(stat(mnt, &st), 0);
        assert_int_equal(stat(base, &st_base), 0);
        assert_true(st.st_dev == st_base.st_dev);
}

/* Unmounted from outside: wait returns 0 by itself. */
static void test_external_unmount(void **state)
{
        (void)state;
        struct kiln_fuse *f = mount_roots(dirs, &tree, 1, false);
        assert_int_equal(umount2(mnt, 0), 0);
        struct kiln_error *err = NULL;
        assert_ok(kiln_fuse_wait(f, &err), err);
        kiln_fuse_free(f);
}

/* A server that dies without unmounting leaves a dead mount (ENOTCONN);
 * the next mount on the same point detaches it and works. */
static void test_dead_mount(void **state)
{
        (void)state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct kiln_fuse_options o = {.threads = 1, .log = capture_log};
                struct kiln_fuse *f = NULL;
                if (kiln_fuse_mount(blobs, dirs, &tree, 1, mnt, &o, &f, NULL) < 0)
                        _exit(1);
                _exit(0); /* no unmount: the kernel sees the device closed */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        struct statfs sfs;
        assert_int_equal(statfs(mnt, &sfs), -1);
        assert_int_equal(errno, ENOTCONN);

        struct stat st;
        struct kiln_fuse *f = mount_roots(dirs, &tree, 1, false);
        assert_true(log_has("detached a dead FUSE mount"));
        assert_int_equal(stat(at("src/a/hello"), &st), 0);
        unmount(f);
}

static void test_bad_arguments(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_fuse *f = NULL;
        struct kiln_node two[2];
        kiln_node_copy(&two[0], &tree);
        kiln_node_copy(&two[1], &tree);
        assert_error(kiln_fuse_mount(blobs, dirs, two, 2, mnt, NULL, &f, &err), err, EINVAL,
                     "duplicate root node name 'src'");
        kiln_node_set_name(&two[1], "a/b", 3);
        assert_error(kiln_fuse_mount(blobs, dirs, two, 2, mnt, NULL, &f, &err), err, EINVAL,
                     "cannot contain slashes");
        char nope[200];
        snprintf(nope, sizeof(nope), "%s/nope", base);
        assert_error(kiln_fuse_mount(blobs, dirs, &tree, 1, nope, NULL, &f, &err), err, ENOENT,
                     "mount point");
        kiln_node_done(&two[0]);
        kiln_node_done(&two[1]);
        kiln_fuse_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup(test_bad_arguments, test_setup),
            cmocka_unit_test_setup(test_tree, test_setup),
            cmocka_unit_test_setup(test_readdir_offsets, test_setup),
            cmocka_unit_test_setup(test_concurrent_first_lookups, test_setup),
            cmocka_unit_test_setup(test_missing_objects, test_setup),
            cmocka_unit_test_setup(test_closure_only_store, test_setup),
            cmocka_unit_test_setup(test_store_read_once, test_setup),
            cmocka_unit_test_setup(test_stop_busy, test_setup),
            cmocka_unit_test_setup(test_external_unmount, test_setup),
            cmocka_unit_test_setup(test_dead_mount, test_setup),
            cmocka_unit_test_setup(test_dynamic_roots, test_setup),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
