/* BLAKE3: every kernel (portable, SSE4.1, AVX2, AVX-512 natively, and AVX-512 through SIMDe's
 * emulation) against the official test vectors, against the portable kernel primitive by
 * primitive, and against /usr/bin/b3sum on random inputs around the block, chunk and
 * subtree boundaries, fed in random pieces.
 *
 * Random choices come from KILN_TEST_SEED (printed at start) so a failure can be replayed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include <kiln/blake3/blake3.h>
#include <kiln/util/util.h>

#include "blake3_impl.h"

#define B3SUM_PATH "/usr/bin/b3sum"
#define MiB        (1024 * 1024)

/* ---- randomness ---- */

static uint64_t rng_state, test_seed;

static uint64_t rng_next(void)
{
        /* splitmix64 */
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
}

static size_t rng_below(size_t n)
{
        return n ? (size_t)(rng_next() % n) : 0;
}

static void rng_fill(uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i += 8) {
                uint64_t r = rng_next();
                memcpy(p + i, &r, KILN_MIN((size_t)8, n - i));
        }
}

/* ---- variants: one kernel table each ---- */

/* A variant is a level's own kernel table, or (alt) a second build of a kernel that libkiln
 * does not use: the AVX2 intrinsic rounds, or the AVX-512 kernel compiled against SIMDe. */
enum alt {
        ALT_NONE,
        ALT_AVX2_INTRINSICS,
        ALT_AVX512_SIMDE,
};

struct variant {
        const char *name;
        enum kiln_blake3_level level;
        enum alt alt;
};

/* clang-format off */
static const struct variant variants[] = {
        {"portable", KILN_BLAKE3_PORTABLE, ALT_NONE},
        {"sse41", KILN_BLAKE3_SSE41, ALT_NONE},
        {"avx2", KILN_BLAKE3_AVX2, ALT_NONE},
        {"avx2-intrinsics", KILN_BLAKE3_AVX2, ALT_AVX2_INTRINSICS},
        {"avx512", KILN_BLAKE3_AVX512, ALT_NONE},
        {"avx512-simde", KILN_BLAKE3_AVX512, ALT_AVX512_SIMDE},
};
/* clang-format on */

#ifdef KILN_TEST_HAVE_SIMDE
static const struct kiln_blake3_ops simde_ops = {
        .level = KILN_BLAKE3_AVX512,
        .degree = 16,
        .compress = kiln_blake3_compress_avx512_simde,
        .hash_many = kiln_blake3_hash_many_avx512_simde,
};
#endif

static bool must_run(void)
{
        const char *v = getenv("KILN_TEST_MUST_RUN");
        return v && !strcmp(v, "1");
}

/* The kernel table of a variant, or NULL after printing why it cannot run here. A CPU
 * without an instruction set is the hardware, not the setup, so that skip stands even under
 * KILN_TEST_MUST_RUN=1 (the SIMDe variant covers the AVX-512 code); a build that left a
 * kernel out does not. */
static const struct kiln_blake3_ops *variant_ops(const struct variant *v)
{
        const struct kiln_blake3_ops *ops;

        if (v->alt == ALT_AVX512_SIMDE) {
#ifdef KILN_TEST_HAVE_SIMDE
                return &simde_ops;
#else
                print_message("skip: %s: SIMDe headers (libsimde-dev) were missing at build time\n",
                              v->name);
                if (must_run())
                        fail_msg("KILN_TEST_MUST_RUN=1 but %s cannot run", v->name);
                return NULL;
#endif
        }
        ops = kiln_blake3_ops_for_level(v->level);
        if (ops && v->alt == ALT_AVX2_INTRINSICS) {
#ifdef KILN_TEST_HAVE_AVX2_INTRINSICS
                static struct kiln_blake3_ops avx2_intrinsics_ops;

                avx2_intrinsics_ops = *ops;
                avx2_intrinsics_ops.hash_many = kiln_blake3_hash_many_avx2_intrinsics;
                return &avx2_intrinsics_ops;
#else
                ops = NULL;
#endif
        }
        if (ops)
                return ops;
        if (!kiln_blake3_level_built(v->level)) {
                print_message("skip: %s: this build left the kernel out (-Dblake3_%s=false or "
                              "the compiler lacks its flags)\n",
                              v->name, kiln_blake3_level_name(v->level));
                if (must_run())
                        fail_msg("KILN_TEST_MUST_RUN=1 but %s cannot run", v->name);
        } else {
                print_message("skip: %s: this CPU (or its OS) does not support %s; "
                              "avx512-simde covers the AVX-512 code\n",
                              v->name, kiln_blake3_level_name(v->level));
        }
        return NULL;
}

