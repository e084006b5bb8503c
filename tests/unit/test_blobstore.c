/* Blob services: one conformance suite run against every blob store URL,
 * then the objectstore's on-disk layout, corruption handling, crash safety
 * (writers killed at random points), concurrent writers in separate
 * processes, and URL acceptance. */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <zstd.h>

#include <kiln/util/fsutil.h>
#include <kiln/store/store.h>

#include "backends.h"
#include "fastcdc.h"
#include "objstore.h"
#include "rpc_blobstore.pb-c.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* Sanitizer builds run every case with less data: hashing there is some 30
 * times slower, and the code paths are the same. */
#if defined(__SANITIZE_ADDRESS__)
#define SLOW_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOW_BUILD 1
#endif
#endif
#ifdef SLOW_BUILD
#define BIG_BLOB_SIZE  (5 * MiB)
#define PAIR_BLOB_SIZE (4 * MiB)
#define KILL_BLOB_SIZE (2 * MiB)
#else
#define BIG_BLOB_SIZE  (20 * MiB)
#define PAIR_BLOB_SIZE (10 * MiB)
#define KILL_BLOB_SIZE (4 * MiB)
#endif

#define HEX_HELLO "41f8394111eb713a22165c46c90ab8f0fd9399c92028fd6d288944b23ff5bf76"

/* --- helpers --- */

static uint64_t rng_next(uint64_t *s)
{
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
        uint64_t s = seed;
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
                uint64_t x = rng_next(&s);
                memcpy(p + i, &x, 8);
        }
        if (i < n) {
                uint64_t x = rng_next(&s);
                memcpy(p + i, &x, n - i);
        }
}

static uint8_t *random_blob(size_t n, uint64_t seed)
{
        uint8_t *p = malloc(n ? n : 1);
        assert_non_null(p);
        fill_random(p, n, seed);
        return p;
}

/* Writes p[0..n) in random-sized pieces (some empty); 0 or -errno. */
static int write_blob(struct kiln_blob_service *s, const uint8_t *p, size_t n, uint64_t seed,
                      struct kiln_digest *ret, struct kiln_error **err)
{
        _cleanup_(kiln_blob_writer_freep) struct kiln_blob_writer *w = NULL;
        int r = kiln_blob_open_write(s, &w, err);
        if (r < 0)
                return r;
        uint64_t rs = seed ^ 0x5555;
        size_t off = 0;
        while (off < n) {
                uint64_t x = rng_next(&rs);
                size_t piece = x % 8 == 0 ? 0 : x % 4 == 1 ? 1 + x % 97 : x % (300 * KiB);
                piece = KILN_MIN(piece, n - off);
                r = kiln_blob_writer_write(w, p + off, piece, err);
                if (r < 0)
                        return r;
                off += piece;
        }
        return kiln_blob_writer_close(w, ret, err);
}

static struct kiln_digest put_blob(struct kiln_blob_service *s, const uint8_t *p, size_t n,
                                   uint64_t seed)
{
        struct kiln_error *err = NULL;
        struct kiln_digest d, want;
        assert_ok(write_blob(s, p, n, seed, &d, &err), err);
        kiln_digest_of(p, n, &want);
        assert_string_equal(KILN_DIGEST_HEX(&d), KILN_DIGEST_HEX(&want));
        return d;
}

/* Reads until n bytes or the end; returns the count or -errno. */
static ssize_t read_upto(struct kiln_blob_reader *r, uint8_t *buf, size_t n,
                         struct kiln_error **err)
{
        size_t got = 0;
        while (got < n) {
                ssize_t k = kiln_blob_reader_read(r, buf + got, n - got, err);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                got += (size_t)k;
        }
        return (ssize_t)got;
}

/* Reads the blob with random-sized reads and compares it with p[0..n). */
static void check_blob(struct kiln_blob_service *s, const struct kiln_digest *d,
                       const uint8_t *p, size_t n, uint64_t seed)
{
        struct kiln_error *err = NULL;
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r = NULL;
        int found = kiln_blob_open_read(s, d, &r, &err);
        if (found < 0)
                fail_msg("open_read %s: %s", KILN_DIGEST_B64(d), kiln_error_msg(err));
        assert_int_equal(found, 1);
        assert_int_equal(kiln_blob_reader_size(r), n);
        uint8_t *buf = malloc(n + 1);
        uint64_t rs = seed ^ 0xaaaa;
        size_t off = 0;
        for (;;) {
                size_t want = 1 + rng_next(&rs) % (700 * KiB);
                ssize_t k = kiln_blob_reader_read(r, buf + off, KILN_MIN(want, n + 1 - off), &err);
                if (k < 0)
                        fail_msg("read %s at %zu: %s", KILN_DIGEST_B64(d), off,
                                 kiln_error_msg(err));
                if (k == 0)
                        break;
                off += (size_t)k;
                assert_true(off <= n);
        }
        assert_int_equal(off, n);
        assert_true(n == 0 || memcmp(buf, p, n) == 0);
        free(buf);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        remove(path);
        return 0;
}

static void rm_rf(const char *path)
{
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void)
{
        const char *t = getenv("TMPDIR");
        char *tmpl = kiln_asprintf("%s/kiln-blobstore-XXXXXX", t && *t ? t : "/tmp");
        assert_non_null(mkdtemp(tmpl));
        return tmpl;
}

static char *path_of(const char *dir, const char *ns, const struct kiln_digest *d)
{
        const char *hex = KILN_DIGEST_HEX(d);
        return kiln_asprintf("%s/%s/b3/%.4s/%s", dir, ns, hex, hex);
}

static bool file_exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

/* --- fixtures: one per blob store URL --- */

struct kind {
        const char *name;
        const char *url; /* "%s" takes the store directory for file stores */
        bool file;
        bool named_tmp;
        bool chunking;
        size_t avg;
        bool always_dear; /* memory://: its warmer always runs */
};

static const struct kind kinds[] = {
        {"memory://", "memory://", false, false, false, 0},
        {"memory:// (warming ahead)", "memory://", false, false, false, 0, true},
        {"objectstore+memory://", "objectstore+memory://", false, false, true,
         KILN_FASTCDC_AVG_DEFAULT},
        {"objectstore+file://", "objectstore+file://%s", true, false, true,
         KILN_FASTCDC_AVG_DEFAULT},
        {"objectstore+file:// (named temp files, 16 KiB chunks)",
         "objectstore+file://%s?avg_chunk_size=16384", true, true, true, 16 * KiB},
};

static const struct kind *cur_kind;

struct fx {
        const struct kind *k;
        char *tmp;   /* scratch directory, removed at teardown */
        char *store; /* tmp/store: created by the store itself */
        char *url;
        struct kiln_blob_service *svc;
};

static void fx_open(struct fx *f)
{
        struct kiln_error *err = NULL;
        kiln_objstore_file_no_tmpfile = f->k->named_tmp;
        kiln_blob_memory_always_dear = f->k->always_dear;
        assert_ok(kiln_blob_service_open(f->url, &f->svc, &err), err);
}

static void fx_reopen(struct fx *f)
{
        kiln_blob_service_free(f->svc);
        f->svc = NULL;
        fx_open(f);
}

static int fx_setup_kind(void **state, const struct kind *k)
{
        struct fx *f = calloc(1, sizeof(*f));
        f->k = k;
        if (k->file) {
                f->tmp = make_tmpdir();
                f->store = kiln_asprintf("%s/store", f->tmp);
                f->url = kiln_asprintf(k->url, f->store);
        } else {
                f->url = kiln_strdup(k->url);
        }
        fx_open(f);
        *state = f;
        return 0;
}

static int fx_setup(void **state)
{
        return fx_setup_kind(state, cur_kind);
}

static int fx_teardown(void **state)
{
        struct fx *f = *state;
        kiln_blob_service_free(f->svc);
        if (f->tmp)
                rm_rf(f->tmp);
        free(f->tmp);
        free(f->store);
        free(f->url);
        free(f);
        kiln_objstore_file_no_tmpfile = false;
        kiln_blob_memory_always_dear = false;
        return 0;
}

