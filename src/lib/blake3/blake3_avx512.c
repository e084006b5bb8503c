/* BLAKE3 AVX-512 kernel (built with -mavx512f -mavx512vl; called only when the CPU has both
 * and the OS saves ZMM state).
 *
 * hash_many runs 16 inputs side by side in ZMM registers, then 8 in YMM and 4 in XMM for
 * what is left, all using the native rotate (vprord) that SSE/AVX2 must emulate. A last
 * group of more than half a width runs on the wider kernel with its spare lanes hashing
 * copies of the last input (their CVs dropped): 15 inputs cost one pass of hash16 rather
 * than hash8, hash4 and three inputs one block at a time. compress
 * keeps the state as four XMM rows, like the SSE4.1 kernel, with vprord for the rotations.
 *
 * Built with -DKILN_BLAKE3_SIMDE, the same source compiles against SIMDe's portable
 * emulation of these intrinsics, under names ending in _simde: test programs link that copy
 * and check it against the portable kernel on machines that cannot run AVX-512. */
#ifdef KILN_BLAKE3_SIMDE
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define kiln_blake3_compress_avx512  kiln_blake3_compress_avx512_simde
#define kiln_blake3_hash_many_avx512 kiln_blake3_hash_many_avx512_simde
#else
#include <immintrin.h>
#endif

#include "blake3_impl.h"

/* ---- compress: one block, state as XMM rows (see blake3_sse41.c for the layout) ---- */

/* The rotation counts must be immediates, hence two halves rather than one with a flag. */
KILN_BLAKE3_INLINE void g_half1(__m128i *a, __m128i *b, __m128i *c, __m128i *d, __m128i m)
{
        *a = _mm_add_epi32(_mm_add_epi32(*a, m), *b);
        *d = _mm_ror_epi32(_mm_xor_si128(*d, *a), 16);
        *c = _mm_add_epi32(*c, *d);
        *b = _mm_ror_epi32(_mm_xor_si128(*b, *c), 12);
}

KILN_BLAKE3_INLINE void g_half2(__m128i *a, __m128i *b, __m128i *c, __m128i *d, __m128i m)
{
        *a = _mm_add_epi32(_mm_add_epi32(*a, m), *b);
        *d = _mm_ror_epi32(_mm_xor_si128(*d, *a), 8);
        *c = _mm_add_epi32(*c, *d);
        *b = _mm_ror_epi32(_mm_xor_si128(*b, *c), 7);
}

static inline void diagonalize(__m128i *b, __m128i *c, __m128i *d)
{
        *b = _mm_shuffle_epi32(*b, _MM_SHUFFLE(0, 3, 2, 1));
        *c = _mm_shuffle_epi32(*c, _MM_SHUFFLE(1, 0, 3, 2));
        *d = _mm_shuffle_epi32(*d, _MM_SHUFFLE(2, 1, 0, 3));
}

static inline void undiagonalize(__m128i *b, __m128i *c, __m128i *d)
{
        *b = _mm_shuffle_epi32(*b, _MM_SHUFFLE(2, 1, 0, 3));
        *c = _mm_shuffle_epi32(*c, _MM_SHUFFLE(1, 0, 3, 2));
        *d = _mm_shuffle_epi32(*d, _MM_SHUFFLE(0, 3, 2, 1));
}

/* Next round's message vectors from this round's; derivation in blake3_sse41.c. */
static inline void permute(__m128i *mx, __m128i *my, __m128i *mz, __m128i *mw)
{
        __m128i x = *mx, y = *my, z = *mz, w = *mw;

        *mx = _mm_blend_epi16(_mm_shuffle_epi32(x, _MM_SHUFFLE(2, 2, 1, 1)),
                              _mm_shuffle_epi32(y, _MM_SHUFFLE(3, 3, 1, 1)), 0x3C);
        *my = _mm_blend_epi16(_mm_blend_epi16(_mm_shuffle_epi32(x, _MM_SHUFFLE(0, 0, 3, 3)),
                                              _mm_shuffle_epi32(z, _MM_SHUFFLE(1, 1, 1, 1)), 0x0C),
                              _mm_shuffle_epi32(w, _MM_SHUFFLE(2, 2, 2, 2)), 0xC0);
        *mz = _mm_blend_epi16(
                _mm_blend_epi16(y, _mm_shuffle_epi32(z, _MM_SHUFFLE(2, 2, 2, 2)), 0x0C),
                _mm_shuffle_epi32(w, _MM_SHUFFLE(3, 0, 0, 0)), 0xF0);
        *mw = _mm_blend_epi16(_mm_blend_epi16(_mm_shuffle_epi32(w, _MM_SHUFFLE(1, 1, 1, 1)),
                                              _mm_shuffle_epi32(y, _MM_SHUFFLE(2, 2, 2, 2)), 0x0C),
                              _mm_shuffle_epi32(z, _MM_SHUFFLE(0, 3, 3, 3)), 0xF0);
}