/* Makes the variant current for the hasher; false (after a printed reason) if it cannot run. */
static bool use_variant(const struct variant *v)
{
        const struct kiln_blake3_ops *ops = variant_ops(v);

        if (!ops)
                return false;
        kiln_blake3_ops_set(ops);
        return true;
}

static int restore_dispatch(void **state)
{
        (void)state;
        kiln_blake3_ops_set(NULL);
        return 0;
}

/* ---- helpers ---- */

static void to_hex(const uint8_t d[KILN_BLAKE3_OUT_LEN], char hex[2 * KILN_BLAKE3_OUT_LEN + 1])
{
        for (size_t i = 0; i < KILN_BLAKE3_OUT_LEN; i++)
                snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static void fill_pattern(uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)(i % 251);
}

/* Feeds `data` in random pieces: empty, tiny, around a chunk, or large. */
static void update_in_pieces(struct kiln_blake3 *h, const uint8_t *data, size_t len)
{
        while (len > 0) {
                size_t n;

                switch (rng_below(5)) {
                case 0:
                        n = 0;
                        break;
                case 1:
                        n = rng_below(65) + 1;
                        break;
                case 2:
                        n = rng_below(2 * KILN_BLAKE3_CHUNK_LEN + 1);
                        break;
                case 3:
                        n = rng_below(64 * 1024 + 1);
                        break;
                default:
                        n = rng_below(len + 1);
                        break;
                }
                n = KILN_MIN(n, len);
                kiln_blake3_update(h, data, n);
                data += n;
                len -= n;
        }
}

static void hash_in_pieces(const uint8_t *data, size_t len, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        struct kiln_blake3 h;

        kiln_blake3_init(&h);
        update_in_pieces(&h, data, len);
        kiln_blake3_final(&h, out);
}

/* Feeds `data` in pieces of `piece` bytes, as `kiln hash` does with its read buffer, after
 * a first piece of `first` bytes (0: none): network slices, whose chunks are all misaligned. */
static void hash_after_in_blocks_of(const uint8_t *data, size_t len, size_t first, size_t piece,
                                    uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        struct kiln_blake3 h;
        size_t off = KILN_MIN(first, len);

        kiln_blake3_init(&h);
        kiln_blake3_update(&h, data, off);
        for (; off < len; off += piece)
                kiln_blake3_update(&h, data + off, KILN_MIN(piece, len - off));
        kiln_blake3_final(&h, out);
}

static void hash_in_blocks_of(const uint8_t *data, size_t len, size_t piece,
                              uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        hash_after_in_blocks_of(data, len, 0, piece, out);
}

static void assert_digest(const uint8_t got[KILN_BLAKE3_OUT_LEN], const char *want_hex,
                          const char *what, size_t len)
{
        char hex[2 * KILN_BLAKE3_OUT_LEN + 1];

        to_hex(got, hex);
        if (strcmp(hex, want_hex) != 0)
                fail_msg("%s, %zu bytes: got %s, want %s (seed %" PRIu64 ")", what, len, hex,
                         want_hex, test_seed);
}

/* ---- official test vectors ---- */

struct vector {
        size_t len;
        char hex[2 * KILN_BLAKE3_OUT_LEN + 1];
};

static struct vector *vectors;
static size_t n_vectors;

static void load_vectors(void)
{
        const char *dir = getenv("KILN_FIXTURES");
        _cleanup_free_ char *path = NULL;
        json_error_t jerr;
        json_t *root, *cases;

        if (vectors)
                return;
        assert_non_null(dir);
        path = kiln_asprintf("%s/blake3_test_vectors.json", dir);
        root = json_load_file(path, 0, &jerr);
        if (!root)
                fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
        cases = json_object_get(root, "cases");
        assert_true(json_is_array(cases));
        n_vectors = json_array_size(cases);
        assert_true(n_vectors > 0);
        vectors = kiln_calloc(n_vectors, sizeof(*vectors));
        for (size_t i = 0; i < n_vectors; i++) {
                json_t *c = json_array_get(cases, i);
                json_t *len = json_object_get(c, "input_len");
                const char *hash = json_string_value(json_object_get(c, "hash"));

                assert_true(json_is_integer(len));
                assert_non_null(hash);
                assert_true(strlen(hash) >= 2 * KILN_BLAKE3_OUT_LEN);
                vectors[i].len = (size_t)json_integer_value(len);
                memcpy(vectors[i].hex, hash, 2 * KILN_BLAKE3_OUT_LEN);
        }
        json_decref(root);
}

