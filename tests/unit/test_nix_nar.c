/* NAR: hashes and sizes Nix 2.8 gave for small trees, round trips
 * filesystem → NAR → castore (memory://) → NAR, agreement with kiln's own
 * importer, and malformed NARs, each with its error and nothing stored that
 * refers to what a rejected NAR left. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kiln/util/fsutil.h>
#include <kiln/ingest/import.h>
#include <kiln/nix/nar.h>

struct fixture {
        char dir[64];
        int dfd;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        strcpy(f->dir, "/tmp/kiln-test-nar.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct kiln_error *err = NULL;
        assert_ok(kiln_blob_service_open("memory://", &f->blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &f->dirs, &err), err);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        close(f->dfd);
        kiln_rm_rf_at(AT_FDCWD, f->dir);
        kiln_blob_service_free(f->blobs);
        kiln_directory_service_free(f->dirs);
        free(f);
        return 0;
}

static void write_file(int dfd, const char *name, const void *p, size_t n, mode_t mode)
{
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(kiln_write_all(fd, p, n), 0);
        fchmod(fd, mode);
        close(fd);
}

/* A sink collecting into a buffer. */
static int buf_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        (void)err;
        kiln_buf_append(ctx, p, n);
        return 0;
}

/* A source handing out a buffer `chunk` bytes at a time. */
struct mem_src {
        const uint8_t *p;
        size_t len, pos, chunk;
};

static ssize_t mem_read(void *ctx, void *buf, size_t n, struct kiln_error **err)
{
        (void)err;
        struct mem_src *m = ctx;
        size_t k = KILN_MIN(KILN_MIN(n, m->chunk), m->len - m->pos);
        if (k)
                memcpy(buf, m->p + m->pos, k);
        m->pos += k;
        return (ssize_t)k;
}

static void dump(const char *root, struct kiln_buf *out, struct kiln_nix_nar_info *info)
{
        struct kiln_error *err = NULL;
        struct kiln_nix_nar_sink sink = {buf_write, out};
        assert_ok(kiln_nix_nar_dump_path(AT_FDCWD, root, &sink, info, &err), err);
}

static void test_nix_vectors(void **state)
{
        struct fixture *f = *state;
        /* The trees and what `nix hash path --base16` and `nix-store --dump | wc -c` said. */
        write_file(f->dfd, "hello", "Hello World!", 12, 0644);
        mkdirat(f->dfd, "empty", 0755);
        symlinkat("/nix/store/somewhereelse", f->dfd, "link");
        mkdirat(f->dfd, "complicated", 0755);
        write_file(f->dfd, "complicated/.keep", "", 0, 0644);
        symlinkat("/nix/store/somewhereelse", f->dfd, "complicated/aa");
        mkdirat(f->dfd, "complicated/keep", 0755);
        write_file(f->dfd, "complicated/keep/.keep", "", 0, 0644);
        write_file(f->dfd, "exe", "#!/bin/sh\n", 10, 0755);
        static const struct {
                const char *name, *hash;
                uint64_t size;
        } v[] = {
            {"hello", "03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040", 128},
            {"empty", "a50a5ab6d992f5598edd92105059fae9acfc192981e08bd88534c2167e92526a", 96},
            {"link", "097d397e9b5826384eaa16c457715d1c1a51670313ead0f58566e0b232539cf1", 136},
            {"complicated", "ebd52279a8df024c9fd5718de4103bf5e760dc7f2cf49044ee7dea87ab16911a",
             840},
            {"exe", "6283c1668260f903d1a895c0cd6b822fa4b68762bb0b17cedef2d39d97e26554", 160},
        };
        struct kiln_error *err = NULL;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(v); i++) {
                char *path = kiln_asprintf("%s/%s", f->dir, v[i].name);
                struct kiln_buf out = KILN_BUF_INIT;
                struct kiln_nix_nar_info info, info2;
                dump(path, &out, &info);
                assert_string_equal(KILN_NIX_HASH_STR(&info.hash, KILN_NIX_BASE16, false),
                                    v[i].hash);
                assert_int_equal(info.size, v[i].size);
                assert_int_equal(out.len, v[i].size);
                /* Without a sink: the same hash. */
                assert_ok(kiln_nix_nar_dump_path(AT_FDCWD, path, NULL, &info2, &err), err);
                assert_true(kiln_nix_hash_eq(&info.hash, &info2.hash));
                kiln_buf_done(&out);
                free(path);
        }

        /* The bytes of the smallest one, spelled out. */
        static const uint8_t hello[] = "\x0d\0\0\0\0\0\0\0nix-archive-1\0\0\0"
                                       "\x01\0\0\0\0\0\0\0(\0\0\0\0\0\0\0"
                                       "\x04\0\0\0\0\0\0\0type\0\0\0\0"
                                       "\x07\0\0\0\0\0\0\0regular\0"
                                       "\x08\0\0\0\0\0\0\0contents"
                                       "\x0c\0\0\0\0\0\0\0Hello World!\0\0\0\0"
                                       "\x01\0\0\0\0\0\0\0)\0\0\0\0\0\0\0";
        char *path = kiln_asprintf("%s/hello", f->dir);
        struct kiln_buf out = KILN_BUF_INIT;
        dump(path, &out, NULL);
        assert_int_equal(out.len, sizeof(hello) - 1);
        assert_memory_equal(out.data, hello, out.len);
        kiln_buf_done(&out);
        free(path);
}

