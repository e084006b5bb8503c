/* Reference scanner kernel for AVX2 (built with -mavx2 -mbmi2; only called when the CPU has
 * both). The long-needle scan is the shared sampled scan, which BMI2's flag-free variable
 * shifts make cheaper. Short needles go through a nibble-mask prefilter in the manner of
 * Hyperscan's "Teddy": each byte of 32 positions selects, through its low and high nibble,
 * the buckets (bits) whose needles allow that byte at that place; the AND over the first
 * REFSCAN_TEDDY_F bytes leaves the buckets that may start a needle there. Needles shorter than
 * that allow any byte past their end. Survivors are verified exactly; found needles are then
 * dropped from the stream's masks, so a needle occurring everywhere (a 1-byte one, say) costs
 * nothing once seen. */
#include <immintrin.h>

#include "refscan_impl.h"

struct masks {
        __m256i lo[REFSCAN_TEDDY_F], hi[REFSCAN_TEDDY_F];
};

static inline void load_masks(struct masks *m, const struct refscan_short_state *st)
{
        for (unsigned j = 0; j < REFSCAN_TEDDY_F; j++) {
                m->lo[j] =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)st->masks.lo[j]));
                m->hi[j] =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)st->masks.hi[j]));
        }
}

/* Buckets that may start a needle at each of q[0..32). Reads q[0 .. 32 + F - 1). */
static inline __m256i round32(const struct masks *m, const uint8_t *q)
{
        const __m256i nib = _mm256_set1_epi8(0x0f);
        __m256i acc = _mm256_set1_epi8(-1);

        for (unsigned j = 0; j < REFSCAN_TEDDY_F; j++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(q + j));
                __m256i lo = _mm256_shuffle_epi8(m->lo[j], _mm256_and_si256(v, nib));
                __m256i hi =
                    _mm256_shuffle_epi8(m->hi[j], _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
                acc = _mm256_and_si256(acc, _mm256_and_si256(lo, hi));
        }
        return acc;
}

static inline uint32_t nonzero32(__m256i v)
{
        return ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256()));
}

/* Verifies the candidates of positions base + k (k set in `bits`, buckets in bytes[k]) of the
 * block p[0..n). Returns whether st's masks changed. */
static __attribute__((noinline)) bool candidates(const struct kiln_refscan_set *set,
                                                 struct refscan_short_state *st, const uint8_t *p,
                                                 size_t n, size_t base, uint64_t bits,
                                                 const uint8_t *bytes,
                                                 struct kiln_refscan_result *r)
{
        unsigned pruned = 0;

        for (; bits; bits &= bits - 1) {
                unsigned k = __builtin_ctzll(bits);
                size_t pos = base + k;
                uint64_t win;

                if (pos >= n) /* padding past a block's end */
                        break;
                win = refscan_window(p + pos, n - pos);
                for (unsigned buckets = bytes[k]; buckets; buckets &= buckets - 1) {
                        unsigned b = __builtin_ctz(buckets);
                        bool seen = false;

                        for (uint32_t i = set->bucket_first[b]; i < set->bucket_first[b + 1]; i++) {
                                const struct refscan_short_ent *e = &set->bucket[i];
                                uint32_t idx = set->uniq[e->uniq].first_idx;

                                if (refscan_seen(r, idx)) {
                                        seen = true;
                                } else if (refscan_short_match(e, win, n - pos)) {
                                        refscan_mark(set, e->uniq, r);
                                        seen = true;
                                }
                        }
                        /* Once per bucket and round: later positions of this round were
                         * computed with the old masks and would only prune again. */
                        if (seen && !(pruned & (1u << b))) {
                                kiln_refscan_teddy_prune(set, st, b, r);
                                pruned |= 1u << b;
                        }
                }
        }
        return pruned != 0;
}

static void teddy_scan(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                       const uint8_t *p, size_t n, struct kiln_refscan_result *r)
{
        struct masks m;
        size_t pos = 0;
        uint8_t bytes[64];

        load_masks(&m, st);
        /* Two rounds per iteration, one branch for both. */
        for (; pos + 64 + REFSCAN_TEDDY_F - 1 <= n; pos += 64) {
                __m256i a = round32(&m, p + pos), b = round32(&m, p + pos + 32);
                uint64_t bits = nonzero32(a) | (uint64_t)nonzero32(b) << 32;

                if (_unlikely_(bits)) {
                        _mm256_storeu_si256((__m256i *)bytes, a);
                        _mm256_storeu_si256((__m256i *)(bytes + 32), b);
                        if (candidates(set, st, p, n, pos, bits, bytes, r))
                                load_masks(&m, st);
                }
        }
        /* The rest (under 64 + F - 1 bytes) from a zero-padded copy; candidates past n are
         * dropped, and verification reads the block itself. */
        if (pos < n) {
                uint8_t tail[128 + REFSCAN_TEDDY_F] = {0};

                memcpy(tail, p + pos, n - pos);
                for (size_t off = 0; pos + off < n; off += 32) {
                        __m256i a = round32(&m, tail + off);
                        uint64_t bits = nonzero32(a);

                        if (bits) {
                                _mm256_storeu_si256((__m256i *)bytes, a);
                                if (candidates(set, st, p, n, pos + off, bits, bytes, r))
                                        load_masks(&m, st);
                        }
                }
        }
}

void kiln_refscan_block_avx2(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                             const uint8_t *p, size_t n, struct kiln_refscan_result *r)
{
        if (set->has_long)
                refscan_long_scan(set, p, n, r);
        if (set->has_short) {
                if (set->use_teddy)
                        teddy_scan(set, st, p, n, r);
                else
                        kiln_refscan_short_pairs(set, st, p, n, r);
        }
}