static void test_vectors(void **state)
{
        const struct variant *v = *state;
        size_t max = 0;
        _cleanup_free_ uint8_t *input = NULL;

        if (!use_variant(v))
                skip();
        load_vectors();
        for (size_t i = 0; i < n_vectors; i++)
                max = KILN_MAX(max, vectors[i].len);
        input = kiln_malloc(max + 1);
        fill_pattern(input, max);

        for (size_t i = 0; i < n_vectors; i++) {
                size_t len = vectors[i].len;
                uint8_t out[KILN_BLAKE3_OUT_LEN];
                struct kiln_blake3 h;

                kiln_blake3(input, len, out);
                assert_digest(out, vectors[i].hex, "one-shot", len);

                for (int k = 0; k < 4; k++) {
                        hash_in_pieces(input, len, out);
                        assert_digest(out, vectors[i].hex, "random pieces", len);
                }

                kiln_blake3_init(&h);
                for (size_t off = 0; off < len; off++)
                        kiln_blake3_update(&h, input + off, 1);
                kiln_blake3_final(&h, out);
                assert_digest(out, vectors[i].hex, "byte by byte", len);

                hash_in_blocks_of(input, len, 16 * 1024, out);
                assert_digest(out, vectors[i].hex, "16 KiB pieces", len);
                hash_after_in_blocks_of(input, len, 5, 16 * 1024, out);
                assert_digest(out, vectors[i].hex, "5 bytes, then 16 KiB pieces", len);
                hash_after_in_blocks_of(input, len, 3 * 1024 + 7, 5 * 1024, out);
                assert_digest(out, vectors[i].hex, "3 KiB + 7, then 5 KiB pieces", len);
        }
}

/* ---- each kernel's primitives against the portable ones ---- */

static void test_primitives(void **state)
{
        const struct variant *v = *state;
        const struct kiln_blake3_ops *ops = variant_ops(v);
        enum { MAX_INPUTS = 40, MAX_BLOCKS = 16 };
        static uint8_t data[MAX_INPUTS][MAX_BLOCKS * KILN_BLAKE3_BLOCK_LEN];
        const uint8_t *inputs[MAX_INPUTS];

        if (!ops)
                skip();
        for (size_t i = 0; i < MAX_INPUTS; i++)
                inputs[i] = data[i];

        for (int iter = 0; iter < 300; iter++) {
                uint32_t key[8], cv_want[8], cv_got[8];
                uint8_t block[KILN_BLAKE3_BLOCK_LEN];
                uint8_t want[MAX_INPUTS * KILN_BLAKE3_OUT_LEN], got[sizeof(want)];
                size_t n = rng_below(MAX_INPUTS + 1), blocks = rng_below(MAX_BLOCKS) + 1;
                bool inc = rng_below(2);
                uint8_t flags = (uint8_t)rng_next(), fs = (uint8_t)rng_next(),
                        fe = (uint8_t)rng_next(), len = (uint8_t)rng_below(65);
                /* Often straddle 2^32 so the counter's carry into the high word is hit in
                 * the middle of a vector. */
                uint64_t counter = rng_below(3) == 0 ? 0xFFFFFFFFull - rng_below(20) : rng_next();

                if (rng_below(4) == 0)
                        counter = 0;
                for (size_t i = 0; i < 8; i++)
                        key[i] = (uint32_t)rng_next();
                rng_fill(block, sizeof(block));
                rng_fill(&data[0][0], sizeof(data));

                memcpy(cv_want, key, sizeof(key));
                memcpy(cv_got, key, sizeof(key));
                kiln_blake3_compress_portable(cv_want, block, len, counter, flags);
                ops->compress(cv_got, block, len, counter, flags);
                if (memcmp(cv_want, cv_got, sizeof(cv_got)))
                        fail_msg("%s compress differs (len %u counter %#" PRIx64 " flags %#x)",
                                 v->name, len, counter, flags);

                memset(want, 0xAA, sizeof(want));
                memset(got, 0xAA, sizeof(got));
                kiln_blake3_hash_many_portable(inputs, n, blocks, key, counter, inc, flags, fs, fe,
                                               want);
                ops->hash_many(inputs, n, blocks, key, counter, inc, flags, fs, fe, got);
                for (size_t i = 0; i < MAX_INPUTS; i++)
                        if (memcmp(want + 32 * i, got + 32 * i, KILN_BLAKE3_OUT_LEN))
                                fail_msg("%s hash_many: output %zu of %zu differs (blocks %zu "
                                         "counter %#" PRIx64 " increment %d)",
                                         v->name, i, n, blocks, counter, inc);
        }
}