/* --- conformance suite --- */

static void test_absent(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_digest d;
        memset(d.b, 0x5a, sizeof(d.b));
        assert_int_equal(kiln_blob_has(f->svc, &d, &err), 0);
        struct kiln_blob_reader *r = (struct kiln_blob_reader *)0x1;
        assert_int_equal(kiln_blob_open_read(f->svc, &d, &r, &err), 0);
        assert_ptr_equal(r, (struct kiln_blob_reader *)0x1);
        struct kiln_chunk *chunks = NULL;
        size_t n = 99;
        assert_int_equal(kiln_blob_chunks(f->svc, &d, &chunks, &n, &err), 0);
        struct kiln_buf b = KILN_BUF_INIT;
        assert_int_equal(kiln_blob_get(f->svc, &d, &b, &err), 0);
        assert_null(err);
}

/* has(), open_read() and chunks() agree on the empty blob before and after
 * it is written. */
static void test_empty_blob(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        const struct kiln_digest *e = &kiln_digest_empty;
        for (int round = 0; round < 2; round++) {
                int has = kiln_blob_has(f->svc, e, &err);
                assert_true(has >= 0);
                _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r = NULL;
                int found = kiln_blob_open_read(f->svc, e, &r, &err);
                assert_int_equal(found, has);
                struct kiln_chunk *chunks = NULL;
                size_t n = 0;
                assert_int_equal(kiln_blob_chunks(f->svc, e, &chunks, &n, &err), has);
                if (found) {
                        assert_int_equal(n, 0);
                        assert_int_equal(kiln_blob_reader_size(r), 0);
                        uint8_t c;
                        assert_int_equal(kiln_blob_reader_read(r, &c, 1, &err), 0);
                }
                free(chunks);
                if (f->k->chunking)
                        assert_int_equal(has, 1); /* always present, documented */
                if (round == 0) {
                        struct kiln_digest d;
                        assert_ok(kiln_blob_put(f->svc, "", 0, &d, &err), err);
                        assert_true(kiln_digest_eq(&d, e));
                } else {
                        assert_int_equal(has, 1);
                }
        }
}

static void test_roundtrip_sizes(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        static const size_t sizes[] = {0, 1, 64 * KiB, MiB + 1, BIG_BLOB_SIZE};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(sizes); i++) {
                size_t n = sizes[i];
                uint8_t *p = random_blob(n, 100 + i);
                struct kiln_digest d = put_blob(f->svc, p, n, i);
                assert_int_equal(kiln_blob_has(f->svc, &d, &err), 1);
                check_blob(f->svc, &d, p, n, i);
                if (n <= MiB + 1) { /* kiln_blob_get too (the big one would only cost time) */
                        struct kiln_buf b = KILN_BUF_INIT;
                        assert_int_equal(kiln_blob_get(f->svc, &d, &b, &err), 1);
                        assert_int_equal(b.len, n);
                        assert_true(n == 0 || memcmp(b.data, p, n) == 0);
                        kiln_buf_done(&b);
                }
                free(p);
        }
        /* Still there for a fresh service on the same store. */
        if (f->k->file) {
                fx_reopen(f);
                uint8_t *p = random_blob(MiB + 1, 103);
                struct kiln_digest d;
                kiln_digest_of(p, MiB + 1, &d);
                check_blob(f->svc, &d, p, MiB + 1, 7);
                free(p);
        }
}

/* Space of uploads that were dropped or turned out to be duplicates may be
 * reused (memory:// does): blobs stored before and after stay intact. */
static void test_reuse_after_abort_and_dedup(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        size_t n = 3 * MiB + 7;
        uint8_t *a = random_blob(n, 200), *b = random_blob(n, 201), *c = random_blob(n, 202);
        struct kiln_digest da = put_blob(f->svc, a, n, 0);
        struct kiln_blob_writer *w = NULL;
        assert_ok(kiln_blob_open_write(f->svc, &w, &err), err);
        assert_ok(kiln_blob_writer_write(w, b, n, &err), err);
        kiln_blob_writer_free(w); /* dropped */
        struct kiln_digest again = put_blob(f->svc, a, n, 1); /* a duplicate */
        assert_true(kiln_digest_eq(&again, &da));
        struct kiln_digest dc = put_blob(f->svc, c, n, 2);
        check_blob(f->svc, &da, a, n, 3);
        check_blob(f->svc, &dc, c, n, 4);
        free(a);
        free(b);
        free(c);
}

static void test_close_twice_and_write_after_close(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        _cleanup_(kiln_blob_writer_freep) struct kiln_blob_writer *w = NULL;
        assert_ok(kiln_blob_open_write(f->svc, &w, &err), err);
        assert_ok(kiln_blob_writer_write(w, "Hello ", 6, &err), err);
        assert_ok(kiln_blob_writer_write(w, "World", 5, &err), err);
        struct kiln_digest d1, d2;
        assert_ok(kiln_blob_writer_close(w, &d1, &err), err);
        assert_string_equal(KILN_DIGEST_HEX(&d1), HEX_HELLO);
        assert_ok(kiln_blob_writer_close(w, &d2, &err), err);
        assert_true(kiln_digest_eq(&d1, &d2));
        assert_error(kiln_blob_writer_write(w, "x", 1, &err), err, EINVAL, "already closed");
        assert_ok(kiln_blob_writer_close(w, &d2, &err), err);
        assert_true(kiln_digest_eq(&d1, &d2));
}

/* A writer freed before close publishes nothing under the blob's digest. */
static void test_abort(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        static const size_t sizes[] = {100, 3 * MiB};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(sizes); i++) {
                uint8_t *p = random_blob(sizes[i], 200 + i);
                struct kiln_blob_writer *w = NULL;
                assert_ok(kiln_blob_open_write(f->svc, &w, &err), err);
                assert_ok(kiln_blob_writer_write(w, p, sizes[i], &err), err);
                kiln_blob_writer_free(w);
                struct kiln_digest d;
                kiln_digest_of(p, sizes[i], &d);
                assert_int_equal(kiln_blob_has(f->svc, &d, &err), 0);
                free(p);
        }
}

static void test_dedup(void **state)
{
        struct fx *f = *state;
        size_t n = 2 * MiB + 3;
        uint8_t *p = random_blob(n, 300);
        struct kiln_digest d1 = put_blob(f->svc, p, n, 1);
        struct kiln_digest d2 = put_blob(f->svc, p, n, 2); /* other write sizes */
        assert_true(kiln_digest_eq(&d1, &d2));
        check_blob(f->svc, &d1, p, n, 3);
        free(p);
}

static void expect_at(struct kiln_blob_reader *r, const uint8_t *p, size_t n, uint64_t pos,
                      size_t len)
{
        struct kiln_error *err = NULL;
        uint8_t *buf = malloc(len + 1);
        ssize_t got = read_upto(r, buf, len, &err);
        if (got < 0)
                fail_msg("read at %" PRIu64 ": %s", pos, kiln_error_msg(err));
        size_t want = (size_t)KILN_MIN((uint64_t)len, n - pos);
        assert_int_equal(got, want);
        assert_true(want == 0 || memcmp(buf, p + pos, want) == 0);
        free(buf);
}

static void seek_ok(struct kiln_blob_reader *r, int64_t off, int whence, uint64_t want)
{
        struct kiln_error *err = NULL;
        uint64_t pos = UINT64_MAX;
        assert_ok(kiln_blob_reader_seek(r, off, whence, &pos, &err), err);
        assert_int_equal(pos, want);
}