/* A tree with what NARs must get right: odd names, sizes around the padding,
 * a file larger than the writer's buffer, empty directories, executables. */
static void make_tree(int dfd, const char *root)
{
        assert_int_equal(mkdirat(dfd, root, 0755), 0);
        int r = openat(dfd, root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char buf[64];
        for (int n = 0; n <= 17; n++) {
                snprintf(buf, sizeof(buf), "size-%02d", n);
                write_file(r, buf, "0123456789abcdefgh", (size_t)n, n % 3 ? 0644 : 0755);
        }
        size_t big = 700 * 1024 + 3;
        uint8_t *p = malloc(big);
        for (size_t i = 0; i < big; i++)
                p[i] = (uint8_t)(i * 7 + (i >> 11));
        write_file(r, "big", p, big, 0644);
        free(p);
        static const char *const odd[] = {"with space", "new\nline", "back\\slash", "quote\"",
                                          "\xff\xfe",   "\x01",      "-dash",       ".hidden",
                                          "...",        "é",         "UPPER",       "a",
                                          "b",          "aa",        "a.b"};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(odd); i++)
                write_file(r, odd[i], odd[i], strlen(odd[i]), 0644);
        mkdirat(r, "empty", 0755);
        mkdirat(r, "nested", 0755);
        mkdirat(r, "nested/deeper", 0755);
        mkdirat(r, "nested/deeper/empty", 0755);
        write_file(r, "nested/deeper/x", "x", 1, 0700);
        symlinkat("../../big", r, "nested/deeper/up");
        symlinkat("/abs/target with space", r, "abs-link");
        symlinkat("dangling", r, "dangling-link");
        symlinkat("empty", r, "dir-link");
        close(r);
}