/* ---- agreement with b3sum ---- */

struct b3sum_case {
        size_t len;
        char hex[2 * KILN_BLAKE3_OUT_LEN + 1];
};

static uint8_t *b3_data;
static size_t b3_max;
static struct b3sum_case *b3_cases;
static size_t n_b3_cases;
static const char *b3_skip_reason;

static const size_t b3_fixed_sizes[] = {
        0,
        1,
        63,
        64,
        65,
        1023,
        1024,
        1025,
        2047,
        2048,
        2049,
        3071,
        3072,
        3073,
        4095,
        4096,
        4097,
        8191,
        8192,
        8193,
        16383,
        16384,
        16385,
        31 * 1024 - 1,
        31 * 1024,
        31 * 1024 + 1,
        32 * 1024 - 1,
        32 * 1024,
        32 * 1024 + 1,
        65535,
        65536,
        65537,
        17 * 16 * 1024 + 5,
        MiB - 1,
        MiB,
        MiB + 1,
        3 * MiB + 1000,
        33 * MiB + 7,
};
#define B3_RANDOM_SIZES 6

static int write_file(const char *path, const uint8_t *p, size_t n)
{
        FILE *f = fopen(path, "we");

        if (!f)
                return -errno;
        if (n && fwrite(p, 1, n, f) != n) {
                fclose(f);
                return -EIO;
        }
        return fclose(f) ? -errno : 0;
}

/* Writes each input to a scratch file and asks b3sum once for all the digests. */
static int b3sum_setup(void **state)
{
        char dir[] = "/tmp/kiln-test-blake3-XXXXXX";
        struct kiln_buf cmd = KILN_BUF_INIT;
        FILE *p;

        (void)state;
        if (access(B3SUM_PATH, X_OK) != 0) {
                b3_skip_reason = B3SUM_PATH " is not installed (Debian package b3sum)";
                return 0;
        }
        n_b3_cases = KILN_ARRAY_SIZE(b3_fixed_sizes) + B3_RANDOM_SIZES;
        b3_cases = kiln_calloc(n_b3_cases, sizeof(*b3_cases));
        for (size_t i = 0; i < n_b3_cases; i++) {
                size_t len = i < KILN_ARRAY_SIZE(b3_fixed_sizes) ? b3_fixed_sizes[i]
                                                                 : rng_below(3 * MiB);
                b3_cases[i].len = len;
                b3_max = KILN_MAX(b3_max, len);
        }
        b3_data = kiln_malloc(b3_max + 1);
        rng_fill(b3_data, b3_max);

        if (!mkdtemp(dir)) {
                print_message("mkdtemp %s: %s\n", dir, strerror(errno));
                return -1;
        }
        kiln_buf_append(&cmd, B3SUM_PATH " --no-names", strlen(B3SUM_PATH " --no-names"));
        for (size_t i = 0; i < n_b3_cases; i++) {
                _cleanup_free_ char *path = kiln_asprintf("%s/%zu", dir, i);
                _cleanup_free_ char *arg = kiln_asprintf(" '%s'", path);

                if (write_file(path, b3_data, b3_cases[i].len) < 0) {
                        print_message("write %s: %s\n", path, strerror(errno));
                        return -1;
                }
                kiln_buf_append(&cmd, arg, strlen(arg));
        }
        kiln_buf_append_byte(&cmd, 0);
        p = popen((const char *)cmd.data, "r");
        kiln_buf_done(&cmd);
        if (!p)
                return -1;
        for (size_t i = 0; i < n_b3_cases; i++) {
                char line[256];

                if (!fgets(line, sizeof(line), p) || strlen(line) < 2 * KILN_BLAKE3_OUT_LEN) {
                        print_message("b3sum printed too little\n");
                        pclose(p);
                        return -1;
                }
                memcpy(b3_cases[i].hex, line, 2 * KILN_BLAKE3_OUT_LEN);
        }
        if (pclose(p) != 0) {
                print_message("b3sum failed\n");
                return -1;
        }
        for (size_t i = 0; i < n_b3_cases; i++) {
                _cleanup_free_ char *path = kiln_asprintf("%s/%zu", dir, i);
                unlink(path);
        }
        rmdir(dir);
        return 0;
}