static void test_seek(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        size_t n = 3 * f->k->avg + 12345;
        if (n < 2 * MiB)
                n = 2 * MiB + 12345;
        uint8_t *p = random_blob(n, 400);
        struct kiln_digest d = put_blob(f->svc, p, n, 4);
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r = NULL;
        assert_int_equal(kiln_blob_open_read(f->svc, &d, &r, &err), 1);

        /* Errors leave the position alone. */
        seek_ok(r, 1000, SEEK_SET, 1000);
        assert_error(kiln_blob_reader_seek(r, (int64_t)n + 1, SEEK_SET, NULL, &err), err,
                     EINVAL, "seeked beyond EOF");
        assert_error(kiln_blob_reader_seek(r, 1, SEEK_END, NULL, &err), err, EINVAL,
                     "seeked beyond EOF");
        assert_error(kiln_blob_reader_seek(r, (int64_t)n, SEEK_CUR, NULL, &err), err, EINVAL,
                     "seeked beyond EOF");
        assert_error(kiln_blob_reader_seek(r, -1, SEEK_SET, NULL, &err), err, EINVAL,
                     "over/underflow while seeking");
        assert_error(kiln_blob_reader_seek(r, -1001, SEEK_CUR, NULL, &err), err, EINVAL,
                     "over/underflow while seeking");
        assert_error(kiln_blob_reader_seek(r, INT64_MAX, SEEK_CUR, NULL, &err), err, EINVAL,
                     "over/underflow while seeking");
        assert_error(kiln_blob_reader_seek(r, INT64_MIN, SEEK_END, NULL, &err), err, EINVAL,
                     "over/underflow while seeking");
        assert_error(kiln_blob_reader_seek(r, -(int64_t)n - 1, SEEK_END, NULL, &err), err,
                     EINVAL, "over/underflow while seeking");
        seek_ok(r, 0, SEEK_CUR, 1000);
        expect_at(r, p, n, 1000, 10);

        /* Exactly to the end: reads return 0. */
        seek_ok(r, 0, SEEK_END, n);
        uint8_t c;
        assert_int_equal(kiln_blob_reader_read(r, &c, 1, &err), 0);
        seek_ok(r, (int64_t)n, SEEK_SET, n);
        assert_int_equal(kiln_blob_reader_read(r, &c, 1, &err), 0);
        seek_ok(r, -(int64_t)n, SEEK_END, 0);
        expect_at(r, p, n, 0, 100);

        /* Around every chunk boundary, reading across it. */
        struct kiln_chunk *chunks = NULL;
        size_t nc = 0;
        assert_int_equal(kiln_blob_chunks(f->svc, &d, &chunks, &nc, &err), 1);
        if (f->k->chunking)
                assert_true(nc >= 2);
        uint64_t off = 0;
        for (size_t i = 0; i <= nc; i++) {
                for (int64_t delta = -1; delta <= 1; delta++) {
                        int64_t t = (int64_t)off + delta;
                        if (t < 0 || (uint64_t)t > n)
                                continue;
                        seek_ok(r, t, SEEK_SET, (uint64_t)t);
                        expect_at(r, p, n, (uint64_t)t, 5);
                        /* Back over the boundary from the current position. */
                        uint64_t cur = (uint64_t)t + KILN_MIN(5, n - (uint64_t)t);
                        if (cur >= 7) {
                                seek_ok(r, -7, SEEK_CUR, cur - 7);
                                expect_at(r, p, n, cur - 7, 3);
                        }
                }
                if (i < nc)
                        off += chunks[i].size;
        }
        free(chunks);

        /* Random walk. */
        uint64_t rs = 4242, pos = 0;
        seek_ok(r, 0, SEEK_SET, 0);
        for (int i = 0; i < 60; i++) {
                uint64_t x = rng_next(&rs);
                uint64_t target = x % (n + 1);
                switch (x % 3) {
                case 0:
                        seek_ok(r, (int64_t)target, SEEK_SET, target);
                        break;
                case 1:
                        seek_ok(r, (int64_t)target - (int64_t)pos, SEEK_CUR, target);
                        break;
                default:
                        seek_ok(r, (int64_t)target - (int64_t)n, SEEK_END, target);
                        break;
                }
                size_t len = (size_t)(rng_next(&rs) % (f->k->avg ? f->k->avg : 300 * KiB));
                expect_at(r, p, n, target, len);
                pos = KILN_MIN(target + len, n);
        }
        free(p);
}

static void test_chunks(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        static const size_t sizes[] = {1, 64 * KiB, MiB + 1, 3 * MiB};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(sizes); i++) {
                size_t n = sizes[i];
                uint8_t *p = random_blob(n, 500 + i);
                struct kiln_digest d = put_blob(f->svc, p, n, i);
                struct kiln_chunk *chunks = NULL;
                size_t nc = 99;
                assert_int_equal(kiln_blob_chunks(f->svc, &d, &chunks, &nc, &err), 1);
                if (!f->k->chunking)
                        assert_int_equal(nc, 0);
                else if (n > 2 * 2 * f->k->avg)
                        assert_true(nc >= 2);
                else if (n <= f->k->avg / 2)
                        assert_int_equal(nc, 0); /* one chunk: stored under its digest */
                uint64_t off = 0;
                for (size_t j = 0; j < nc; j++) {
                        const struct kiln_chunk *c = &chunks[j];
                        assert_true(c->size > 0 && c->size <= 2 * f->k->avg);
                        assert_true(off + c->size <= n);
                        struct kiln_digest want;
                        kiln_digest_of(p + off, (size_t)c->size, &want);
                        assert_true(kiln_digest_eq(&want, &c->digest));
                        assert_int_equal(kiln_blob_has(f->svc, &c->digest, &err), 1);
                        check_blob(f->svc, &c->digest, p + off, (size_t)c->size, j);
                        /* A chunk's own chunk list: stored, no finer chunking. */
                        struct kiln_chunk *sub = NULL;
                        size_t nsub = 99;
                        assert_int_equal(kiln_blob_chunks(f->svc, &c->digest, &sub, &nsub, &err),
                                         1);
                        assert_int_equal(nsub, 0);
                        free(sub);
                        off += c->size;
                }
                if (nc)
                        assert_int_equal(off, n);
                free(chunks);
                free(p);
        }
}

/* Several threads write and read blobs that share content. */
#define CONC_THREADS 4
#define CONC_BLOBS   6

struct conc {
        struct kiln_blob_service *svc;
        const uint8_t *base;
        const size_t *sizes;
        const struct kiln_digest *digests;
        int tid;
        char failure[256];
};

static void *conc_thread(void *arg)
{
        struct conc *c = arg;
        struct kiln_error *err = NULL;
        struct kiln_buf b = KILN_BUF_INIT;
        for (int j = 0; j < 3; j++) {
                int bi = (c->tid + j) % CONC_BLOBS;
                struct kiln_digest d;
                if (write_blob(c->svc, c->base, c->sizes[bi], (uint64_t)(c->tid * 10 + j), &d,
                               &err) < 0) {
                        snprintf(c->failure, sizeof(c->failure), "write: %s", err->msg);
                        break;
                }
                if (!kiln_digest_eq(&d, &c->digests[bi])) {
                        snprintf(c->failure, sizeof(c->failure), "blob %d: wrong digest", bi);
                        break;
                }
                /* Read one this thread may or may not have seen written. */
                int ri = (bi + 1 + j) % CONC_BLOBS;
                int r = kiln_blob_get(c->svc, &c->digests[ri], &b, &err);
                if (r < 0) {
                        snprintf(c->failure, sizeof(c->failure), "read: %s", err->msg);
                        break;
                }
                if (r > 0 && (b.len != c->sizes[ri] || memcmp(b.data, c->base, b.len))) {
                        snprintf(c->failure, sizeof(c->failure), "blob %d read back wrong", ri);
                        break;
                }
                kiln_buf_done(&b);
                r = kiln_blob_get(c->svc, &c->digests[bi], &b, &err);
                if (r != 1 || b.len != c->sizes[bi] || memcmp(b.data, c->base, b.len)) {
                        snprintf(c->failure, sizeof(c->failure), "blob %d: own write unreadable",
                                 bi);
                        break;
                }
                kiln_buf_done(&b);
        }
        kiln_buf_done(&b);
        kiln_error_free(err);
        return NULL;
}