static inline __m128i even_words(__m128i lo, __m128i hi)
{
        return _mm_castps_si128(_mm_shuffle_ps(_mm_castsi128_ps(lo), _mm_castsi128_ps(hi),
                                               _MM_SHUFFLE(2, 0, 2, 0)));
}

static inline __m128i odd_words(__m128i lo, __m128i hi)
{
        return _mm_castps_si128(_mm_shuffle_ps(_mm_castsi128_ps(lo), _mm_castsi128_ps(hi),
                                               _MM_SHUFFLE(3, 1, 3, 1)));
}

void kiln_blake3_compress_avx512(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                                 uint8_t block_len, uint64_t counter, uint8_t flags)
{
        __m128i a = _mm_loadu_si128((const __m128i *)&cv[0]);
        __m128i b = _mm_loadu_si128((const __m128i *)&cv[4]);
        __m128i c = _mm_loadu_si128((const __m128i *)&kiln_blake3_iv[0]);
        __m128i d = _mm_setr_epi32((int)(uint32_t)counter, (int)(uint32_t)(counter >> 32),
                                   block_len, flags);
        __m128i w0 = _mm_loadu_si128((const __m128i *)(block + 0));
        __m128i w1 = _mm_loadu_si128((const __m128i *)(block + 16));
        __m128i w2 = _mm_loadu_si128((const __m128i *)(block + 32));
        __m128i w3 = _mm_loadu_si128((const __m128i *)(block + 48));
        __m128i mx = even_words(w0, w1), my = odd_words(w0, w1);
        __m128i mz = even_words(w2, w3), mw = odd_words(w2, w3);

        for (int r = 0; r < 7; r++) {
                if (r > 0)
                        permute(&mx, &my, &mz, &mw);
                g_half1(&a, &b, &c, &d, mx);
                g_half2(&a, &b, &c, &d, my);
                diagonalize(&b, &c, &d);
                g_half1(&a, &b, &c, &d, mz);
                g_half2(&a, &b, &c, &d, mw);
                undiagonalize(&b, &c, &d);
        }
        _mm_storeu_si128((__m128i *)&cv[0], _mm_xor_si128(a, c));
        _mm_storeu_si128((__m128i *)&cv[4], _mm_xor_si128(b, d));
}

/* ---- counters and flags shared by the 4/8/16-lane paths ---- */

/* Low and high halves of each lane's counter, for up to 16 lanes. */
static inline void lane_counters(uint64_t counter, bool increment_counter, size_t lanes,
                                 uint32_t lo[16], uint32_t hi[16])
{
        for (size_t i = 0; i < lanes; i++) {
                uint64_t c = counter + (increment_counter ? i : 0);
                lo[i] = (uint32_t)c;
                hi[i] = (uint32_t)(c >> 32);
        }
}

/* ---- 16 lanes (ZMM) ---- */

KILN_BLAKE3_INLINE void g16(__m512i v[16], size_t a, size_t b, size_t c, size_t d, __m512i x,
                            __m512i y)
{
        v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], x), v[b]);
        v[d] = _mm512_ror_epi32(_mm512_xor_si512(v[d], v[a]), 16);
        v[c] = _mm512_add_epi32(v[c], v[d]);
        v[b] = _mm512_ror_epi32(_mm512_xor_si512(v[b], v[c]), 12);
        v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], y), v[b]);
        v[d] = _mm512_ror_epi32(_mm512_xor_si512(v[d], v[a]), 8);
        v[c] = _mm512_add_epi32(v[c], v[d]);
        v[b] = _mm512_ror_epi32(_mm512_xor_si512(v[b], v[c]), 7);
}