static int b3sum_teardown(void **state)
{
        (void)state;
        free(b3_data);
        free(b3_cases);
        kiln_blake3_ops_set(NULL);
        return 0;
}

static void test_b3sum(void **state)
{
        const struct variant *v = *state;
        /* Emulated AVX-512 is slow (more so under sanitizers): it gets the inputs up to a
         * few MiB, which still cover every shape of tree and kernel width. */
        size_t limit = v->alt == ALT_AVX512_SIMDE ? 4 * MiB : SIZE_MAX;

        if (b3_skip_reason) {
                print_message("skip: %s\n", b3_skip_reason);
                if (must_run())
                        fail_msg("KILN_TEST_MUST_RUN=1 but %s", b3_skip_reason);
                skip();
        }
        if (!use_variant(v))
                skip();
        for (size_t i = 0; i < n_b3_cases; i++) {
                const struct b3sum_case *c = &b3_cases[i];
                uint8_t out[KILN_BLAKE3_OUT_LEN];
                bool small, one_shot;

                if (c->len > limit)
                        continue;
                hash_in_pieces(b3_data, c->len, out);
                assert_digest(out, c->hex, "b3sum random pieces", c->len);
                /* Beyond a few chunks, more ways of feeding add sanitizer time, not shapes:
                 * the tens of MiB case gets none, the others one more picked at random. */
                if (c->len > 4 * MiB)
                        continue;
                small = c->len <= 64 * 1024 + 1;
                one_shot = small || rng_below(2) == 0;
                if (one_shot) {
                        kiln_blake3(b3_data, c->len, out);
                        assert_digest(out, c->hex, "b3sum one-shot", c->len);
                }
                if (small || !one_shot) {
                        hash_in_blocks_of(b3_data, c->len, 64 * 1024, out);
                        assert_digest(out, c->hex, "b3sum 64 KiB pieces", c->len);
                        hash_after_in_blocks_of(b3_data, c->len, 5, 16 * 1024, out);
                        assert_digest(out, c->hex, "b3sum 5 bytes, then 16 KiB pieces",
                                      c->len);
                }
        }
}

/* ---- hasher API ---- */

static void test_final_keeps_state(void **state)
{
        enum { LEN = 5 * 1024 + 17 };
        static uint8_t data[LEN];
        uint8_t whole[KILN_BLAKE3_OUT_LEN], first[KILN_BLAKE3_OUT_LEN], again[KILN_BLAKE3_OUT_LEN],
                prefix[KILN_BLAKE3_OUT_LEN], resumed[KILN_BLAKE3_OUT_LEN];
        struct kiln_blake3 h, copy;

        (void)state;
        /* No input at all: NULL is allowed with length 0. */
        kiln_blake3(NULL, 0, first);
        kiln_blake3_init(&h);
        kiln_blake3_update(&h, NULL, 0);
        kiln_blake3_final(&h, again);
        assert_memory_equal(first, again, KILN_BLAKE3_OUT_LEN);

        rng_fill(data, sizeof(data));
        kiln_blake3(data, LEN, whole);
        for (size_t cut = 0; cut <= LEN; cut += 1 + rng_below(700)) {
                kiln_blake3(data, cut, prefix);
                kiln_blake3_init(&h);
                kiln_blake3_update(&h, data, cut);
                memcpy(&copy, &h, sizeof(h));
                kiln_blake3_final(&h, first);
                kiln_blake3_final(&h, again);
                assert_memory_equal(first, prefix, KILN_BLAKE3_OUT_LEN);
                assert_memory_equal(again, prefix, KILN_BLAKE3_OUT_LEN);
                assert_memory_equal(&copy, &h, sizeof(h));
                kiln_blake3_update(&h, data + cut, LEN - cut);
                kiln_blake3_final(&h, resumed);
                assert_memory_equal(resumed, whole, KILN_BLAKE3_OUT_LEN);
        }
}

