/* kiln_import_path on trees written by a build (untrusted): what outputs may
 * not hold is refused with a message naming the path. And a big lone file,
 * hashed on several threads, gets the digest a single one gives. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kiln/blake3/blake3.h>
#include <kiln/util/fsutil.h>
#include <kiln/ingest/import.h>
#include <kiln/store/store.h>

struct fx {
        char dir[64];
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
};

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof(*f));
        strcpy(f->dir, "/tmp/kiln-import.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        struct kiln_error *err = NULL;
        assert_ok(kiln_blob_service_open("memory://", &f->blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &f->dirs, &err), err);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        kiln_directory_service_free(f->dirs);
        kiln_blob_service_free(f->blobs);
        kiln_rm_rf_at(AT_FDCWD, f->dir);
        free(f);
        return 0;
}

static int import(struct fx *f, const char *rel, bool untrusted, struct kiln_error **err)
{
        struct kiln_import_options o = {.blobs = f->blobs, .dirs = f->dirs, .threads = 1,
                                        .untrusted = untrusted};
        _cleanup_close_ int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct kiln_node n = {0};
        int r = kiln_import_path(&o, dfd, rel, &n, err);
        kiln_node_done(&n);
        return r;
}

static void touch(struct fx *f, const char *rel, mode_t mode)
{
        char *p = kiln_asprintf("%s/%s", f->dir, rel);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(chmod(p, mode), 0);
        free(p);
}

static void mkdir_in(struct fx *f, const char *rel, mode_t mode)
{
        char *p = kiln_asprintf("%s/%s", f->dir, rel);
        assert_int_equal(mkdir(p, 0755), 0);
        assert_int_equal(chmod(p, mode), 0);
        free(p);
}

static void test_special_bits(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        mkdir_in(f, "out", 0755);
        touch(f, "out/plain", 0755);
        assert_ok(import(f, "out", true, &err), err);

        touch(f, "out/suid", 04755);
        assert_error(import(f, "out", true, &err), err, EPERM, "out/suid has the setuid bit");
        /* a user's own tree may hold one (it is stored without the bit) */
        assert_ok(import(f, "out", false, &err), err);
        assert_error(import(f, "out/suid", true, &err), err, EPERM, "out/suid has the setuid bit");

        mkdir_in(f, "out2", 0755);
        mkdir_in(f, "out2/sgid", 02755);
        assert_error(import(f, "out2", true, &err), err, EPERM, "out2/sgid has the setgid bit");
}

static void test_special_files(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        mkdir_in(f, "out", 0755);
        char *p = kiln_asprintf("%s/out/pipe", f->dir);
        assert_int_equal(mkfifo(p, 0644), 0);
        free(p);
        assert_error(import(f, "out", true, &err), err, EINVAL,
                     "unsupported file type at out/pipe: fifo");
}

static void test_other_filesystem(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        if (geteuid() != 0) {
                if (getenv("KILN_TEST_MUST_RUN") && !strcmp(getenv("KILN_TEST_MUST_RUN"), "1"))
                        fail_msg("mounting a tmpfs needs root");
                print_message("skip: mounting a tmpfs needs root\n");
                skip();
        }
        mkdir_in(f, "out", 0755);
        mkdir_in(f, "out/mnt", 0755);
        char *p = kiln_asprintf("%s/out/mnt", f->dir);
        assert_int_equal(mount("kiln-test", p, "tmpfs", 0, "size=1m"), 0);
        assert_error(import(f, "out", true, &err), err, EPERM,
                     "out/mnt is on another filesystem than the output");
        assert_ok(import(f, "out", false, &err), err);
        assert_int_equal(umount(p), 0);
        free(p);
}

/* Over the 8 MiB from which a lone file is hashed on all threads, and not a
 * whole number of BLAKE3 chunks. */
static void test_lone_big_file(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        size_t n = (9u << 20) + 1234;
        uint8_t *data = malloc(n);
        uint64_t x = 42;
        for (size_t i = 0; i < n; i++) {
                x = x * 6364136223846793005u + 1442695040888963407u;
                data[i] = (uint8_t)(x >> 56);
        }
        char *p = kiln_asprintf("%s/big", f->dir);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(kiln_write_all(fd, data, n), 0);
        close(fd);
        struct kiln_digest want;
        kiln_blake3(data, n, want.b);
        static const unsigned threads[] = {1, 2, 4};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(threads); i++) {
                struct kiln_import_options o = {.blobs = f->blobs, .dirs = f->dirs,
                                                .threads = threads[i]};
                _cleanup_close_ int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                struct kiln_node node = {0};
                assert_ok(kiln_import_path(&o, dfd, "big", &node, &err), err);
                assert_int_equal(node.kind, KILN_NODE_FILE);
                assert_int_equal(node.size, n);
                assert_string_equal(KILN_DIGEST_HEX(&node.digest), KILN_DIGEST_HEX(&want));
                kiln_node_done(&node);
        }
        struct kiln_buf b = KILN_BUF_INIT;
        assert_int_equal(kiln_blob_get(f->blobs, &want, &b, &err), 1);
        assert_int_equal(b.len, n);
        assert_memory_equal(b.data, data, n);
        kiln_buf_done(&b);
        free(p);
        free(data);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_special_bits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_special_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_filesystem, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lone_big_file, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