KILN_BLAKE3_INLINE void round16(__m512i v[16], const __m512i m[16], size_t r)
{
        const uint8_t *w = kiln_blake3_schedule[r];

        g16(v, 0, 4, 8, 12, m[w[0]], m[w[1]]);
        g16(v, 1, 5, 9, 13, m[w[2]], m[w[3]]);
        g16(v, 2, 6, 10, 14, m[w[4]], m[w[5]]);
        g16(v, 3, 7, 11, 15, m[w[6]], m[w[7]]);
        g16(v, 0, 5, 10, 15, m[w[8]], m[w[9]]);
        g16(v, 1, 6, 11, 12, m[w[10]], m[w[11]]);
        g16(v, 2, 7, 8, 13, m[w[12]], m[w[13]]);
        g16(v, 3, 4, 9, 14, m[w[14]], m[w[15]]);
}

/* Spelled out so the schedule indices are constants and the state stays in registers. */
KILN_BLAKE3_INLINE void round16_all(__m512i v[16], const __m512i m[16])
{
        round16(v, m, 0);
        round16(v, m, 1);
        round16(v, m, 2);
        round16(v, m, 3);
        round16(v, m, 4);
        round16(v, m, 5);
        round16(v, m, 6);
}

/* 16x16 transpose of 32-bit words: afterwards r[k] holds word k of each former row.
 * Pairs, then quads of rows interleave within 128-bit lanes; a 4x4 transpose of the
 * 128-bit lanes themselves finishes. */
static inline void transpose16(__m512i r[16])
{
        __m512i t[16], u[16];

        for (size_t p = 0; p < 8; p++) {
                t[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
                t[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
        }
        /* u[4q+k], lane L: word 4L+k of rows 4q..4q+3. */
        for (size_t q = 0; q < 4; q++) {
                u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
                u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
                u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
                u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
        }
        for (size_t k = 0; k < 4; k++) {
                __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], _MM_SHUFFLE(1, 0, 1, 0));
                __m512i v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], _MM_SHUFFLE(3, 2, 3, 2));
                __m512i v2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(1, 0, 1, 0));
                __m512i v3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(3, 2, 3, 2));

                r[0 + k] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0));
                r[4 + k] = _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1));
                r[8 + k] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0));
                r[12 + k] = _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1));
        }
}

/* Writes the 16 CVs held one word per vector (h[i] lane j = word i of CV j). */
static inline void store_cvs16(const __m512i h[8], uint8_t *out)
{
        __m512i ab_lo = _mm512_unpacklo_epi32(h[0], h[1]),
                ab_hi = _mm512_unpackhi_epi32(h[0], h[1]);
        __m512i cd_lo = _mm512_unpacklo_epi32(h[2], h[3]),
                cd_hi = _mm512_unpackhi_epi32(h[2], h[3]);
        __m512i ef_lo = _mm512_unpacklo_epi32(h[4], h[5]),
                ef_hi = _mm512_unpackhi_epi32(h[4], h[5]);
        __m512i gh_lo = _mm512_unpacklo_epi32(h[6], h[7]),
                gh_hi = _mm512_unpackhi_epi32(h[6], h[7]);
        /* Lane L of lo4[k] (hi4[k]): words 0-3 (4-7) of CV 4L+k. */
        __m512i lo4[4] = {
                _mm512_unpacklo_epi64(ab_lo, cd_lo),
                _mm512_unpackhi_epi64(ab_lo, cd_lo),
                _mm512_unpacklo_epi64(ab_hi, cd_hi),
                _mm512_unpackhi_epi64(ab_hi, cd_hi),
        };
        __m512i hi4[4] = {
                _mm512_unpacklo_epi64(ef_lo, gh_lo),
                _mm512_unpackhi_epi64(ef_lo, gh_lo),
                _mm512_unpacklo_epi64(ef_hi, gh_hi),
                _mm512_unpackhi_epi64(ef_hi, gh_hi),
        };

        for (size_t k = 0; k < 4; k++) {
                /* (lo.L0, hi.L0, lo.L1, hi.L1) = CVs k and 4+k; then CVs 8+k and 12+k. */
                __m512i t01 = _mm512_shuffle_i32x4(lo4[k], hi4[k], _MM_SHUFFLE(1, 0, 1, 0));
                __m512i t23 = _mm512_shuffle_i32x4(lo4[k], hi4[k], _MM_SHUFFLE(3, 2, 3, 2));
                __m512i z01 = _mm512_shuffle_i32x4(t01, t01, _MM_SHUFFLE(3, 1, 2, 0));
                __m512i z23 = _mm512_shuffle_i32x4(t23, t23, _MM_SHUFFLE(3, 1, 2, 0));

                _mm256_storeu_si256((__m256i *)(out + 32 * k), _mm512_castsi512_si256(z01));
                _mm256_storeu_si256((__m256i *)(out + 32 * (4 + k)),
                                    _mm512_extracti64x4_epi64(z01, 1));
                _mm256_storeu_si256((__m256i *)(out + 32 * (8 + k)), _mm512_castsi512_si256(z23));
                _mm256_storeu_si256((__m256i *)(out + 32 * (12 + k)),
                                    _mm512_extracti64x4_epi64(z23, 1));
        }
}