static void test_concurrency(void **state)
{
        struct fx *f = *state;
        size_t max = 1280 * KiB;
        uint8_t *base = random_blob(max, 600);
        size_t sizes[CONC_BLOBS];
        struct kiln_digest digests[CONC_BLOBS];
        for (int i = 0; i < CONC_BLOBS; i++) {
                /* Prefixes of one buffer: they share leading chunks. */
                sizes[i] = max - (size_t)i * 150 * KiB - (size_t)i * 7;
                kiln_digest_of(base, sizes[i], &digests[i]);
        }
        struct conc c[CONC_THREADS];
        pthread_t th[CONC_THREADS];
        for (int t = 0; t < CONC_THREADS; t++)
                c[t] = (struct conc){.svc = f->svc, .base = base, .sizes = sizes,
                                     .digests = digests, .tid = t};
        for (int t = 0; t < CONC_THREADS; t++)
                assert_int_equal(pthread_create(&th[t], NULL, conc_thread, &c[t]), 0);
        for (int t = 0; t < CONC_THREADS; t++)
                pthread_join(th[t], NULL);
        for (int t = 0; t < CONC_THREADS; t++)
                if (c[t].failure[0])
                        fail_msg("thread %d: %s", t, c[t].failure);
        for (int i = 0; i < CONC_BLOBS; i++)
                check_blob(f->svc, &digests[i], base, sizes[i], (uint64_t)i);
        free(base);
}

/* --- objectstore: layout --- */

static void list_files(const char *dir, const char *rel, char ***names, size_t *n)
{
        _cleanup_free_ char *path = kiln_asprintf("%s%s%s", dir, *rel ? "/" : "", rel);
        DIR *d = opendir(path);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *sub =
                        kiln_asprintf("%s%s%s", rel, *rel ? "/" : "", de->d_name);
                _cleanup_free_ char *full = kiln_asprintf("%s/%s", dir, sub);
                struct stat st;
                assert_int_equal(lstat(full, &st), 0);
                if (S_ISDIR(st.st_mode)) {
                        list_files(dir, sub, names, n);
                } else {
                        *names = realloc(*names, (*n + 1) * sizeof(**names));
                        (*names)[(*n)++] = TAKE_PTR(sub);
                }
        }
        closedir(d);
}

static size_t count_files(const char *dir, const char *prefix)
{
        char **names = NULL;
        size_t n = 0, count = 0;
        list_files(dir, "", &names, &n);
        for (size_t i = 0; i < n; i++) {
                if (!strncmp(names[i], prefix, strlen(prefix)))
                        count++;
                free(names[i]);
        }
        free(names);
        return count;
}

static uint8_t *slurp(const char *path, size_t *ret_n)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        uint8_t *p = malloc((size_t)st.st_size + 1);
        assert_int_equal(kiln_read_full(fd, p, (size_t)st.st_size), st.st_size);
        *ret_n = (size_t)st.st_size;
        return p;
}

static void spew(const char *path, const void *p, size_t n)
{
        chmod(path, 0644);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(kiln_write_all(fd, p, n), 0);
}

static void test_hello_world_layout(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f->svc, "Hello World", 11, &d, &err), err);
        assert_string_equal(KILN_DIGEST_HEX(&d), HEX_HELLO);

        char **names = NULL;
        size_t n = 0;
        list_files(f->store, "", &names, &n);
        /* A single-chunk blob is its chunk: no index. */
        assert_int_equal(n, 1);
        assert_string_equal(names[0], "chunks/b3/41f8/" HEX_HELLO);
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);

        _cleanup_free_ char *blob = kiln_asprintf("%s/blobs/b3/41f8/" HEX_HELLO, f->store);
        _cleanup_free_ char *chunk = kiln_asprintf("%s/chunks/b3/41f8/" HEX_HELLO, f->store);
        struct stat st;
        assert_int_equal(stat(blob, &st), -1);
        assert_int_equal(stat(chunk, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0444);
        size_t zn;
        _cleanup_free_ uint8_t *z = slurp(chunk, &zn);
        char out[64];
        size_t on = ZSTD_decompress(out, sizeof(out), z, zn);
        assert_false(ZSTD_isError(on));
        assert_int_equal(on, 11);
        assert_memory_equal(out, "Hello World", 11);

        struct kiln_chunk *chunks = NULL;
        size_t nc = 99;
        assert_int_equal(kiln_blob_chunks(f->svc, &d, &chunks, &nc, &err), 1);
        assert_int_equal(nc, 0);
        assert_int_equal(kiln_blob_has(f->svc, &d, &err), 1);
        /* Writing it again touches nothing. */
        struct stat before, after;
        assert_int_equal(stat(chunk, &before), 0);
        assert_ok(kiln_blob_put(f->svc, "Hello World", 11, &d, &err), err);
        assert_int_equal(stat(chunk, &after), 0);
        assert_int_equal(before.st_ino, after.st_ino);
        assert_int_equal(count_files(f->store, ""), 1);
        /* A zero-byte index as upstream writes it still reads. */
        _cleanup_free_ char *shard = kiln_asprintf("%s/blobs/b3/41f8", f->store);
        assert_int_equal(kiln_mkdir_p(shard, 0755), 0);
        int fd = open(blob, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(kiln_blob_chunks(f->svc, &d, &chunks, &nc, &err), 1);
        assert_int_equal(nc, 0);
        check_blob(f->svc, &d, (const uint8_t *)"Hello World", 11, 1);
}

/* A multi-chunk blob's index is a StatBlobResponse listing its chunks. */
static void test_index_format(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        size_t n = 2 * MiB;
        uint8_t *p = random_blob(n, 700);
        struct kiln_digest d = put_blob(f->svc, p, n, 7);
        _cleanup_free_ char *idx = path_of(f->store, "blobs", &d);
        size_t len;
        _cleanup_free_ uint8_t *raw = slurp(idx, &len);
        Tvix__Castore__V1__StatBlobResponse *msg =
                tvix__castore__v1__stat_blob_response__unpack(NULL, len, raw);
        assert_non_null(msg);
        struct kiln_chunk *chunks = NULL;
        size_t nc = 0;
        assert_int_equal(kiln_blob_chunks(f->svc, &d, &chunks, &nc, &err), 1);
        assert_true(nc >= 2);
        assert_int_equal(msg->n_chunks, nc);
        for (size_t i = 0; i < nc; i++) {
                assert_int_equal(msg->chunks[i]->digest.len, 32);
                assert_memory_equal(msg->chunks[i]->digest.data, chunks[i].digest.b, 32);
                assert_int_equal(msg->chunks[i]->size, chunks[i].size);
                _cleanup_free_ char *cp = path_of(f->store, "chunks", &chunks[i].digest);
                assert_true(file_exists(cp));
        }
        /* The blob itself has no chunk object. */
        _cleanup_free_ char *whole = path_of(f->store, "chunks", &d);
        assert_false(file_exists(whole));
        tvix__castore__v1__stat_blob_response__free_unpacked(msg, NULL);
        free(chunks);
        free(p);
}

static void test_shared_chunks_stored_once(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        size_t prefix = 3 * MiB, tail = MiB;
        uint8_t *a = random_blob(prefix + tail, 800);
        uint8_t *b = malloc(prefix + tail);
        memcpy(b, a, prefix);
        fill_random(b + prefix, tail, 801);

        struct kiln_digest da = put_blob(f->svc, a, prefix + tail, 1);
        size_t files_a = count_files(f->store, "chunks/");
        struct kiln_digest db = put_blob(f->svc, b, prefix + tail, 2);
        size_t files_ab = count_files(f->store, "chunks/");

        struct kiln_chunk *ca = NULL, *cb = NULL;
        size_t na = 0, nb = 0;
        assert_int_equal(kiln_blob_chunks(f->svc, &da, &ca, &na, &err), 1);
        assert_int_equal(kiln_blob_chunks(f->svc, &db, &cb, &nb, &err), 1);
        assert_int_equal(files_a, na);
        /* The leading chunks coincide and cover all but the last max chunk
         * of the shared prefix. */
        size_t same = 0;
        uint64_t covered = 0;
        while (same < na && same < nb && kiln_digest_eq(&ca[same].digest, &cb[same].digest))
                covered += ca[same++].size;
        assert_true(covered >= prefix - 2 * KILN_FASTCDC_AVG_DEFAULT);
        assert_true(covered >= 2 * MiB);
        /* Each distinct chunk is one file. */
        size_t distinct = na;
        for (size_t i = 0; i < nb; i++) {
                bool seen = false;
                for (size_t j = 0; j < na && !seen; j++)
                        seen = kiln_digest_eq(&cb[i].digest, &ca[j].digest);
                distinct += !seen;
        }
        assert_int_equal(files_ab, distinct);
        assert_true(files_ab < na + nb);
        assert_int_equal(count_files(f->store, "blobs/"), 2);
        free(ca);
        free(cb);
        free(a);
        free(b);
}

/* --- objectstore: corruption --- */

/* Reads everything; expects failure with `code` and a message containing
 * each needle, with no byte at or after `bad_from` returned. */
static void expect_read_failure(struct kiln_blob_service *s, const struct kiln_digest *d,
                                const uint8_t *p, uint64_t bad_from, int code,
                                const char *needle1, const char *needle2)
{
        struct kiln_error *err = NULL;
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r = NULL;
        int rr = kiln_blob_open_read(s, d, &r, &err);
        uint64_t got = 0;
        if (rr == 1) {
                uint8_t *buf = malloc(64 * KiB);
                for (;;) {
                        ssize_t k = kiln_blob_reader_read(r, buf, 64 * KiB, &err);
                        if (k <= 0) {
                                rr = (int)k;
                                break;
                        }
                        assert_memory_equal(buf, p + got, (size_t)k);
                        got += (uint64_t)k;
                }
                free(buf);
        }
        if (rr >= 0)
                fail_msg("reading %s succeeded (%" PRIu64 " bytes)", KILN_DIGEST_B64(d), got);
        assert_true(got <= bad_from);
        assert_int_equal(rr, -code);
        assert_non_null(err);
        if (!strstr(err->msg, needle1) || (needle2 && !strstr(err->msg, needle2)))
                fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err->msg, needle1,
                         needle2 ? needle2 : "");
        kiln_error_clear(&err);
}

