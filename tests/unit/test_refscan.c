/* Reference scanner: the vectors (with kiln's substring semantics), stream
 * splitting, the result API, and a randomized comparison against memmem(). */
#include <kiln/ingest/refscan.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>

#include <cmocka.h>

static const char *const NIX_NEEDLES[] = {
    "33l4p0pn0mybmqzaxfkpppyh7vx1c74p",
    "pf80kikyxr63wrw56k00i1kw6ba76qik",
    "fn7zvafq26f0c8b17brs7s95s10ibfzs",
};
static const char NIX_CONTENTS[] = "x /nix/store/33l4p0pn0mybmqzaxfkpppyh7vx1c74p-hello y "
                                   "/nix/store/pf80kikyxr63wrw56k00i1kw6ba76qik-src";

/* ---- helpers ----------------------------------------------------------------------------- */

static struct kiln_refscan_set *set_of_lens(const uint8_t *const *needles, const size_t *lens,
                                            size_t n)
{
        struct kiln_error *err = NULL;
        struct kiln_refscan_set *set = NULL;
        int r = kiln_refscan_set_new(needles, lens, n, &set, &err);

        if (r < 0)
                fail_msg("kiln_refscan_set_new: %s", kiln_error_msg(err));
        assert_null(err);
        assert_non_null(set);
        return set;
}

static struct kiln_refscan_set *set_of(const char *const *strs, size_t n)
{
        const uint8_t *needles[64];
        size_t lens[64];

        assert_true(n <= 64);
        for (size_t i = 0; i < n; i++) {
                needles[i] = (const uint8_t *)strs[i];
                lens[i] = strlen(strs[i]);
        }
        return set_of_lens(needles, lens, n);
}

/* Formats a result as "[0, 2]" into buf. */
static const char *fmt_result(const struct kiln_refscan_result *r, char *buf, size_t cap)
{
        _cleanup_free_ uint64_t *list = NULL;
        size_t n = kiln_refscan_result_list(r, &list), off = 0;

        off += snprintf(buf + off, cap - off, "[");
        for (size_t i = 0; i < n && off < cap; i++)
                off += snprintf(buf + off, cap - off, "%s%llu", i ? ", " : "",
                                (unsigned long long)list[i]);
        if (off < cap)
                snprintf(buf + off, cap - off, "]");
        return buf;
}

static void expect_result(const struct kiln_refscan_result *r, const char *want)
{
        char buf[4096];

        assert_string_equal(fmt_result(r, buf, sizeof(buf)), want);
}

/* Feeds data in pieces of `step` bytes (the last one shorter) into a fresh stream. */
static void stream_in_steps(const struct kiln_refscan_set *set, const void *data, size_t len,
                            size_t step, struct kiln_refscan_result *r)
{
        _cleanup_(kiln_refscan_stream_freep) struct kiln_refscan_stream *s =
            kiln_refscan_stream_new(set);

        kiln_refscan_stream_begin(s, r);
        for (size_t off = 0; off < len; off += step)
                kiln_refscan_stream_feed(s, (const uint8_t *)data + off, KILN_MIN(step, len - off));
        kiln_refscan_stream_end(s);
}

/* Scans data one-shot, whole-streamed and in 1-byte feeds; all three must give `want`. */
static void expect_all_ways(const struct kiln_refscan_set *set, const void *data, size_t len,
                            const char *want)
{
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *r =
            kiln_refscan_result_new(set);

        kiln_refscan_scan(set, data, len, r);
        expect_result(r, want);
        kiln_refscan_result_clear(r);
        stream_in_steps(set, data, len, len ? len : 1, r);
        expect_result(r, want);
        kiln_refscan_result_clear(r);
        stream_in_steps(set, data, len, 1, r);
        expect_result(r, want);
}

/* ---- spec vectors ------------------------------------------------------------------------ */

static void test_spec_file_contents(void **state)
{
        (void)state;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(NIX_NEEDLES, 3);

        assert_int_equal(kiln_refscan_set_count(set), 3);
        assert_int_equal(kiln_refscan_set_max_len(set), 32);
        expect_all_ways(set, NIX_CONTENTS, strlen(NIX_CONTENTS), "[0, 1]");
}

