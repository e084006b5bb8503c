/* FastCDC chunker: the documented gear table, determinism, size bounds,
 * independence from write boundaries, and locality of edits. */
#include "testutil.h"

#include <kiln/castore/digest.h>

#include "fastcdc.h"

#define AVG KILN_FASTCDC_AVG_DEFAULT

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
        uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (uint8_t)(x >> 24);
        }
}

struct cuts {
        size_t *len; /* chunk lengths */
        size_t n;
};

static void cuts_add(struct cuts *c, size_t len)
{
        c->len = realloc(c->len, (c->n + 1) * sizeof(*c->len));
        c->len[c->n++] = len;
}

/* Chunks p[0..n) fed in pieces of at most `piece` bytes (0: one call;
 * SIZE_MAX: random piece sizes drawn from the seed). */
static struct cuts chunk_all(size_t avg, const uint8_t *p, size_t n, size_t piece, uint64_t seed)
{
        struct kiln_fastcdc c;
        kiln_fastcdc_init(&c, avg);
        struct cuts out = {0};
        size_t start = 0, i = 0;
        uint64_t x = seed | 1;
        while (i < n) {
                size_t want = n - i;
                if (piece == SIZE_MAX) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        want = KILN_MIN(want, (size_t)(x % 70000));
                } else if (piece) {
                        want = KILN_MIN(want, piece);
                }
                size_t off = 0;
                do {
                        bool cut;
                        size_t k = kiln_fastcdc_next(&c, p + i + off, want - off, &cut);
                        off += k;
                        if (cut) {
                                cuts_add(&out, i + off - start);
                                start = i + off;
                        }
                } while (off < want);
                i += want;
        }
        assert_int_equal(kiln_fastcdc_pending(&c), n - start);
        if (n > start)
                cuts_add(&out, n - start);
        return out;
}

static void assert_same_cuts(const struct cuts *a, const struct cuts *b)
{
        assert_int_equal(a->n, b->n);
        for (size_t i = 0; i < a->n; i++)
                assert_int_equal(a->len[i], b->len[i]);
}

static void test_gear_table(void **state)
{
        (void)state;
        /* The formula from fastcdc.h, recomputed here. */
        uint64_t s = 0x6b696c6e63646331ULL;
        for (unsigned i = 0; i < 256; i++) {
                s += 0x9e3779b97f4a7c15ULL;
                uint64_t z = s;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                z ^= z >> 31;
                assert_int_equal(kiln_fastcdc_gear((uint8_t)i), z);
        }
}

static void test_bounds_and_average(void **state)
{
        (void)state;
        size_t n = 24 << 20;
        uint8_t *p = malloc(n);
        fill_random(p, n, 1);
        static const size_t avgs[] = {KILN_FASTCDC_AVG_MIN, 65536, AVG, KILN_FASTCDC_AVG_MAX};
        for (size_t a = 0; a < KILN_ARRAY_SIZE(avgs); a++) {
                size_t avg = avgs[a];
                struct cuts c = chunk_all(avg, p, n, 0, 0);
                size_t total = 0;
                for (size_t i = 0; i < c.n; i++) {
                        if (i + 1 < c.n)
                                assert_in_range(c.len[i], avg / 2 + 1, avg * 2);
                        total += c.len[i];
                }
                assert_int_equal(total, n);
                double mean = (double)n / (double)c.n;
                if (c.n > 20 && (mean < 0.75 * (double)avg || mean > 1.35 * (double)avg))
                        fail_msg("avg %zu: mean chunk %.0f over %zu chunks", avg, mean, c.n);
                free(c.len);
        }
        /* Constant input never matches the mask often: max bounds it. */
        memset(p, 0, 4 << 20);
        struct cuts z = chunk_all(AVG, p, 4 << 20, 0, 0);
        for (size_t i = 0; i < z.n; i++)
                assert_true(z.len[i] <= 2 * AVG);
        free(z.len);
        free(p);
}

static void test_deterministic_and_split_independent(void **state)
{
        (void)state;
        size_t n = 6 << 20;
        uint8_t *p = malloc(n);
        fill_random(p, n, 2);
        struct cuts whole = chunk_all(AVG, p, n, 0, 0);
        assert_true(whole.n > 10);
        struct cuts again = chunk_all(AVG, p, n, 0, 0);
        assert_same_cuts(&whole, &again);
        static const size_t pieces[] = {1, 7, 4096, AVG / 2, AVG / 2 + 1, AVG * 2, AVG * 2 + 3};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(pieces); i++) {
                /* 1-byte pieces over the whole input would be slow; 1 MiB shows it. */
                size_t len = pieces[i] < 64 ? (size_t)1 << 20 : n;
                struct cuts ref = chunk_all(AVG, p, len, 0, 0);
                struct cuts split = chunk_all(AVG, p, len, pieces[i], 0);
                assert_same_cuts(&ref, &split);
                free(ref.len);
                free(split.len);
        }
        for (uint64_t seed = 1; seed <= 5; seed++) {
                struct cuts split = chunk_all(AVG, p, n, SIZE_MAX, seed);
                assert_same_cuts(&whole, &split);
                free(split.len);
        }
        free(whole.len);
        free(again.len);
        free(p);
}