struct multi {
        uint8_t *p;
        size_t n;
        struct kiln_digest d;
        struct kiln_chunk *chunks;
        size_t nc;
};

static void multi_put(struct fx *f, struct multi *m, size_t n, uint64_t seed)
{
        struct kiln_error *err = NULL;
        m->n = n;
        m->p = random_blob(n, seed);
        m->d = put_blob(f->svc, m->p, n, seed);
        assert_int_equal(kiln_blob_chunks(f->svc, &m->d, &m->chunks, &m->nc, &err), 1);
        assert_true(m->nc >= 3);
}

static uint64_t chunk_offset(const struct multi *m, size_t i)
{
        uint64_t off = 0;
        for (size_t j = 0; j < i; j++)
                off += m->chunks[j].size;
        return off;
}

static void multi_done(struct multi *m)
{
        free(m->p);
        free(m->chunks);
}

static void test_corrupt_chunk(void **state)
{
        struct fx *f = *state;
        struct multi m;
        multi_put(f, &m, 2 * MiB, 900);
        const struct kiln_digest *c = &m.chunks[2].digest;
        char c64[KILN_DIGEST_B64_BUFSZ], b64[KILN_DIGEST_B64_BUFSZ];
        kiln_digest_to_b64(c, c64);
        kiln_digest_to_b64(&m.d, b64);
        uint64_t off = chunk_offset(&m, 2);
        _cleanup_free_ char *path = path_of(f->store, "chunks", c);
        size_t zn;
        _cleanup_free_ uint8_t *orig = slurp(path, &zn);

        /* One flipped byte inside the (incompressible, so stored) data. */
        uint8_t *z = kiln_memdup(orig, zn);
        z[zn / 2] ^= 0x40;
        spew(path, z, zn);
        expect_read_failure(f->svc, &m.d, m.p, off, EBADMSG, c64, "is corrupt");
        expect_read_failure(f->svc, c, m.p + off, 0, EBADMSG, c64, "is corrupt");
        struct kiln_error *err = NULL;
        assert_int_equal(kiln_blob_has(f->svc, c, &err), 1);

        /* Truncated. */
        spew(path, orig, zn / 2);
        expect_read_failure(f->svc, &m.d, m.p, off, EBADMSG, c64, b64);
        /* Empty file. */
        spew(path, orig, 0);
        expect_read_failure(f->svc, &m.d, m.p, off, EBADMSG, c64, "is corrupt");
        /* Garbage that is not zstd at all. */
        spew(path, "garbage!garbage!", 16);
        expect_read_failure(f->svc, &m.d, m.p, off, EBADMSG, c64, "is corrupt");
        /* A valid frame with other contents of the same size. */
        uint8_t *other = random_blob((size_t)m.chunks[2].size, 901);
        size_t bound = ZSTD_compressBound((size_t)m.chunks[2].size);
        uint8_t *oz = malloc(bound);
        size_t ozn = ZSTD_compress(oz, bound, other, (size_t)m.chunks[2].size, 3);
        assert_false(ZSTD_isError(ozn));
        spew(path, oz, ozn);
        expect_read_failure(f->svc, &m.d, m.p, off, EBADMSG, c64, "contents hash to");
        /* A valid frame of another size. */
        ozn = ZSTD_compress(oz, bound, other, (size_t)m.chunks[2].size - 1, 3);
        spew(path, oz, ozn);
        expect_read_failure(f->svc, &m.d, m.p, off, EBADMSG, c64, "is corrupt");

        /* Restored: reads work again, also after seeking past the bad spot. */
        spew(path, orig, zn);
        check_blob(f->svc, &m.d, m.p, m.n, 9);
        free(other);
        free(oz);
        free(z);
        multi_done(&m);
}

static void test_corrupt_single_chunk_blob(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f->svc, "Hello World", 11, &d, &err), err);
        _cleanup_free_ char *path = path_of(f->store, "chunks", &d);
        size_t zn;
        _cleanup_free_ uint8_t *z = slurp(path, &zn);
        z[zn - 2] ^= 1;
        spew(path, z, zn);
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r = NULL;
        assert_error(kiln_blob_open_read(f->svc, &d, &r, &err), err, EBADMSG,
                     KILN_DIGEST_B64(&d));
        assert_null(r);
        spew(path, z, 3);
        assert_error(kiln_blob_open_read(f->svc, &d, &r, &err), err, EBADMSG, "is corrupt");
}