/* ---- multithreaded hashing ---- */

/* kiln_blake3_parallel*() against the single-threaded hasher: sizes around the block, chunk
 * and subtree boundaries, chunk counts that are not powers of two, several MiB; units of 1
 * chunk up to the defaults and 1 to 8 threads, from memory and from a file. */
static void test_parallel(void **state)
{
        static const size_t fixed[] = {
                0, 1, 63, 64, 65, 1023, 1024, 1025, 2047, 2048, 2049, 3 * 1024, 3 * 1024 + 1,
                4095, 4096, 4097, 6143, 6145, 8191, 8193, 14335, 14337, 16383, 16384, 16385,
                1024 * 37, 1024 * 37 + 511, 1024 * 1000 + 7, 131071, 131072, 131073, MiB - 1,
                MiB, MiB + 1, 2 * MiB + 1024, 3 * MiB + 5, 5 * MiB - 1,
        };
        static const size_t units[] = {1, 2, 4, 16, 128, KILN_BLAKE3_PARALLEL_UNIT_CHUNKS};
        static const unsigned threads[] = {1, 2, 3, 8};
        size_t max = 5 * MiB, n_sizes = KILN_ARRAY_SIZE(fixed) + 6;
        _cleanup_free_ uint8_t *data = kiln_malloc(max);
        char path[] = "/tmp/kiln-test-blake3-par-XXXXXX";
        _cleanup_close_ int fd = mkstemp(path);

        (void)state;
        assert_true(fd >= 0);
        unlink(path);
        rng_fill(data, max);
        assert_int_equal(kiln_write_all(fd, data, max), 0);
        for (size_t i = 0; i < n_sizes; i++) {
                /* The fixed sizes, then random ones: 2048 * k +- 1 and anything below max. */
                size_t len = i < KILN_ARRAY_SIZE(fixed)      ? fixed[i]
                             : i < KILN_ARRAY_SIZE(fixed) + 3 ? 2048 * (1 + rng_below(600)) + 1 -
                                                                        2 * rng_below(2)
                                                              : rng_below(max);
                uint8_t want[KILN_BLAKE3_OUT_LEN], got[KILN_BLAKE3_OUT_LEN];

                kiln_blake3(data, len, want);
                kiln_blake3_parallel(data, len, 2, got);
                if (memcmp(want, got, sizeof(want)))
                        fail_msg("kiln_blake3_parallel differs at len %zu", len);
                assert_int_equal(kiln_blake3_parallel_fd(fd, len, 2, got), 0);
                if (memcmp(want, got, sizeof(want)))
                        fail_msg("kiln_blake3_parallel_fd differs at len %zu", len);
                for (size_t u = 0; u < KILN_ARRAY_SIZE(units); u++)
                        for (size_t t = 0; t < KILN_ARRAY_SIZE(threads); t++) {
                                /* Tiny units on big inputs add time, not shapes. */
                                if (len / (units[u] * 1024) > 4096)
                                        continue;
                                kiln_blake3_parallel_units(data, len, threads[t], units[u], got);
                                if (memcmp(want, got, sizeof(want)))
                                        fail_msg("len %zu, %zu-chunk units, %u threads: differs",
                                                 len, units[u], threads[t]);
                                if (t != 1 && units[u] != 4)
                                        continue;
                                assert_int_equal(kiln_blake3_parallel_fd_units(fd, len, threads[t],
                                                                               units[u], got),
                                                 0);
                                if (memcmp(want, got, sizeof(want)))
                                        fail_msg("fd, len %zu, %zu-chunk units, %u threads: "
                                                 "differs",
                                                 len, units[u], threads[t]);
                        }
        }
        /* A file shorter than it was said to be is an error, not a digest. */
        assert_int_equal(kiln_blake3_parallel_fd(fd, max + 1, 2, (uint8_t[32]){0}), -EIO);
        assert_int_equal(kiln_blake3_parallel_fd_units(fd, max + 5000, 2, 1, (uint8_t[32]){0}),
                         -EIO);
        assert_int_equal(kiln_blake3_parallel_fd(-1, 3 * MiB, 2, (uint8_t[32]){0}), -EBADF);
}