static void test_round_trip(void **state)
{
        struct fixture *f = *state;
        struct kiln_error *err = NULL;
        make_tree(f->dfd, "tree");
        char *root = kiln_asprintf("%s/tree", f->dir);
        struct kiln_buf nar = KILN_BUF_INIT;
        struct kiln_nix_nar_info info;
        dump(root, &nar, &info);

        /* Through the store, fed in pieces of every awkward size. */
        static const size_t chunks[] = {1, 7, 8, 4096, 1 << 20};
        for (size_t c = 0; c < KILN_ARRAY_SIZE(chunks); c++) {
                struct mem_src m = {nar.data, nar.len, 0, chunks[c]};
                struct kiln_nix_nar_source src = {mem_read, &m};
                struct kiln_node node;
                struct kiln_nix_nar_info in_info;
                assert_ok(kiln_nix_nar_import(f->blobs, f->dirs, &src, &node, &in_info, &err), err);
                assert_true(kiln_nix_hash_eq(&in_info.hash, &info.hash));
                assert_int_equal(in_info.size, nar.len);
                assert_int_equal(node.kind, KILN_NODE_DIRECTORY);
                assert_int_equal(node.name.len, 0);

                struct kiln_buf back = KILN_BUF_INIT;
                struct kiln_nix_nar_sink sink = {buf_write, &back};
                struct kiln_nix_nar_info out_info;
                assert_ok(kiln_nix_nar_dump_node(f->blobs, f->dirs, &node, &sink, &out_info, &err),
                          err);
                assert_int_equal(back.len, nar.len);
                assert_memory_equal(back.data, nar.data, nar.len);
                assert_true(kiln_nix_hash_eq(&out_info.hash, &info.hash));
                kiln_buf_done(&back);

                /* kiln's own importer makes the same tree of the directory. */
                struct kiln_import_options o = {.blobs = f->blobs, .dirs = f->dirs, .threads = 2};
                struct kiln_node direct;
                assert_ok(kiln_import_path(&o, AT_FDCWD, root, &direct, &err), err);
                assert_true(kiln_node_eq(&direct, &node));
                kiln_node_done(&direct);
                kiln_node_done(&node);
        }

        /* Single files and symlinks as the root. */
        static const char *const roots[] = {"tree/big", "tree/size-00", "tree/size-03",
                                            "tree/abs-link"};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(roots); i++) {
                char *p = kiln_asprintf("%s/%s", f->dir, roots[i]);
                struct kiln_buf one = KILN_BUF_INIT, back = KILN_BUF_INIT;
                dump(p, &one, NULL);
                struct mem_src m = {one.data, one.len, 0, 5000};
                struct kiln_nix_nar_source src = {mem_read, &m};
                struct kiln_node node;
                assert_ok(kiln_nix_nar_import(f->blobs, f->dirs, &src, &node, NULL, &err), err);
                assert_int_equal(node.kind, i < 3 ? KILN_NODE_FILE : KILN_NODE_SYMLINK);
                assert_int_equal(node.executable, i == 1 || i == 2); /* sizes 0 and 3: 0755 */
                struct kiln_nix_nar_sink sink = {buf_write, &back};
                assert_ok(kiln_nix_nar_dump_node(f->blobs, f->dirs, &node, &sink, NULL, &err), err);
                assert_int_equal(back.len, one.len);
                assert_memory_equal(back.data, one.data, one.len);
                kiln_node_done(&node);
                kiln_buf_done(&one);
                kiln_buf_done(&back);
                free(p);
        }
        kiln_buf_done(&nar);
        free(root);
}

static void test_dump_errors(void **state)
{
        struct fixture *f = *state;
        struct kiln_error *err = NULL;
        assert_int_equal(mkfifoat(f->dfd, "fifo", 0644), 0);
        mkdirat(f->dfd, "d", 0755);
        assert_int_equal(mkfifoat(f->dfd, "d/fifo", 0644), 0);
        char *p = kiln_asprintf("%s/fifo", f->dir);
        assert_error(kiln_nix_nar_dump_path(AT_FDCWD, p, NULL, NULL, &err), err, EINVAL,
                     "unsupported file type at");
        free(p);
        p = kiln_asprintf("%s/d", f->dir);
        char *want = kiln_asprintf("unsupported file type at %s/d/fifo: fifo", f->dir);
        assert_error(kiln_nix_nar_dump_path(AT_FDCWD, p, NULL, NULL, &err), err, EINVAL, want);
        free(want);
        free(p);
        p = kiln_asprintf("%s/missing", f->dir);
        assert_error(kiln_nix_nar_dump_path(AT_FDCWD, p, NULL, NULL, &err), err, ENOENT,
                     "unable to stat");
        free(p);

        /* Deeper than the writer goes. */
        int fd = dup(f->dfd);
        for (int i = 0; i < 520; i++) {
                mkdirat(fd, "d", 0755);
                int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                close(fd);
                fd = next;
        }
        close(fd);
        assert_error(kiln_nix_nar_dump_path(f->dfd, "d", NULL, NULL, &err), err, ELOOP,
                     "directories nested deeper than 512");

        /* A sink that fails stops the dump with its error. */
        write_file(f->dfd, "small", "x", 1, 0644);
        p = kiln_asprintf("%s/out", f->dir);
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        close(fd);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        struct kiln_nix_nar_sink rosink;
        kiln_nix_nar_sink_fd(fd, &rosink);
        assert_error(kiln_nix_nar_dump_path(f->dfd, "small", &rosink, NULL, &err), err, EBADF,
                     "write NAR");
        close(fd);
        free(p);

        /* Stored trees with missing or inconsistent objects. */
        struct kiln_node n = {.kind = KILN_NODE_FILE, .size = 3};
        assert_error(kiln_nix_nar_dump_node(f->blobs, f->dirs, &n, NULL, NULL, &err), err, ENOENT,
                     "not found");
        assert_ok(kiln_blob_put(f->blobs, "abcd", 4, &n.digest, &err), err);
        assert_error(kiln_nix_nar_dump_node(f->blobs, f->dirs, &n, NULL, NULL, &err), err, EBADMSG,
                     "is longer than its node says (3 bytes)");
        n.size = 5;
        assert_error(kiln_nix_nar_dump_node(f->blobs, f->dirs, &n, NULL, NULL, &err), err, EBADMSG,
                     "is shorter than its node says (5 bytes)");
        n = (struct kiln_node){.kind = KILN_NODE_DIRECTORY, .digest = n.digest};
        assert_error(kiln_nix_nar_dump_node(f->blobs, f->dirs, &n, NULL, NULL, &err), err, ENOENT,
                     "not found");
}