static void hash16(const uint8_t *const *in, size_t blocks, const uint32_t key[8], uint64_t counter,
                   bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                   uint8_t *out)
{
        uint32_t lo[16], hi[16];
        uint8_t block_flags = flags | flags_start;
        __m512i h[8], ctr_lo, ctr_hi;

        lane_counters(counter, increment_counter, 16, lo, hi);
        ctr_lo = _mm512_loadu_si512(lo);
        ctr_hi = _mm512_loadu_si512(hi);
        for (size_t i = 0; i < 8; i++)
                h[i] = _mm512_set1_epi32((int)key[i]);
        for (size_t b = 0; b < blocks; b++) {
                size_t offset = b * KILN_BLAKE3_BLOCK_LEN;
                __m512i m[16], v[16];

                if (b + 1 == blocks)
                        block_flags |= flags_end;
                for (size_t i = 0; i < 16; i++) {
                        m[i] = _mm512_loadu_si512(in[i] + offset);
                        _mm_prefetch((const char *)(in[i] + offset + 256), _MM_HINT_T0);
                }
                transpose16(m);
                for (size_t i = 0; i < 8; i++)
                        v[i] = h[i];
                for (size_t i = 0; i < 4; i++)
                        v[8 + i] = _mm512_set1_epi32((int)kiln_blake3_iv[i]);
                v[12] = ctr_lo;
                v[13] = ctr_hi;
                v[14] = _mm512_set1_epi32(KILN_BLAKE3_BLOCK_LEN);
                v[15] = _mm512_set1_epi32(block_flags);
                round16_all(v, m);
                for (size_t i = 0; i < 8; i++)
                        h[i] = _mm512_xor_si512(v[i], v[i + 8]);
                block_flags = flags;
        }
        store_cvs16(h, out);
}

/* ---- 8 lanes (YMM) ---- */

KILN_BLAKE3_INLINE void g8(__m256i v[16], size_t a, size_t b, size_t c, size_t d, __m256i x,
                           __m256i y)
{
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], x), v[b]);
        v[d] = _mm256_ror_epi32(_mm256_xor_si256(v[d], v[a]), 16);
        v[c] = _mm256_add_epi32(v[c], v[d]);
        v[b] = _mm256_ror_epi32(_mm256_xor_si256(v[b], v[c]), 12);
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], y), v[b]);
        v[d] = _mm256_ror_epi32(_mm256_xor_si256(v[d], v[a]), 8);
        v[c] = _mm256_add_epi32(v[c], v[d]);
        v[b] = _mm256_ror_epi32(_mm256_xor_si256(v[b], v[c]), 7);
}

KILN_BLAKE3_INLINE void round8(__m256i v[16], const __m256i m[16], size_t r)
{
        const uint8_t *w = kiln_blake3_schedule[r];

        g8(v, 0, 4, 8, 12, m[w[0]], m[w[1]]);
        g8(v, 1, 5, 9, 13, m[w[2]], m[w[3]]);
        g8(v, 2, 6, 10, 14, m[w[4]], m[w[5]]);
        g8(v, 3, 7, 11, 15, m[w[6]], m[w[7]]);
        g8(v, 0, 5, 10, 15, m[w[8]], m[w[9]]);
        g8(v, 1, 6, 11, 12, m[w[10]], m[w[11]]);
        g8(v, 2, 7, 8, 13, m[w[12]], m[w[13]]);
        g8(v, 3, 4, 9, 14, m[w[14]], m[w[15]]);
}

/* Spelled out so the schedule indices are constants and the state stays in registers. */
KILN_BLAKE3_INLINE void round8_all(__m256i v[16], const __m256i m[16])
{
        round8(v, m, 0);
        round8(v, m, 1);
        round8(v, m, 2);
        round8(v, m, 3);
        round8(v, m, 4);
        round8(v, m, 5);
        round8(v, m, 6);
}