static void test_level_names(void **state)
{
        enum kiln_blake3_level l;

        (void)state;
        for (int i = 0; i <= KILN_BLAKE3_LEVEL_MAX; i++) {
                const char *name = kiln_blake3_level_name((enum kiln_blake3_level)i);
                assert_int_equal(kiln_blake3_level_from_name(name, &l), 0);
                assert_int_equal(l, i);
        }
        assert_int_equal(kiln_blake3_level_from_name("avx1024", &l), -EINVAL);
        assert_int_equal(kiln_blake3_level_from_name("", &l), -EINVAL);
        assert_string_equal(kiln_blake3_level_name((enum kiln_blake3_level)42), "unknown");
}

static void test_dispatch(void **state)
{
        enum kiln_blake3_level best = kiln_blake3_level_supported();

        (void)state;
        print_message("best level here: %s\n", kiln_blake3_level_name(best));

        /* Portable always works; unknown names and levels the CPU lacks mean "best". */
        setenv("KILN_BLAKE3_SIMD", "portable", 1);
        kiln_blake3_ops_set(NULL);
        assert_int_equal(kiln_blake3_level(), KILN_BLAKE3_PORTABLE);
        setenv("KILN_BLAKE3_SIMD", "neon", 1);
        kiln_blake3_ops_set(NULL);
        assert_int_equal(kiln_blake3_level(), best);
        for (int l = 0; l <= KILN_BLAKE3_LEVEL_MAX; l++) {
                enum kiln_blake3_level level = (enum kiln_blake3_level)l;
                bool usable = kiln_blake3_ops_for_level(level) != NULL;

                setenv("KILN_BLAKE3_SIMD", kiln_blake3_level_name(level), 1);
                kiln_blake3_ops_set(NULL);
                assert_int_equal(kiln_blake3_level(), usable ? level : best);

                unsetenv("KILN_BLAKE3_SIMD");
                kiln_blake3_ops_set(NULL);
                assert_int_equal(kiln_blake3_force_level(level), usable ? 0 : -ENOTSUP);
                assert_int_equal(kiln_blake3_level(), usable ? level : best);
                if (usable)
                        assert_true(level <= best);
        }
        assert_int_equal(kiln_blake3_force_level((enum kiln_blake3_level)7), -EINVAL);
        unsetenv("KILN_BLAKE3_SIMD");
        kiln_blake3_ops_set(NULL);
        assert_int_equal(kiln_blake3_level(), best);
}

int main(void)
{
        static const struct {
                const char *name;
                CMUnitTestFunction fn;
        } per_variant[] = {
                {"primitives", test_primitives},
                {"vectors", test_vectors},
                {"b3sum", test_b3sum},
        };
        struct CMUnitTest tests[4 + KILN_ARRAY_SIZE(per_variant) * KILN_ARRAY_SIZE(variants)] = {
                cmocka_unit_test_teardown(test_level_names, restore_dispatch),
                cmocka_unit_test_teardown(test_dispatch, restore_dispatch),
                cmocka_unit_test_teardown(test_final_keeps_state, restore_dispatch),
                cmocka_unit_test_teardown(test_parallel, restore_dispatch),
        };
        const char *seed = getenv("KILN_TEST_SEED");
        size_t n = 4;
        int r;

        /* One test per variant, named "<test>/<variant>". */
        for (size_t t = 0; t < KILN_ARRAY_SIZE(per_variant); t++)
                for (size_t v = 0; v < KILN_ARRAY_SIZE(variants); v++)
                        tests[n++] = (struct CMUnitTest){
                                .name = kiln_asprintf("%s/%s", per_variant[t].name,
                                                      variants[v].name),
                                .test_func = per_variant[t].fn,
                                .teardown_func = restore_dispatch,
                                .initial_state = (void *)&variants[v],
                        };
        assert(n == KILN_ARRAY_SIZE(tests));

        test_seed =
                seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        rng_state = test_seed;
        print_message("KILN_TEST_SEED=%" PRIu64 "\n", test_seed);
        r = cmocka_run_group_tests_name("blake3", tests, b3sum_setup, b3sum_teardown);
        for (size_t i = 4; i < n; i++)
                free((char *)tests[i].name);
        free(vectors);
        return r;
}