static void test_spec_symlink_target(void **state)
{
        (void)state;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(NIX_NEEDLES, 3);
        const char *target = "/nix/store/fn7zvafq26f0c8b17brs7s95s10ibfzs-emacs";

        expect_all_ways(set, target, strlen(target), "[2]");
}

static void test_spec_name_and_empty_file(void **state)
{
        (void)state;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(NIX_NEEDLES, 3);
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *name =
            kiln_refscan_result_new(set);
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *file =
            kiln_refscan_result_new(set);
        _cleanup_(kiln_refscan_stream_freep) struct kiln_refscan_stream *s =
            kiln_refscan_stream_new(set);

        /* kiln scans names when the caller feeds them: the name is a needle itself. */
        kiln_refscan_scan(set, NIX_NEEDLES[0], 32, name);
        expect_result(name, "[0]");

        /* The file's empty contents match nothing, streamed or not. */
        kiln_refscan_stream_begin(s, file);
        kiln_refscan_stream_feed(s, "", 0);
        kiln_refscan_stream_end(s);
        kiln_refscan_scan(set, "", 0, file);
        kiln_refscan_scan(set, NULL, 0, file);
        expect_result(file, "[]");
        assert_int_equal(kiln_refscan_result_count(file), 0);
}

static void test_spec_empty_needle_list(void **state)
{
        (void)state;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of_lens(NULL, NULL, 0);
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *r =
            kiln_refscan_result_new(set);
        _cleanup_free_ uint64_t *list = NULL;

        assert_int_equal(kiln_refscan_set_count(set), 0);
        assert_int_equal(kiln_refscan_set_max_len(set), 0);
        expect_all_ways(set, NIX_CONTENTS, strlen(NIX_CONTENTS), "[]");
        expect_all_ways(set, "", 0, "[]");
        assert_int_equal(kiln_refscan_result_list(r, &list), 0);
        assert_null(list);
}

static void test_spec_short_needle_in_short_haystack(void **state)
{
        (void)state;
        static const char *const needles[] = {"abc", "0123456789"};
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(needles, 2);

        /* The reference misses this (haystack shorter than the longest needle); kiln does not. */
        expect_all_ways(set, "abc", 3, "[0]");
}

/* ---- semantics --------------------------------------------------------------------------- */

static void test_empty_needle_rejected(void **state)
{
        (void)state;
        const uint8_t *needles[] = {(const uint8_t *)"abc", (const uint8_t *)"", NULL};
        size_t lens[] = {3, 0, 0};
        struct kiln_refscan_set *set = NULL;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        int r = kiln_refscan_set_new(needles, lens, 3, &set, &err);

        assert_int_equal(r, -EINVAL);
        assert_null(set);
        assert_non_null(err);
        assert_int_equal(err->code, EINVAL);
        assert_string_equal(err->msg, "needle 1 is empty");
        /* err may be NULL. */
        assert_int_equal(kiln_refscan_set_new(needles, lens, 2, &set, NULL), -EINVAL);
        assert_null(set);
}

static void test_overlapping_needles(void **state)
{
        (void)state;
        static const char *const needles[] = {"abcd", "cdef"};
        static const char *const long_needles[] = {
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-abcdefghij",
            "abcdefghij-0123456789012345678901234567890123456789",
        };
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(needles, 2);
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *lset = set_of(long_needles, 2);
        const char *h = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-abcdefghij-"
                        "0123456789012345678901234567890123456789";

        expect_all_ways(set, "abcdef", 6, "[0, 1]");
        expect_all_ways(set, "xxabcdefxx", 10, "[0, 1]");
        expect_all_ways(lset, h, strlen(h), "[0, 1]");
}