static void test_corrupt_index(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct multi m;
        multi_put(f, &m, 2 * MiB, 1000);
        char b64[KILN_DIGEST_B64_BUFSZ];
        kiln_digest_to_b64(&m.d, b64);
        _cleanup_free_ char *path = path_of(f->store, "blobs", &m.d);
        size_t len;
        _cleanup_free_ uint8_t *orig = slurp(path, &len);

        static const char garbage[] = "\xff\xff\xff\xff this is not an index";
        spew(path, garbage, sizeof(garbage) - 1);
        expect_read_failure(f->svc, &m.d, m.p, 0, EBADMSG, b64, "index is corrupt");
        struct kiln_chunk *chunks = NULL;
        size_t nc = 0;
        assert_error(kiln_blob_chunks(f->svc, &m.d, &chunks, &nc, &err), err, EBADMSG, b64);
        assert_int_equal(kiln_blob_has(f->svc, &m.d, &err), 1);

        /* Truncated in the middle of a chunk entry. */
        spew(path, orig, len - 5);
        expect_read_failure(f->svc, &m.d, m.p, 0, EBADMSG, b64, "index is corrupt");

        /* A digest of the wrong length. */
        Tvix__Castore__V1__StatBlobResponse *msg =
                tvix__castore__v1__stat_blob_response__unpack(NULL, len, orig);
        assert_non_null(msg);
        msg->chunks[1]->digest.len = 31;
        uint8_t *bad = malloc(len);
        size_t bl = tvix__castore__v1__stat_blob_response__pack(msg, bad);
        spew(path, bad, bl);
        expect_read_failure(f->svc, &m.d, m.p, 0, EBADMSG, b64, "malformed digest");
        msg->chunks[1]->digest.len = 32;
        /* A size that does not match the chunk. */
        msg->chunks[1]->size += 1;
        bl = tvix__castore__v1__stat_blob_response__pack(msg, bad);
        spew(path, bad, bl);
        expect_read_failure(f->svc, &m.d, m.p, chunk_offset(&m, 1), EBADMSG,
                            KILN_DIGEST_B64(&m.chunks[1].digest), "is corrupt");
        tvix__castore__v1__stat_blob_response__free_unpacked(msg, NULL);
        free(bad);

        /* Another blob's (valid) index: every chunk verifies, but the whole
         * does not; caught before the last chunk's bytes are returned. */
        struct multi o;
        multi_put(f, &o, 2 * MiB + 100, 1001);
        _cleanup_free_ char *opath = path_of(f->store, "blobs", &o.d);
        size_t olen;
        _cleanup_free_ uint8_t *oidx = slurp(opath, &olen);
        spew(path, oidx, olen);
        expect_read_failure(f->svc, &m.d, o.p, chunk_offset(&o, o.nc - 1), EBADMSG, b64,
                            "its chunks hash to");

        spew(path, orig, len);
        check_blob(f->svc, &m.d, m.p, m.n, 1);
        multi_done(&o);
        multi_done(&m);
}

static void test_missing_chunk(void **state)
{
        struct fx *f = *state;
        struct multi m;
        multi_put(f, &m, 2 * MiB, 1100);
        _cleanup_free_ char *path = path_of(f->store, "chunks", &m.chunks[1].digest);
        assert_int_equal(unlink(path), 0);
        expect_read_failure(f->svc, &m.d, m.p, chunk_offset(&m, 1), ENOENT,
                            KILN_DIGEST_B64(&m.chunks[1].digest), "not found");
        /* Seeking past it still works. */
        struct kiln_error *err = NULL;
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r = NULL;
        assert_int_equal(kiln_blob_open_read(f->svc, &m.d, &r, &err), 1);
        uint64_t off = chunk_offset(&m, 2);
        seek_ok(r, (int64_t)off, SEEK_SET, off);
        expect_at(r, m.p, m.n, off, 1000);
        /* A zero-byte index (as upstream writes) whose chunk object is gone. */
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f->svc, "Hello World", 11, &d, &err), err);
        _cleanup_free_ char *hello = path_of(f->store, "chunks", &d);
        assert_int_equal(unlink(hello), 0);
        _cleanup_free_ char *index = path_of(f->store, "blobs", &d);
        _cleanup_free_ char *shard = kiln_strdup(index);
        *strrchr(shard, '/') = '\0';
        assert_int_equal(kiln_mkdir_p(shard, 0755), 0);
        int fd = open(index, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(kiln_blob_has(f->svc, &d, &err), 1);
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r2 = NULL;
        assert_error(kiln_blob_open_read(f->svc, &d, &r2, &err), err, ENOENT, "not found");
        multi_done(&m);
}

/* Lookups never follow a symlink planted in the store. */
static void test_symlink_not_followed(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f->svc, "Hello World", 11, &d, &err), err);
        _cleanup_free_ char *shard = kiln_asprintf("%s/chunks/b3/41f8", f->store);
        _cleanup_free_ char *moved = kiln_asprintf("%s/elsewhere", f->tmp);
        assert_int_equal(rename(shard, moved), 0);
        assert_int_equal(symlink(moved, shard), 0);
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *r = NULL;
        int rr = kiln_blob_open_read(f->svc, &d, &r, &err);
        assert_true(rr < 0);
        kiln_error_clear(&err);
        assert_true(kiln_blob_put(f->svc, "Hello World", 11, &d, &err) < 0);
        kiln_error_clear(&err);
}

/* --- objectstore: crash safety and concurrent processes --- */

/* Objects already verified (they never change), to check only new ones. */
struct name_set {
        char **v;
        size_t n;
};

static bool name_set_has(const struct name_set *s, const char *name)
{
        for (size_t i = 0; s && i < s->n; i++)
                if (!strcmp(s->v[i], name))
                        return true;
        return false;
}

static void name_set_done(struct name_set *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
}

/* Checks every visible object not in `seen` (may be NULL): chunks decompress
 * and hash to their name, indexes parse and their blobs read back and hash
 * to their name; adds them to `seen`. Returns the number of temp files. */
static size_t verify_store(struct fx *f, struct name_set *seen, size_t *ret_objects)
{
        char **names = NULL;
        size_t n = 0, tmp = 0, objects = 0;
        list_files(f->store, "", &names, &n);
        struct kiln_error *err = NULL;
        for (size_t i = 0; i < n; i++) {
                const char *base = strrchr(names[i], '/');
                base = base ? base + 1 : names[i];
                if (!strncmp(base, ".tmp-", 5)) {
                        tmp++;
                        free(names[i]);
                        continue;
                }
                objects++;
                if (name_set_has(seen, names[i])) {
                        free(names[i]);
                        continue;
                }
                struct kiln_digest d;
                assert_ok(kiln_digest_parse(base, &d, &err), err);
                const char *hex = KILN_DIGEST_HEX(&d);
                bool chunk = !strncmp(names[i], "chunks/b3/", 10);
                assert_true(chunk || !strncmp(names[i], "blobs/b3/", 9));
                assert_memory_equal(names[i] + (chunk ? 10 : 9), hex, 4);
                _cleanup_free_ char *full = kiln_asprintf("%s/%s", f->store, names[i]);
                if (chunk) {
                        size_t zn;
                        _cleanup_free_ uint8_t *z = slurp(full, &zn);
                        unsigned long long fcs = ZSTD_getFrameContentSize(z, zn);
                        if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN)
                                fail_msg("%s: not a complete zstd frame", names[i]);
                        uint8_t *out = malloc(fcs + 1);
                        size_t on = ZSTD_decompress(out, fcs + 1, z, zn);
                        if (ZSTD_isError(on))
                                fail_msg("%s: %s", names[i], ZSTD_getErrorName(on));
                        struct kiln_digest got;
                        kiln_digest_of(out, on, &got);
                        assert_string_equal(KILN_DIGEST_HEX(&got), hex);
                        free(out);
                } else {
                        struct kiln_buf b = KILN_BUF_INIT;
                        int r = kiln_blob_get(f->svc, &d, &b, &err);
                        if (r != 1)
                                fail_msg("blob %s: %s", names[i], r < 0 ? err->msg : "absent");
                        struct kiln_digest got;
                        kiln_digest_of(b.data, b.len, &got);
                        assert_string_equal(KILN_DIGEST_HEX(&got), hex);
                        kiln_buf_done(&b);
                }
                if (seen) {
                        seen->v = realloc(seen->v, (seen->n + 1) * sizeof(*seen->v));
                        seen->v[seen->n++] = names[i];
                } else {
                        free(names[i]);
                }
        }
        free(names);
        if (ret_objects)
                *ret_objects = objects;
        return tmp;
}