/* 8x8 transpose of 32-bit words (as in blake3_avx2.c). */
static inline void transpose8(__m256i r[8])
{
        __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
        __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
        __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
        __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);

        r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
        r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
        r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
        r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
        r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
        r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
        r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
        r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

static void hash8(const uint8_t *const *in, size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                  uint8_t *out)
{
        uint32_t lo[16], hi[16];
        uint8_t block_flags = flags | flags_start;
        __m256i h[8], ctr_lo, ctr_hi;

        lane_counters(counter, increment_counter, 8, lo, hi);
        ctr_lo = _mm256_loadu_si256((const __m256i *)lo);
        ctr_hi = _mm256_loadu_si256((const __m256i *)hi);
        for (size_t i = 0; i < 8; i++)
                h[i] = _mm256_set1_epi32((int)key[i]);
        for (size_t b = 0; b < blocks; b++) {
                size_t offset = b * KILN_BLAKE3_BLOCK_LEN;
                __m256i m[16], v[16];

                if (b + 1 == blocks)
                        block_flags |= flags_end;
                for (size_t i = 0; i < 8; i++) {
                        m[i] = _mm256_loadu_si256((const __m256i *)(in[i] + offset));
                        m[8 + i] = _mm256_loadu_si256((const __m256i *)(in[i] + offset + 32));
                }
                transpose8(&m[0]);
                transpose8(&m[8]);
                for (size_t i = 0; i < 8; i++)
                        v[i] = h[i];
                for (size_t i = 0; i < 4; i++)
                        v[8 + i] = _mm256_set1_epi32((int)kiln_blake3_iv[i]);
                v[12] = ctr_lo;
                v[13] = ctr_hi;
                v[14] = _mm256_set1_epi32(KILN_BLAKE3_BLOCK_LEN);
                v[15] = _mm256_set1_epi32(block_flags);
                round8_all(v, m);
                for (size_t i = 0; i < 8; i++)
                        h[i] = _mm256_xor_si256(v[i], v[i + 8]);
                block_flags = flags;
        }
        transpose8(h);
        for (size_t i = 0; i < 8; i++)
                _mm256_storeu_si256((__m256i *)(out + 32 * i), h[i]);
}

/* ---- 4 lanes (XMM) ---- */

KILN_BLAKE3_INLINE void g4(__m128i v[16], size_t a, size_t b, size_t c, size_t d, __m128i x,
                           __m128i y)
{
        v[a] = _mm_add_epi32(_mm_add_epi32(v[a], x), v[b]);
        v[d] = _mm_ror_epi32(_mm_xor_si128(v[d], v[a]), 16);
        v[c] = _mm_add_epi32(v[c], v[d]);
        v[b] = _mm_ror_epi32(_mm_xor_si128(v[b], v[c]), 12);
        v[a] = _mm_add_epi32(_mm_add_epi32(v[a], y), v[b]);
        v[d] = _mm_ror_epi32(_mm_xor_si128(v[d], v[a]), 8);
        v[c] = _mm_add_epi32(v[c], v[d]);
        v[b] = _mm_ror_epi32(_mm_xor_si128(v[b], v[c]), 7);
}

KILN_BLAKE3_INLINE void round4(__m128i v[16], const __m128i m[16], size_t r)
{
        const uint8_t *w = kiln_blake3_schedule[r];

        g4(v, 0, 4, 8, 12, m[w[0]], m[w[1]]);
        g4(v, 1, 5, 9, 13, m[w[2]], m[w[3]]);
        g4(v, 2, 6, 10, 14, m[w[4]], m[w[5]]);
        g4(v, 3, 7, 11, 15, m[w[6]], m[w[7]]);
        g4(v, 0, 5, 10, 15, m[w[8]], m[w[9]]);
        g4(v, 1, 6, 11, 12, m[w[10]], m[w[11]]);
        g4(v, 2, 7, 8, 13, m[w[12]], m[w[13]]);
        g4(v, 3, 4, 9, 14, m[w[14]], m[w[15]]);
}

/* Spelled out so the schedule indices are constants and the state stays in registers. */
KILN_BLAKE3_INLINE void round4_all(__m128i v[16], const __m128i m[16])
{
        round4(v, m, 0);
        round4(v, m, 1);
        round4(v, m, 2);
        round4(v, m, 3);
        round4(v, m, 4);
        round4(v, m, 5);
        round4(v, m, 6);
}