static void test_needle_inside_needle(void **state)
{
        (void)state;
        static const char *const needles[] = {
            "33l4p0pn0mybmqzaxfkpppyh7vx1c74p", /* contains all the others */
            "0mybmqzaxfkpppyh",                 /* long-path substring */
            "mqz",                              /* short-path substring */
            "p",                                /* single byte */
            "7vx1c74p",                         /* suffix, exactly LONG_MIN */
            "33l4p0p",                          /* prefix, just below */
            "zzzz",                             /* absent */
        };
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(needles, 7);

        expect_all_ways(set, NIX_NEEDLES[0], 32, "[0, 1, 2, 3, 4, 5]");
        expect_all_ways(set, "0mybmqzaxfkpppyh", 16, "[1, 2, 3]");
        expect_all_ways(set, "p", 1, "[3]");
        expect_all_ways(set, "zzz", 3, "[]");
}

static void test_duplicate_needles(void **state)
{
        (void)state;
        static const char *const needles[] = {
            NULL, "ab", NULL, "x", "ab", "x", "unrelated-needle-of-some-length", NULL,
        };
        const char *n[8];
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;

        memcpy(n, needles, sizeof(n));
        n[0] = n[2] = n[7] = NIX_NEEDLES[1];
        set = set_of(n, 8);
        expect_all_ways(set, NIX_CONTENTS, strlen(NIX_CONTENTS), "[0, 2, 3, 5, 7]");
        expect_all_ways(set, "--ab--", 6, "[1, 4]");
        expect_all_ways(set, "x", 1, "[3, 5]");
}

static void test_binary_needles(void **state)
{
        (void)state;
        const uint8_t a[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff};
        const uint8_t b[] = {0xff, 0};
        const uint8_t c[] = {0};
        const uint8_t *needles[] = {a, b, c};
        size_t lens[] = {sizeof(a), sizeof(b), sizeof(c)};
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set =
            set_of_lens(needles, lens, 3);
        uint8_t h[64] = {0};

        expect_all_ways(set, h, sizeof(h), "[2]");
        h[40] = 0xff;
        expect_all_ways(set, h, sizeof(h), "[0, 1, 2]");
        expect_all_ways(set, h + 24, 17, "[0, 2]");
        expect_all_ways(set, h + 25, 16, "[2]");
}

static void test_long_needles(void **state)
{
        (void)state;
        /* Needles far longer than the window and stride, streamed in feeds shorter than them. */
        uint8_t h[3000], n1[1000], n2[100];
        const uint8_t *needles[] = {n1, n2};
        size_t lens[] = {sizeof(n1), sizeof(n2)};
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *r = NULL;

        uint64_t x = 42;
        for (size_t i = 0; i < sizeof(h); i++) {
                x = x * UINT64_C(6364136223846793005) + 1442695040888963407;
                h[i] = "ab"[x >> 63];
        }
        memcpy(n1, h + 1234, sizeof(n1));
        memcpy(n2, h + 77, sizeof(n2));
        set = set_of_lens(needles, lens, 2);
        r = kiln_refscan_result_new(set);
        for (size_t step = 1; step < sizeof(h); step = step * 3 + 1) {
                kiln_refscan_result_clear(r);
                stream_in_steps(set, h, sizeof(h), step, r);
                expect_result(r, "[0, 1]");
        }
        h[1234 + 999] ^= 1;
        kiln_refscan_result_clear(r);
        stream_in_steps(set, h, sizeof(h), 100, r);
        expect_result(r, "[1]");
}

/* ---- streams ----------------------------------------------------------------------------- */

/* Every needle spanning a feed boundary at every possible position, in two and three feeds. */
static void test_boundary_every_split(void **state)
{
        (void)state;
        static const char *const needles[] = {
            "33l4p0pn0mybmqzaxfkpppyh7vx1c74p",
            "q",
            "xy",
            "nop",
            "0123456",
            "klmnopqrs",
            "ABCDEFGHIJKLMNOPQRSTU",
        };
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(needles, 7);
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *r =
            kiln_refscan_result_new(set);
        _cleanup_(kiln_refscan_stream_freep) struct kiln_refscan_stream *s =
            kiln_refscan_stream_new(set);
        const char *h = "--33l4p0pn0mybmqzaxfkpppyh7vx1c74p-q-xy-nop-0123456-klmnopqrs-"
                        "ABCDEFGHIJKLMNOPQRSTU--";
        size_t len = strlen(h);

        for (size_t i = 0; i <= len; i++) {
                for (size_t j = i; j <= len; j++) {
                        kiln_refscan_result_clear(r);
                        kiln_refscan_stream_begin(s, r);
                        kiln_refscan_stream_feed(s, h, i);
                        kiln_refscan_stream_feed(s, h + i, j - i);
                        kiln_refscan_stream_feed(s, h + j, len - j);
                        kiln_refscan_stream_end(s);
                        if (kiln_refscan_result_count(r) != 7)
                                fail_msg("split at %zu and %zu", i, j);
                }
        }
}