/* In a child: writes the seeded blob through a fresh service. */
static _Noreturn void child_write(const char *url, uint64_t seed, size_t n, int result_fd,
                                  int start_fd)
{
        if (start_fd >= 0) {
                char c;
                if (read(start_fd, &c, 1) != 1)
                        _exit(3);
        }
        struct kiln_error *err = NULL;
        struct kiln_blob_service *s = NULL;
        if (kiln_blob_service_open(url, &s, &err) < 0)
                _exit(2);
        uint8_t *p = malloc(n);
        fill_random(p, n, seed);
        struct kiln_digest d;
        if (write_blob(s, p, n, seed, &d, &err) < 0) {
                fprintf(stderr, "child: %s\n", err->msg);
                _exit(1);
        }
        if (result_fd >= 0 && write(result_fd, d.b, sizeof(d.b)) != sizeof(d.b))
                _exit(4);
        kiln_blob_service_free(s);
        free(p);
        _exit(0);
}

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_kill_during_write(void **state)
{
        struct fx *f = *state;
        kiln_blob_service_free(f->svc);
        f->svc = NULL;

        /* How long a full write takes, to spread the kills over it. */
        double t0 = now();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                child_write(f->url, 1, KILL_BLOB_SIZE, -1, -1);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        double full = now() - t0;

        uint64_t rs = (uint64_t)time(NULL);
        print_message("kill test seed %" PRIu64 ", full write %.3f s\n", rs, full);
        int killed = 0;
        struct name_set seen = {0};
        for (int it = 0; it < 10; it++) {
                uint64_t seed = 2 + (uint64_t)it % 3; /* repeats reuse partial chunks */
                double delay = full * (double)(rng_next(&rs) % 1000) / 1000.0;
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0)
                        child_write(f->url, seed, KILL_BLOB_SIZE, -1, -1);
                usleep((useconds_t)(delay * 1e6));
                kill(pid, SIGKILL);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                killed += WIFSIGNALED(status);
                if (WIFEXITED(status))
                        assert_int_equal(WEXITSTATUS(status), 0);

                fx_open(f); /* in named-temp mode this removes the dead writer's files */
                size_t objects;
                size_t tmp = verify_store(f, &seen, &objects);
                assert_int_equal(tmp, 0);
                kiln_blob_service_free(f->svc);
                f->svc = NULL;
        }
        print_message("killed %d of 10 writers\n", killed);

        /* The store still works, for blobs that were cut short too. */
        fx_open(f);
        for (uint64_t seed = 2; seed <= 4; seed++) {
                uint8_t *p = random_blob(KILL_BLOB_SIZE, seed);
                struct kiln_digest d = put_blob(f->svc, p, KILL_BLOB_SIZE, seed);
                check_blob(f->svc, &d, p, KILL_BLOB_SIZE, seed);
                free(p);
        }
        size_t objects;
        assert_int_equal(verify_store(f, &seen, &objects), 0);
        assert_true(objects > 3);
        name_set_done(&seen);
}

static void test_two_processes_same_blob(void **state)
{
        struct fx *f = *state;
        size_t n = PAIR_BLOB_SIZE;
        int start[2], result[2];
        assert_int_equal(pipe2(start, O_CLOEXEC), 0);
        assert_int_equal(pipe2(result, O_CLOEXEC), 0);
        pid_t pids[2];
        for (int i = 0; i < 2; i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0)
                        child_write(f->url, 77, n, result[1], start[0]);
        }
        assert_int_equal(write(start[1], "go", 2), 2);
        for (int i = 0; i < 2; i++) {
                int status;
                assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
        }
        uint8_t *p = random_blob(n, 77);
        struct kiln_digest want;
        kiln_digest_of(p, n, &want);
        for (int i = 0; i < 2; i++) {
                struct kiln_digest got;
                assert_int_equal(read(result[0], got.b, sizeof(got.b)), sizeof(got.b));
                assert_true(kiln_digest_eq(&got, &want));
        }
        close(start[0]);
        close(start[1]);
        close(result[0]);
        close(result[1]);
        check_blob(f->svc, &want, p, n, 5);
        size_t objects;
        assert_int_equal(verify_store(f, NULL, &objects), 0);
        free(p);
}

/* Named-temp mode: opening removes temp files of dead writers only. */
static void test_stale_temp_cleanup(void **state)
{
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f->svc, "Hello World", 11, &d, &err), err);
        _cleanup_free_ char *stale = kiln_asprintf("%s/chunks/b3/41f8/.tmp-0123456789abcdef",
                                                   f->store);
        _cleanup_free_ char *live = kiln_asprintf("%s/chunks/b3/41f8/.tmp-fedcba9876543210",
                                                  f->store);
        _cleanup_free_ char *other = kiln_asprintf("%s/chunks/b3/41f8/.keep", f->store);
        int fd = open(stale, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "partial", 7), 7);
        close(fd);
        int live_fd = open(live, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        assert_true(live_fd >= 0);
        assert_int_equal(flock(live_fd, LOCK_EX), 0); /* a writer still at work */
        fd = open(other, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        close(fd);

        fx_reopen(f);
        assert_false(file_exists(stale));
        assert_true(file_exists(live));
        assert_true(file_exists(other));
        close(live_fd);
        fx_reopen(f);
        assert_false(file_exists(live));
        check_blob(f->svc, &d, (const uint8_t *)"Hello World", 11, 1);
}

/* --- the object store layer itself --- */

struct put_race {
        struct kiln_objstore *o;
        int stored;
        int failed;
};

static void *put_race_thread(void *arg)
{
        struct put_race *pr = arg;
        int r = pr->o->ops->put(pr->o, "race/b3/0000/key", "same bytes", 10, NULL);
        pr->failed = r < 0;
        pr->stored = r == 1;
        return NULL;
}

static void objstore_checks(struct kiln_objstore *o)
{
        struct kiln_error *err = NULL;
        struct kiln_buf b = KILN_BUF_INIT;
        assert_int_equal(o->ops->exists(o, "a/b/c", &err), 0);
        assert_int_equal(o->ops->get(o, "a/b/c", 100, &b, &err), 0);
        assert_int_equal(o->ops->put(o, "a/b/c", "hello", 5, &err), 1);
        assert_int_equal(o->ops->put(o, "a/b/c", "other", 5, &err), 0); /* left untouched */
        assert_int_equal(o->ops->exists(o, "a/b/c", &err), 1);
        assert_int_equal(o->ops->get(o, "a/b/c", 100, &b, &err), 1);
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.data, "hello", 5);
        assert_int_equal(o->ops->get(o, "a/b/c", 5, &b, &err), 1);
        assert_error(o->ops->get(o, "a/b/c", 4, &b, &err), err, EBADMSG, "too large");
        assert_int_equal(o->ops->put(o, "a/b/empty", "", 0, &err), 1);
        assert_int_equal(o->ops->get(o, "a/b/empty", 0, &b, &err), 1);
        assert_int_equal(b.len, 0);
        assert_int_equal(o->ops->exists(o, "a/x/c", &err), 0);
        kiln_buf_done(&b);

        struct put_race pr[8];
        pthread_t th[8];
        for (int i = 0; i < 8; i++) {
                pr[i] = (struct put_race){.o = o};
                assert_int_equal(pthread_create(&th[i], NULL, put_race_thread, &pr[i]), 0);
        }
        int stored = 0;
        for (int i = 0; i < 8; i++) {
                pthread_join(th[i], NULL);
                assert_false(pr[i].failed);
                stored += pr[i].stored;
        }
        assert_int_equal(stored, 1);
}

static void test_objstore_memory(void **state)
{
        (void)state;
        _cleanup_(kiln_objstore_freep) struct kiln_objstore *o = NULL;
        assert_int_equal(kiln_objstore_memory_new(&o), 0);
        objstore_checks(o);
}

static void test_objstore_file(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        _cleanup_free_ char *tmp = make_tmpdir();
        for (int named = 0; named < 2; named++) {
                _cleanup_free_ char *dir = kiln_asprintf("%s/%d/store", tmp, named);
                kiln_objstore_file_no_tmpfile = named;
                _cleanup_(kiln_objstore_freep) struct kiln_objstore *o = NULL;
                assert_ok(kiln_objstore_file_new(dir, &o, &err), err);
                objstore_checks(o);
                _cleanup_free_ char *obj = kiln_asprintf("%s/a/b/c", dir);
                struct stat st;
                assert_int_equal(stat(obj, &st), 0);
                assert_int_equal(st.st_mode & 0777, 0444);
                assert_int_equal(count_files(dir, ""), 3); /* no temp files left */
        }
        kiln_objstore_file_no_tmpfile = false;
        rm_rf(tmp);
}