static inline void transpose4(__m128i *r0, __m128i *r1, __m128i *r2, __m128i *r3)
{
        __m128i ab_lo = _mm_unpacklo_epi32(*r0, *r1), ab_hi = _mm_unpackhi_epi32(*r0, *r1);
        __m128i cd_lo = _mm_unpacklo_epi32(*r2, *r3), cd_hi = _mm_unpackhi_epi32(*r2, *r3);

        *r0 = _mm_unpacklo_epi64(ab_lo, cd_lo);
        *r1 = _mm_unpackhi_epi64(ab_lo, cd_lo);
        *r2 = _mm_unpacklo_epi64(ab_hi, cd_hi);
        *r3 = _mm_unpackhi_epi64(ab_hi, cd_hi);
}

static void hash4(const uint8_t *const *in, size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                  uint8_t *out)
{
        uint32_t lo[16], hi[16];
        uint8_t block_flags = flags | flags_start;
        __m128i h[8], ctr_lo, ctr_hi;

        lane_counters(counter, increment_counter, 4, lo, hi);
        ctr_lo = _mm_loadu_si128((const __m128i *)lo);
        ctr_hi = _mm_loadu_si128((const __m128i *)hi);
        for (size_t i = 0; i < 8; i++)
                h[i] = _mm_set1_epi32((int)key[i]);
        for (size_t b = 0; b < blocks; b++) {
                size_t offset = b * KILN_BLAKE3_BLOCK_LEN;
                __m128i m[16], v[16];

                if (b + 1 == blocks)
                        block_flags |= flags_end;
                for (size_t q = 0; q < 4; q++) {
                        for (size_t i = 0; i < 4; i++)
                                m[4 * q + i] =
                                        _mm_loadu_si128((const __m128i *)(in[i] + offset + 16 * q));
                        transpose4(&m[4 * q], &m[4 * q + 1], &m[4 * q + 2], &m[4 * q + 3]);
                }
                for (size_t i = 0; i < 8; i++)
                        v[i] = h[i];
                for (size_t i = 0; i < 4; i++)
                        v[8 + i] = _mm_set1_epi32((int)kiln_blake3_iv[i]);
                v[12] = ctr_lo;
                v[13] = ctr_hi;
                v[14] = _mm_set1_epi32(KILN_BLAKE3_BLOCK_LEN);
                v[15] = _mm_set1_epi32(block_flags);
                round4_all(v, m);
                for (size_t i = 0; i < 8; i++)
                        h[i] = _mm_xor_si128(v[i], v[i + 8]);
                block_flags = flags;
        }
        transpose4(&h[0], &h[1], &h[2], &h[3]);
        transpose4(&h[4], &h[5], &h[6], &h[7]);
        for (size_t i = 0; i < 4; i++) {
                _mm_storeu_si128((__m128i *)(out + 32 * i), h[i]);
                _mm_storeu_si128((__m128i *)(out + 32 * i + 16), h[4 + i]);
        }
}

void kiln_blake3_hash_many_avx512(const uint8_t *const *inputs, size_t n, size_t blocks,
                                  const uint32_t key[8], uint64_t counter, bool increment_counter,
                                  uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                                  uint8_t *out)
{
        /* Widest first; each narrower path runs at most once. */
        static const struct {
                size_t width;
                kiln_blake3_hash_wide_fn *fn;
        } paths[] = {{16, hash16}, {8, hash8}, {4, hash4}};

        for (size_t k = 0; k < KILN_ARRAY_SIZE(paths); k++) {
                size_t width = paths[k].width;

                while (n >= width) {
                        paths[k].fn(inputs, blocks, key, counter, increment_counter, flags,
                                    flags_start, flags_end, out);
                        inputs += width;
                        n -= width;
                        out += width * KILN_BLAKE3_OUT_LEN;
                        if (increment_counter)
                                counter += width;
                }
                if (n > width / 2) {
                        kiln_blake3_hash_padded(paths[k].fn, width, inputs, n, blocks, key,
                                                counter, increment_counter, flags, flags_start,
                                                flags_end, out);
                        return;
                }
        }
        kiln_blake3_hash_one_by_one(kiln_blake3_compress_avx512, inputs, n, blocks, key, counter,
                                    increment_counter, flags, flags_start, flags_end, out);
}