static void test_stream_reuse_forgets_carry(void **state)
{
        (void)state;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = set_of(NIX_NEEDLES, 3);
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *a =
            kiln_refscan_result_new(set);
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *b =
            kiln_refscan_result_new(set);
        _cleanup_(kiln_refscan_stream_freep) struct kiln_refscan_stream *s =
            kiln_refscan_stream_new(set);

        /* A needle split across two haystacks is in neither. */
        kiln_refscan_stream_begin(s, a);
        kiln_refscan_stream_feed(s, NIX_NEEDLES[2], 10);
        kiln_refscan_stream_end(s);
        kiln_refscan_stream_begin(s, b);
        kiln_refscan_stream_feed(s, NIX_NEEDLES[2] + 10, 22);
        kiln_refscan_stream_end(s);
        expect_result(a, "[]");
        expect_result(b, "[]");

        /* begin also drops an unfinished haystack. */
        kiln_refscan_stream_begin(s, a);
        kiln_refscan_stream_feed(s, NIX_NEEDLES[2], 10);
        kiln_refscan_stream_begin(s, a);
        kiln_refscan_stream_feed(s, NIX_NEEDLES[2] + 10, 22);
        kiln_refscan_stream_end(s);
        expect_result(a, "[]");

        /* Two streams of one output share a result. */
        kiln_refscan_stream_begin(s, a);
        kiln_refscan_stream_feed(s, NIX_CONTENTS, 20);
        kiln_refscan_stream_feed(s, NIX_CONTENTS + 20, strlen(NIX_CONTENTS) - 20);
        kiln_refscan_stream_end(s);
        kiln_refscan_scan(set, "fn7zvafq26f0c8b17brs7s95s10ibfzs", 32, a);
        expect_result(a, "[0, 1, 2]");
}

/* Found short needles leave the prefilter; the others in their bucket must stay. */
static void test_short_needles_pruned(void **state)
{
        (void)state;
        /* Ten short needles share eight buckets: "i" and "xyz" land in the same one. */
        static const char *const needles[] = {"a", "b", "c", "d",   "e", "f",
                                              "g", "h", "i", "xyz", NULL};
        const char *n[11];
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *r = NULL;
        _cleanup_(kiln_refscan_stream_freep) struct kiln_refscan_stream *s = NULL;
        static uint8_t h[100000];

        memcpy(n, needles, sizeof(n));
        n[10] = NIX_NEEDLES[0];
        set = set_of(n, 11);
        r = kiln_refscan_result_new(set);
        s = kiln_refscan_stream_new(set);
        for (size_t i = 0; i < sizeof(h); i++)
                h[i] = "abcdefghi-"[i % 10];
        memcpy(h + 70000, "xyz", 3);
        memcpy(h + 4096 * 20 - 10, NIX_NEEDLES[0], 32);
        kiln_refscan_stream_begin(s, r);
        for (size_t off = 0; off < sizeof(h); off += 4096)
                kiln_refscan_stream_feed(s, h + off, KILN_MIN((size_t)4096, sizeof(h) - off));
        kiln_refscan_stream_end(s);
        expect_result(r, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]");

        /* The same stream, a new result: pruning from the last one must not carry over. */
        kiln_refscan_result_clear(r);
        kiln_refscan_stream_begin(s, r);
        kiln_refscan_stream_feed(s, "-i-", 3);
        kiln_refscan_stream_feed(s, "xyz", 3);
        kiln_refscan_stream_end(s);
        expect_result(r, "[8, 9]");
}