/* --- URLs --- */

static void test_urls(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        _cleanup_free_ char *tmp = make_tmpdir();
        struct kiln_blob_service *s = NULL;

        const char *ok_static[] = {
                "memory://",
                "objectstore+memory://",
                "objectstore+memory:///",
                "objectstore+memory://?avg_chunk_size=65536",
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(ok_static); i++) {
                int r = kiln_blob_service_open(ok_static[i], &s, &err);
                if (r < 0)
                        fail_msg("%s: %s", ok_static[i], kiln_error_msg(err));
                kiln_blob_service_free(s);
        }
        _cleanup_free_ char *nested = kiln_asprintf("objectstore+file://%s/a/b/c", tmp);
        assert_ok(kiln_blob_service_open(nested, &s, &err), err);
        assert_string_equal(kiln_blob_service_name(s), "objectstore");
        kiln_blob_service_free(s);
        _cleanup_free_ char *dir = kiln_asprintf("%s/a/b/c", tmp);
        struct stat st;
        assert_int_equal(stat(dir, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        _cleanup_free_ char *slash =
                kiln_asprintf("objectstore+file://%s/a/b/c/?avg_chunk_size=4194304", tmp);
        assert_ok(kiln_blob_service_open(slash, &s, &err), err);
        kiln_blob_service_free(s);

        _cleanup_free_ char *unknown_param =
                kiln_asprintf("objectstore+file://%s/never?foo=1", tmp);
        _cleanup_free_ char *never = kiln_asprintf("%s/never", tmp);
        _cleanup_free_ char *file = kiln_asprintf("%s/regular", tmp);
        _cleanup_close_ int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        _cleanup_free_ char *file_url = kiln_asprintf("objectstore+file://%s", file);
        const struct {
                const char *url;
                const char *needle;
                int code;
        } bad[] = {
                {"memory://foo", "takes no host", EINVAL},
                {"memory:///", "takes no path", EINVAL},
                {"memory:///foo", "takes no path", EINVAL},
                {"http://foo.example/test", "unknown type: http", EINVAL},
                {"objectstore://", "name the object store", EINVAL},
                {"objectstore+file://", "needs an absolute path", EINVAL},
                {"objectstore+file:relative/path", "needs an absolute path", EINVAL},
                {"objectstore+file:///", "refusing to use '/'", EINVAL},
                {"objectstore+file:////", "refusing to use '/'", EINVAL},
                {"objectstore+file://host.example/tmp/x", "host 'host.example' may not be set",
                 EINVAL},
                {"objectstore+memory://foo", "host 'foo' may not be set", EINVAL},
                {"objectstore+memory:///foo", "path '/foo' may not be set", EINVAL},
                {"objectstore+s3://bucket/path",
                 "unsupported object store 's3' (kiln supports file and memory)", EINVAL},
                {"objectstore+gs://bucket/path", "unsupported object store 'gs'", EINVAL},
                {"objectstore+https://localhost:8080/some-path",
                 "unsupported object store 'https'", EINVAL},
                {"objectstore+memory://?avg_chunk_size=1000", "power of two", EINVAL},
                {"objectstore+memory://?avg_chunk_size=abc", "power of two", EINVAL},
                {"objectstore+memory://?avg_chunk_size=2048", "power of two", EINVAL},
                {"objectstore+memory://?avg_chunk_size=8388608", "power of two", EINVAL},
                {"objectstore+memory://?avg_chunk_size=", "power of two", EINVAL},
                {unknown_param, "unknown parameter 'foo'", EINVAL},
                {file_url, "not a directory", ENOTDIR},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
                s = NULL;
                int r = kiln_blob_service_open(bad[i].url, &s, &err);
                if (r >= 0)
                        fail_msg("%s was accepted", bad[i].url);
                assert_null(s);
                if (r != -bad[i].code || !strcasestr(err->msg, bad[i].needle))
                        fail_msg("%s: %d \"%s\", expected %d \"%s\"", bad[i].url, r, err->msg,
                                 -bad[i].code, bad[i].needle);
                kiln_error_clear(&err);
        }
        /* A refused URL created nothing. */
        assert_false(file_exists(never));
        rm_rf(tmp);
}

/* avg_chunk_size changes the chunking (and nothing else). */
static void test_avg_chunk_size(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        _cleanup_(kiln_blob_service_freep) struct kiln_blob_service *s = NULL;
        assert_ok(kiln_blob_service_open("objectstore+memory://?avg_chunk_size=4096", &s, &err),
                  err);
        size_t n = 256 * KiB;
        uint8_t *p = random_blob(n, 1200);
        struct kiln_digest d = put_blob(s, p, n, 1);
        struct kiln_chunk *chunks = NULL;
        size_t nc = 0;
        assert_int_equal(kiln_blob_chunks(s, &d, &chunks, &nc, &err), 1);
        assert_true(nc > 20);
        for (size_t i = 0; i < nc; i++)
                assert_true(chunks[i].size <= 8192 && (i + 1 == nc || chunks[i].size > 2048));
        check_blob(s, &d, p, n, 2);
        free(chunks);
        free(p);
}

/* --- runner --- */

#define CONFORMANCE(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)

static const struct kind file_kind = {"objectstore+file://", "objectstore+file://%s", true,
                                      false, true, KILN_FASTCDC_AVG_DEFAULT};
static const struct kind named_kind = {"objectstore+file:// (named temp files)",
                                       "objectstore+file://%s", true, true, true,
                                       KILN_FASTCDC_AVG_DEFAULT};

int main(void)
{
        const struct CMUnitTest conformance[] = {
                CONFORMANCE(test_absent),
                CONFORMANCE(test_empty_blob),
                CONFORMANCE(test_roundtrip_sizes),
                CONFORMANCE(test_close_twice_and_write_after_close),
                CONFORMANCE(test_abort),
                CONFORMANCE(test_reuse_after_abort_and_dedup),
                CONFORMANCE(test_dedup),
                CONFORMANCE(test_seek),
                CONFORMANCE(test_chunks),
                CONFORMANCE(test_concurrency),
        };
        const struct CMUnitTest objectstore[] = {
                CONFORMANCE(test_hello_world_layout),
                CONFORMANCE(test_index_format),
                CONFORMANCE(test_shared_chunks_stored_once),
                CONFORMANCE(test_corrupt_chunk),
                CONFORMANCE(test_corrupt_single_chunk_blob),
                CONFORMANCE(test_corrupt_index),
                CONFORMANCE(test_missing_chunk),
                CONFORMANCE(test_symlink_not_followed),
                CONFORMANCE(test_kill_during_write),
                CONFORMANCE(test_two_processes_same_blob),
        };
        const struct CMUnitTest named_only[] = {
                CONFORMANCE(test_kill_during_write),
                CONFORMANCE(test_two_processes_same_blob),
                CONFORMANCE(test_stale_temp_cleanup),
        };
        const struct CMUnitTest other[] = {
                cmocka_unit_test(test_objstore_memory),
                cmocka_unit_test(test_objstore_file),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_avg_chunk_size),
        };
        int failed = 0;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(kinds); i++) {
                cur_kind = &kinds[i];
                _cleanup_free_ char *name = kiln_asprintf("conformance: %s", kinds[i].name);
                failed += _cmocka_run_group_tests(name, conformance,
                                                  KILN_ARRAY_SIZE(conformance), NULL, NULL);
        }
        cur_kind = &file_kind;
        failed += cmocka_run_group_tests_name("objectstore+file", objectstore, NULL, NULL);
        cur_kind = &named_kind;
        failed += cmocka_run_group_tests_name("objectstore+file, named temp files", named_only,
                                              NULL, NULL);
        failed += cmocka_run_group_tests_name("object stores, urls", other, NULL, NULL);
        return failed ? 1 : 0;
}