/* --- malformed NARs --- */

static void put_u64(struct kiln_buf *b, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                kiln_buf_append_byte(b, (uint8_t)(v >> (8 * i)));
}

static void put_bytes(struct kiln_buf *b, const void *p, size_t n)
{
        put_u64(b, n);
        kiln_buf_append(b, p, n);
        for (size_t i = n; i % 8; i++)
                kiln_buf_append_byte(b, 0);
}

/* Appends tags separated by '|'; "~" an empty string, "#N" a u64 N, "=TEXT"
 * the raw text (no length, no padding) in which %XX is a byte in hex. */
static void put(struct kiln_buf *b, const char *spec)
{
        char *copy = strdup(spec), *save = NULL;
        for (char *t = strtok_r(copy, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
                if (t[0] == '#')
                        put_u64(b, strtoull(t + 1, NULL, 0));
                else if (t[0] == '=')
                        for (const char *c = t + 1; *c; c++) {
                                if (*c == '%') {
                                        kiln_buf_append_byte(
                                            b, (uint8_t)(kiln_unhex(c[1]) << 4 | kiln_unhex(c[2])));
                                        c += 2;
                                } else {
                                        kiln_buf_append_byte(b, (uint8_t)*c);
                                }
                        }
                else if (!strcmp(t, "~"))
                        put_bytes(b, "", 0);
                else
                        put_bytes(b, t, strlen(t));
        }
        free(copy);
}

#define MAGIC       "nix-archive-1|"
#define DIR         "(|type|directory|"
#define FILE_       "(|type|regular|contents|"
#define ENTRY(name) "entry|(|name|" name "|node|"

static void expect_bad(struct fixture *f, struct kiln_buf *nar, const char *msg)
{
        struct kiln_error *err = NULL;
        struct mem_src m = {nar->data, nar->len, 0, 3};
        struct kiln_nix_nar_source src = {mem_read, &m};
        struct kiln_node node = {0};
        int r = kiln_nix_nar_import(f->blobs, f->dirs, &src, &node, NULL, &err);
        if (r >= 0)
                fail_msg("accepted a NAR that should fail with \"%s\"", msg);
        assert_int_equal(r, -EINVAL);
        if (!strstr(err->msg, msg))
                fail_msg("\"%s\" lacks \"%s\"", err->msg, msg);
        if (strncmp(err->msg, "invalid NAR at byte ", 20) != 0)
                fail_msg("\"%s\" has no offset", err->msg);
        kiln_error_clear(&err);
}

static void test_malformed(void **state)
{
        struct fixture *f = *state;
        static const struct {
                const char *spec, *msg;
        } bad[] = {
            {"", "at byte 0: truncated in a tag"},
            {"nix-archive-2", "at byte 0: expected 'nix-archive-1', found 'nix-archive-2'"},
            {"#1000", "expected 'nix-archive-1', found a string of 1000 bytes"},
            {"#18446744073709551615", "found a string of 18446744073709551615 bytes"},
            {"=%0d%00%00%00%00%00%00%00nix-archive-1%00%00%01", "at byte 23: non-zero padding"},
            {MAGIC, "at byte 24: truncated in a tag"},
            {MAGIC "type", "at byte 24: expected '(', found 'type'"},
            {MAGIC "(|regular", "at byte 40: expected 'type', found 'regular'"},
            {MAGIC "(|type|fifo", "expected 'regular' or 'symlink' or 'directory', found 'fifo'"},
            {MAGIC "(|type|regular|)", "expected 'executable' or 'contents', found ')'"},
            {MAGIC "(|type|regular|contents|#5|=abc", "truncated in file contents (2 of 5"},
            {MAGIC "(|type|regular|contents|#3|=abc", "truncated in padding"},
            {MAGIC "(|type|regular|contents|#3|=abc%00%00%00%00x", "non-zero padding"},
            {MAGIC "(|type|regular|contents|#0|)|x", "trailing data after the NAR"},
            {MAGIC "(|type|regular|contents|#0|)|=%00", "at byte 112: trailing data"},
            {MAGIC "(|type|regular|contents|#0|executable|~|)", "expected ')', found 'executable'"},
            {MAGIC "(|type|regular|executable|x|contents|#0|)", "executable marker is not empty"},
            {MAGIC "(|type|regular|executable|~|)", "expected 'contents', found ')'"},
            {MAGIC "(|type|symlink|target|~|)", "invalid symlink target: cannot be empty"},
            {MAGIC "(|type|symlink|target|=%03%00%00%00%00%00%00%00a%00b%00%00%00%00%00|)",
             "invalid symlink target: cannot contain null bytes"},
            {MAGIC "(|type|symlink|#5000", "expected 'target', found a string of 5000 bytes"},
            {MAGIC "(|type|symlink|target|#5000", "a symlink target of 5000 bytes, at most 4095"},
            {MAGIC "(|type|symlink|target|x|target|y|)", "expected ')', found 'target'"},
            {MAGIC DIR "entry|(|name|~|node|" FILE_ "#0|)|)|)", "invalid entry name ''"},
            {MAGIC DIR ENTRY(".") FILE_ "#0|)|)|)", "invalid entry name '.'"},
            {MAGIC DIR ENTRY("..") FILE_ "#0|)|)|)", "invalid entry name '..'"},
            {MAGIC DIR ENTRY("a/b") FILE_ "#0|)|)|)", "invalid entry name 'a/b'"},
            {MAGIC DIR "entry|(|name|=%03%00%00%00%00%00%00%00a%00b%00%00%00%00%00|node|" FILE_
                       "#0|)|)|)",
             "invalid entry name 'a\\x00b'"},
            {MAGIC DIR "entry|(|name|#256", "an entry name of 256 bytes, at most 255 allowed"},
            {MAGIC DIR ENTRY("b") FILE_ "#0|)|)|" ENTRY("a") FILE_ "#0|)|)|)",
             "entry 'a' is out of order"},
            {MAGIC DIR ENTRY("a") FILE_ "#0|)|)|" ENTRY("a") DIR ")|)|)", "entry 'a' is repeated"},
            {MAGIC DIR ENTRY("a") FILE_ "#0|)|)|" ENTRY("B") FILE_ "#0|)|)|)",
             "entry 'B' is out of order"},
            {MAGIC DIR "entry|(|node|", "expected 'name', found 'node'"},
            {MAGIC DIR "entry|(|name|a|(", "expected 'node', found '('"},
            {MAGIC DIR ENTRY("a") FILE_ "#0|)|x", "expected ')', found 'x'"},
            {MAGIC DIR ENTRY("a") DIR ")|x", "expected ')', found 'x'"},
            {MAGIC DIR "name|a", "expected 'entry' or ')', found 'name'"},
            {MAGIC DIR ENTRY("a") FILE_ "#0|)|)", "truncated in a tag"},
            {MAGIC DIR ")|)", "trailing data after the NAR"},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
                struct kiln_buf b = KILN_BUF_INIT;
                put(&b, bad[i].spec);
                expect_bad(f, &b, bad[i].msg);
                kiln_buf_done(&b);
        }

        /* Nested deeper than 1024 directories. */
        struct kiln_buf b = KILN_BUF_INIT;
        put(&b, MAGIC DIR);
        for (int i = 0; i < 1100; i++)
                put(&b, ENTRY("d") DIR);
        expect_bad(f, &b, "directories nested deeper than 1024");
        kiln_buf_done(&b);

        /* Every prefix of a good NAR fails, and none crashes. */
        struct kiln_buf good = KILN_BUF_INIT;
        put(&good,
            MAGIC DIR
                ENTRY("a") "(|type|regular|executable|~|contents|#3|=abc%00%00%00%00%00|)|)|" ENTRY(
                    "b") "(|type|symlink|target|a|)|)|" ENTRY("c") DIR ")|)|)");
        struct kiln_error *err = NULL;
        for (size_t n = 0; n < good.len; n++) {
                struct mem_src m = {good.data, n, 0, 1 << 20};
                struct kiln_nix_nar_source src = {mem_read, &m};
                struct kiln_node node;
                assert_int_equal(kiln_nix_nar_import(f->blobs, f->dirs, &src, &node, NULL, &err),
                                 -EINVAL);
                kiln_error_clear(&err);
        }
        struct mem_src m = {good.data, good.len, 0, 1 << 20};
        struct kiln_nix_nar_source src = {mem_read, &m};
        struct kiln_node node;
        assert_ok(kiln_nix_nar_import(f->blobs, f->dirs, &src, &node, NULL, &err), err);
        kiln_node_done(&node);
        kiln_buf_done(&good);
}

/* A NAR that fails after a complete subdirectory leaves no Directory. */
static void test_nothing_half_referenced(void **state)
{
        struct fixture *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_buf ok = KILN_BUF_INIT, bad = KILN_BUF_INIT;
        const char *sub = ENTRY("sub") DIR ENTRY("f") FILE_ "#2|=hi%00%00%00%00%00%00|)|)|)|)|";
        put(&ok, MAGIC DIR);
        put(&ok, sub);
        put(&ok, ")");
        put(&bad, MAGIC DIR);
        put(&bad, sub);
        put(&bad, ENTRY("a") FILE_ "#0|)|)|)");

        /* The subdirectory's digest, from a good NAR in another store. */
        struct kiln_blob_service *blobs2;
        struct kiln_directory_service *dirs2;
        assert_ok(kiln_blob_service_open("memory://", &blobs2, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &dirs2, &err), err);
        struct mem_src m = {ok.data, ok.len, 0, 1 << 20};
        struct kiln_nix_nar_source src = {mem_read, &m};
        struct kiln_node root;
        assert_ok(kiln_nix_nar_import(blobs2, dirs2, &src, &root, NULL, &err), err);
        struct kiln_directory d;
        assert_int_equal(kiln_directory_get(dirs2, &root.digest, &d, &err), 1);
        assert_int_equal(d.n, 1);
        struct kiln_digest subdigest = d.nodes[0].digest;
        kiln_directory_done(&d);

        expect_bad(f, &bad, "entry 'a' is out of order");
        assert_int_equal(kiln_directory_get(f->dirs, &subdigest, &d, &err), 0);
        assert_int_equal(kiln_directory_get(f->dirs, &root.digest, &d, &err), 0);

        kiln_node_done(&root);
        kiln_blob_service_free(blobs2);
        kiln_directory_service_free(dirs2);
        kiln_buf_done(&ok);
        kiln_buf_done(&bad);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(test_nix_vectors, setup, teardown),
            cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
            cmocka_unit_test_setup_teardown(test_dump_errors, setup, teardown),
            cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
            cmocka_unit_test_setup_teardown(test_nothing_half_referenced, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