/* ---- results ----------------------------------------------------------------------------- */

static void test_result_api(void **state)
{
        (void)state;
        const char *n[130];
        char bufs[130][8];
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *a = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *b = NULL;
        _cleanup_free_ uint64_t *list = NULL;
        const uint8_t *needles[130];
        size_t lens[130];

        for (size_t i = 0; i < 130; i++) {
                snprintf(bufs[i], sizeof(bufs[i]), "<%zu>", i);
                n[i] = bufs[i];
                needles[i] = (const uint8_t *)n[i];
                lens[i] = strlen(n[i]);
        }
        set = set_of_lens(needles, lens, 130);
        a = kiln_refscan_result_new(set);
        b = kiln_refscan_result_new(set);
        kiln_refscan_scan(set, "<129><0><64>", 12, a);
        kiln_refscan_scan(set, "<63><64><65>", 12, b);
        assert_true(kiln_refscan_result_test(a, 0));
        assert_true(kiln_refscan_result_test(a, 129));
        assert_false(kiln_refscan_result_test(a, 1));
        assert_false(kiln_refscan_result_test(a, 63));
        assert_int_equal(kiln_refscan_result_count(a), 3);
        kiln_refscan_result_merge(a, b);
        assert_int_equal(kiln_refscan_result_count(a), 5);
        assert_int_equal(kiln_refscan_result_list(a, &list), 5);
        assert_int_equal(list[0], 0);
        assert_int_equal(list[1], 63);
        assert_int_equal(list[2], 64);
        assert_int_equal(list[3], 65);
        assert_int_equal(list[4], 129);
        kiln_refscan_result_clear(a);
        assert_int_equal(kiln_refscan_result_count(a), 0);
        expect_result(b, "[63, 64, 65]");
}

struct thread_arg {
        const struct kiln_refscan_set *set;
        struct kiln_refscan_result *r;
        const uint8_t *data;
        size_t len;
};

static void *feed_thread(void *p)
{
        struct thread_arg *a = p;

        for (int round = 0; round < 50; round++)
                stream_in_steps(a->set, a->data, a->len, 97, a->r);
        return NULL;
}

/* Streams of one output on several threads mark one result. */
static void test_concurrent_streams(void **state)
{
        (void)state;
        enum { THREADS = 4, NEEDLES = 256, LEN = 32 };
        static uint8_t needle_bytes[NEEDLES][LEN], hay[THREADS][NEEDLES / THREADS * 40];
        const uint8_t *needles[NEEDLES];
        size_t lens[NEEDLES];
        struct thread_arg args[THREADS];
        pthread_t tids[THREADS];
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *r = NULL;

        for (size_t i = 0; i < NEEDLES; i++) {
                uint64_t x = i + 1;
                for (size_t j = 0; j < LEN; j++) {
                        /* splitmix64 steps: distinct random-looking nixbase32 strings */
                        uint64_t z = (x += UINT64_C(0x9E3779B97F4A7C15));
                        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
                        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
                        needle_bytes[i][j] =
                            "0123456789abcdfghijklmnpqrsvwxyz"[(z ^ (z >> 31)) % 32];
                }
                needles[i] = needle_bytes[i];
                lens[i] = LEN;
        }
        /* Thread t's haystack holds needles t, t + THREADS, ..., skipping every eighth. */
        for (size_t t = 0; t < THREADS; t++) {
                memset(hay[t], '-', sizeof(hay[t]));
                for (size_t k = 0; k < NEEDLES / THREADS; k++)
                        if ((k % 8) != 7)
                                memcpy(hay[t] + k * 40 + 3, needle_bytes[t + k * THREADS], LEN);
        }
        set = set_of_lens(needles, lens, NEEDLES);
        r = kiln_refscan_result_new(set);
        for (size_t t = 0; t < THREADS; t++) {
                args[t] = (struct thread_arg){set, r, hay[t], sizeof(hay[t])};
                assert_int_equal(pthread_create(&tids[t], NULL, feed_thread, &args[t]), 0);
        }
        for (size_t t = 0; t < THREADS; t++)
                assert_int_equal(pthread_join(tids[t], NULL), 0);
        for (size_t i = 0; i < NEEDLES; i++)
                assert_int_equal(kiln_refscan_result_test(r, i), ((i / THREADS) % 8) != 7);
}