/* Pins the chunking: a change here changes every stored chunk boundary
 * (harmless for correctness, but it loses dedup against existing stores). */
static void test_regression_vector(void **state)
{
        (void)state;
        size_t n = 4 << 20;
        uint8_t *p = malloc(n);
        fill_random(p, n, 42);
        struct cuts c = chunk_all(AVG, p, n, 0, 0);
        static const size_t want[] = {
                134352, 309644, 196123, 351075, 380568, 218466, 206666,
                271914, 314179, 289743, 524288, 263114, 367060, 367112,
        };
        if (c.n != KILN_ARRAY_SIZE(want)) {
                for (size_t i = 0; i < c.n; i++)
                        print_message("%zu,", c.len[i]);
                print_message("\n");
        }
        assert_int_equal(c.n, KILN_ARRAY_SIZE(want));
        for (size_t i = 0; i < c.n; i++)
                assert_int_equal(c.len[i], want[i]);
        free(c.len);
        free(p);
}

static void digests_of(const uint8_t *p, const struct cuts *c, struct kiln_digest *out)
{
        size_t off = 0;
        for (size_t i = 0; i < c->n; i++) {
                kiln_digest_of(p + off, c->len[i], &out[i]);
                off += c->len[i];
        }
}

static size_t count_shared(const struct kiln_digest *a, size_t na, const struct kiln_digest *b,
                           size_t nb)
{
        size_t shared = 0;
        for (size_t i = 0; i < nb; i++)
                for (size_t j = 0; j < na; j++)
                        if (kiln_digest_eq(&b[i], &a[j])) {
                                shared++;
                                break;
                        }
        return shared;
}

static void test_edit_locality(void **state)
{
        (void)state;
        size_t n = 8 << 20, mid = n / 2 + 12345, ins = 17;
        uint8_t *a = malloc(n);
        fill_random(a, n, 3);
        uint8_t *b = malloc(n + ins);
        memcpy(b, a, mid);
        fill_random(b + mid, ins, 4);
        memcpy(b + mid + ins, a + mid, n - mid);

        struct cuts ca = chunk_all(AVG, a, n, 0, 0);
        struct cuts cb = chunk_all(AVG, b, n + ins, 0, 0);
        struct kiln_digest *da = calloc(ca.n, sizeof(*da)), *db = calloc(cb.n, sizeof(*db));
        digests_of(a, &ca, da);
        digests_of(b, &cb, db);
        size_t shared = count_shared(da, ca.n, db, cb.n);
        /* Only the chunk holding the insertion (and at most a couple after
         * it, until the cut points line up again) may differ. */
        if (cb.n - shared > 3)
                fail_msg("%zu of %zu chunks changed after a %zu-byte insertion", cb.n - shared,
                         cb.n, ins);
        /* Everything before the insertion point is chunked identically. */
        size_t off = 0;
        for (size_t i = 0; i < ca.n && off + ca.len[i] <= mid; off += ca.len[i], i++)
                assert_true(kiln_digest_eq(&da[i], &db[i]));

        /* A deletion likewise. */
        size_t del = 1000;
        memcpy(b, a, mid);
        memcpy(b + mid, a + mid + del, n - mid - del);
        struct cuts cd = chunk_all(AVG, b, n - del, 0, 0);
        struct kiln_digest *dd = calloc(cd.n, sizeof(*dd));
        digests_of(b, &cd, dd);
        shared = count_shared(da, ca.n, dd, cd.n);
        if (cd.n - shared > 3)
                fail_msg("%zu of %zu chunks changed after a deletion", cd.n - shared, cd.n);

        free(dd);
        free(cd.len);
        free(da);
        free(db);
        free(ca.len);
        free(cb.len);
        free(a);
        free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gear_table),
                cmocka_unit_test(test_bounds_and_average),
                cmocka_unit_test(test_deterministic_and_split_independent),
                cmocka_unit_test(test_regression_vector),
                cmocka_unit_test(test_edit_locality),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