/* ---- randomized comparison with memmem() ------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
        /* xorshift64* */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(0x2545F4914F6CDD1D);
}

static size_t rnd_below(size_t n)
{
        return n ? rnd() % n : 0;
}

static size_t random_len(unsigned mode)
{
        switch (mode) {
        case 0: /* Nix-like */
                return 32;
        case 1: /* mixed 1..64 */
                return 1 + rnd_below(64);
        case 2: /* short only */
                return 1 + rnd_below(7);
        case 3: /* long only, around the window widths */
                return 8 + rnd_below(20);
        default: /* mostly long, the odd tiny one */
                return rnd_below(8) == 0 ? 1 + rnd_below(3) : 16 + rnd_below(49);
        }
}

static void test_random_vs_memmem(void **state)
{
        (void)state;
        enum { MAXN = 48, MAXH = 4096 };
        static const unsigned alphabets[] = {2, 3, 4, 32, 256};
        static uint8_t hay[MAXH], nb[MAXN][64];
        const uint8_t *needles[MAXN];
        size_t lens[MAXN];
        const char *env = getenv("KILN_REFSCAN_SEED");
        uint64_t seed = env ? strtoull(env, NULL, 0) : UINT64_C(0x6b696c6e72656673);
        unsigned iterations = 3000;

        rng_state = seed ? seed : 1;
        for (unsigned it = 0; it < iterations; it++) {
                unsigned alpha = alphabets[rnd_below(KILN_ARRAY_SIZE(alphabets))];
                unsigned mode = rnd_below(5);
                size_t hlen = rnd_below(8) == 0 ? rnd_below(64) : rnd_below(MAXH + 1);
                size_t n = 1 + rnd_below(MAXN);
                _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
                _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *one = NULL;
                _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *str = NULL;
                _cleanup_(kiln_refscan_stream_freep) struct kiln_refscan_stream *s = NULL;

                for (size_t i = 0; i < hlen; i++)
                        hay[i] = alpha == 256 ? rnd() : 'a' + rnd_below(alpha);
                for (size_t i = 0; i < n; i++) {
                        size_t len = random_len(mode);
                        unsigned how = rnd_below(4);

                        if (how < 2 && hlen >= len) {
                                /* A piece of the haystack, sometimes with one byte changed. */
                                memcpy(nb[i], hay + rnd_below(hlen - len + 1), len);
                                if (how == 1)
                                        nb[i][rnd_below(len)] ^= 1 + rnd_below(3);
                        } else if (how == 2 && i > 0) {
                                /* A duplicate or a prefix of an earlier needle. */
                                size_t o = rnd_below(i);
                                len = 1 + rnd_below(lens[o]);
                                memcpy(nb[i], nb[o], len);
                        } else {
                                for (size_t j = 0; j < len; j++)
                                        nb[i][j] = alpha == 256 ? rnd() : 'a' + rnd_below(alpha);
                        }
                        needles[i] = nb[i];
                        lens[i] = len;
                }

                set = set_of_lens(needles, lens, n);
                one = kiln_refscan_result_new(set);
                str = kiln_refscan_result_new(set);
                s = kiln_refscan_stream_new(set);
                kiln_refscan_scan(set, hay, hlen, one);
                kiln_refscan_stream_begin(s, str);
                for (size_t off = 0; off < hlen;) {
                        size_t max = rnd_below(3) == 0 ? 4 : rnd_below(2) ? 64 : 1024;
                        size_t k = rnd_below(max + 1); /* not inside KILN_MIN: evaluated twice */

                        k = KILN_MIN(k, hlen - off);
                        kiln_refscan_stream_feed(s, hay + off, k);
                        off += k;
                }
                kiln_refscan_stream_end(s);

                for (size_t i = 0; i < n; i++) {
                        bool want = memmem(hay, hlen, needles[i], lens[i]) != NULL;
                        if (kiln_refscan_result_test(one, i) != want ||
                            kiln_refscan_result_test(str, i) != want)
                                fail_msg("seed %#llx iteration %u: needle %zu (length %zu, "
                                         "alphabet %u, haystack %zu): want %d, one-shot %d, "
                                         "streamed %d",
                                         (unsigned long long)seed, it, i, lens[i], alpha, hlen,
                                         want, kiln_refscan_result_test(one, i),
                                         kiln_refscan_result_test(str, i));
                }
        }
}

static enum kiln_refscan_level pinned;

static int pin_level(void **state)
{
        (void)state;
        return kiln_refscan_force_level(pinned) == 0 ? 0 : -1;
}

/* Hundreds of short needles: beyond the nibble masks' capacity and sharing pair-table groups. */
static void test_many_short_needles(void **state)
{
        (void)state;
        enum { N = 700, H = 20000 };
        static uint8_t nb[N][7], hay[H];
        const uint8_t *needles[N];
        size_t lens[N];
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *one = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *str = NULL;

        rng_state = 0x5eed;
        for (size_t i = 0; i < H; i++)
                hay[i] = 'a' + rnd_below(20);
        for (size_t i = 0; i < N; i++) {
                lens[i] = i % 50 == 0 ? 1 : 2 + rnd_below(6);
                for (size_t j = 0; j < lens[i]; j++)
                        nb[i][j] = i % 50 == 0 ? rnd() : 'a' + rnd_below(26);
                needles[i] = nb[i];
        }
        set = set_of_lens(needles, lens, N);
        one = kiln_refscan_result_new(set);
        str = kiln_refscan_result_new(set);
        kiln_refscan_scan(set, hay, H, one);
        stream_in_steps(set, hay, H, 1000, str);
        for (size_t i = 0; i < N; i++) {
                bool want = memmem(hay, H, needles[i], lens[i]) != NULL;
                if (kiln_refscan_result_test(one, i) != want ||
                    kiln_refscan_result_test(str, i) != want)
                        fail_msg("needle %zu (length %zu): want %d, one-shot %d, streamed %d", i,
                                 lens[i], want, kiln_refscan_result_test(one, i),
                                 kiln_refscan_result_test(str, i));
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_spec_file_contents),
            cmocka_unit_test(test_spec_symlink_target),
            cmocka_unit_test(test_spec_name_and_empty_file),
            cmocka_unit_test(test_spec_empty_needle_list),
            cmocka_unit_test(test_spec_short_needle_in_short_haystack),
            cmocka_unit_test(test_empty_needle_rejected),
            cmocka_unit_test(test_overlapping_needles),
            cmocka_unit_test(test_needle_inside_needle),
            cmocka_unit_test(test_duplicate_needles),
            cmocka_unit_test(test_binary_needles),
            cmocka_unit_test(test_long_needles),
            cmocka_unit_test(test_short_needles_pruned),
            cmocka_unit_test(test_boundary_every_split),
            cmocka_unit_test(test_stream_reuse_forgets_carry),
            cmocka_unit_test(test_result_api),
            cmocka_unit_test(test_concurrent_streams),
            cmocka_unit_test(test_many_short_needles),
            cmocka_unit_test(test_random_vs_memmem),
        };
        int failed = 0;

        /* Every kernel the CPU and build offer, each pinned for the whole suite. */
        for (unsigned l = 0; l <= kiln_refscan_level_supported(); l++) {
                char name[64];

                pinned = l;
                snprintf(name, sizeof(name), "refscan-%s", kiln_refscan_level_name(pinned));
                failed +=
                    _cmocka_run_group_tests(name, tests, KILN_ARRAY_SIZE(tests), pin_level, NULL);
        }
        if (kiln_refscan_level_supported() == KILN_REFSCAN_PORTABLE)
                printf("note: only the portable kernel is available here\n");
        return failed;
}
