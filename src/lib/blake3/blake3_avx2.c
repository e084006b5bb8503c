/* BLAKE3 AVX2 kernel (built with -mavx2; called only when the CPU and OS support AVX2).
 *
 * Only hash_many: eight inputs side by side, vector i holding state word i of each. A
 * single block gains nothing from 256-bit rows, so compress and the last < 8 inputs go to
 * the SSE4.1 kernel (every AVX2 CPU has SSE4.1), or the portable one if the build left
 * SSE4.1 out. */
#include <immintrin.h>

#include "blake3_impl.h"

static inline __m256i addv(__m256i a, __m256i b)
{
        return _mm256_add_epi32(a, b);
}

static inline __m256i xorv(__m256i a, __m256i b)
{
        return _mm256_xor_si256(a, b);
}

static inline __m256i rot16(__m256i x)
{
        return _mm256_shuffle_epi8(x, _mm256_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1,
                                                      0, 3, 2, 13, 12, 15, 14, 9, 8, 11, 10, 5, 4,
                                                      7, 6, 1, 0, 3, 2));
}

static inline __m256i rot12(__m256i x)
{
        return _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20));
}

static inline __m256i rot8(__m256i x)
{
        return _mm256_shuffle_epi8(x, _mm256_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0,
                                                      3, 2, 1, 12, 15, 14, 13, 8, 11, 10, 9, 4, 7,
                                                      6, 5, 0, 3, 2, 1));
}

static inline __m256i rot7(__m256i x)
{
        return _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25));
}

/* One round. The four column (then diagonal) quarter-rounds are independent, so each step
 * is written for all four at once: the CPU overlaps them instead of waiting on one chain. */
static inline void round8(__m256i v[16], const __m256i m[16], size_t r)
{
        const uint8_t *w = kiln_blake3_schedule[r];

        v[0] = addv(addv(v[0], v[4]), m[w[0]]);
        v[1] = addv(addv(v[1], v[5]), m[w[2]]);
        v[2] = addv(addv(v[2], v[6]), m[w[4]]);
        v[3] = addv(addv(v[3], v[7]), m[w[6]]);
        v[12] = rot16(xorv(v[12], v[0]));
        v[13] = rot16(xorv(v[13], v[1]));
        v[14] = rot16(xorv(v[14], v[2]));
        v[15] = rot16(xorv(v[15], v[3]));
        v[8] = addv(v[8], v[12]);
        v[9] = addv(v[9], v[13]);
        v[10] = addv(v[10], v[14]);
        v[11] = addv(v[11], v[15]);
        v[4] = rot12(xorv(v[4], v[8]));
        v[5] = rot12(xorv(v[5], v[9]));
        v[6] = rot12(xorv(v[6], v[10]));
        v[7] = rot12(xorv(v[7], v[11]));
        v[0] = addv(addv(v[0], v[4]), m[w[1]]);
        v[1] = addv(addv(v[1], v[5]), m[w[3]]);
        v[2] = addv(addv(v[2], v[6]), m[w[5]]);
        v[3] = addv(addv(v[3], v[7]), m[w[7]]);
        v[12] = rot8(xorv(v[12], v[0]));
        v[13] = rot8(xorv(v[13], v[1]));
        v[14] = rot8(xorv(v[14], v[2]));
        v[15] = rot8(xorv(v[15], v[3]));
        v[8] = addv(v[8], v[12]);
        v[9] = addv(v[9], v[13]);
        v[10] = addv(v[10], v[14]);
        v[11] = addv(v[11], v[15]);
        v[4] = rot7(xorv(v[4], v[8]));
        v[5] = rot7(xorv(v[5], v[9]));
        v[6] = rot7(xorv(v[6], v[10]));
        v[7] = rot7(xorv(v[7], v[11]));

        v[0] = addv(addv(v[0], v[5]), m[w[8]]);
        v[1] = addv(addv(v[1], v[6]), m[w[10]]);
        v[2] = addv(addv(v[2], v[7]), m[w[12]]);
        v[3] = addv(addv(v[3], v[4]), m[w[14]]);
        v[15] = rot16(xorv(v[15], v[0]));
        v[12] = rot16(xorv(v[12], v[1]));
        v[13] = rot16(xorv(v[13], v[2]));
        v[14] = rot16(xorv(v[14], v[3]));
        v[10] = addv(v[10], v[15]);
        v[11] = addv(v[11], v[12]);
        v[8] = addv(v[8], v[13]);
        v[9] = addv(v[9], v[14]);
        v[5] = rot12(xorv(v[5], v[10]));
        v[6] = rot12(xorv(v[6], v[11]));
        v[7] = rot12(xorv(v[7], v[8]));
        v[4] = rot12(xorv(v[4], v[9]));
        v[0] = addv(addv(v[0], v[5]), m[w[9]]);
        v[1] = addv(addv(v[1], v[6]), m[w[11]]);
        v[2] = addv(addv(v[2], v[7]), m[w[13]]);
        v[3] = addv(addv(v[3], v[4]), m[w[15]]);
        v[15] = rot8(xorv(v[15], v[0]));
        v[12] = rot8(xorv(v[12], v[1]));
        v[13] = rot8(xorv(v[13], v[2]));
        v[14] = rot8(xorv(v[14], v[3]));
        v[10] = addv(v[10], v[15]);
        v[11] = addv(v[11], v[12]);
        v[8] = addv(v[8], v[13]);
        v[9] = addv(v[9], v[14]);
        v[5] = rot7(xorv(v[5], v[10]));
        v[6] = rot7(xorv(v[6], v[11]));
        v[7] = rot7(xorv(v[7], v[8]));
        v[4] = rot7(xorv(v[4], v[9]));
}

/* 8x8 transpose of 32-bit words: afterwards r[k] holds word k of each former row. */
static inline void transpose8(__m256i r[8])
{
        /* Within each 128-bit half: pair up rows, then quads... */
        __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
        __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
        __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
        __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);

        /* ...so u_k holds word k (low half) and k+4 (high half) of rows 0-3, u_{k+4} the
         * same of rows 4-7; swapping halves across the pairs finishes. */
        r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
        r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
        r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
        r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
        r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
        r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
        r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
        r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

static inline void load_msg8(const uint8_t *const *in, size_t offset, __m256i m[16])
{
        for (size_t i = 0; i < 8; i++) {
                m[i] = _mm256_loadu_si256((const __m256i *)(in[i] + offset));
                m[8 + i] = _mm256_loadu_si256((const __m256i *)(in[i] + offset + 32));
        }
        /* Inputs are chunks 1 KiB apart: fetch a few blocks ahead of each stream. */
        for (size_t i = 0; i < 8; i++)
                _mm_prefetch((const char *)(in[i] + offset + 256), _MM_HINT_T0);
        transpose8(&m[0]);
        transpose8(&m[8]);
}

static void hash8(const uint8_t *const *in, size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                  uint8_t *out)
{
        uint32_t lo[8], hi[8];
        uint8_t block_flags = flags | flags_start;
        __m256i h[8], ctr_lo, ctr_hi;

        for (size_t i = 0; i < 8; i++) {
                uint64_t c = counter + (increment_counter ? i : 0);
                lo[i] = (uint32_t)c;
                hi[i] = (uint32_t)(c >> 32);
        }
        ctr_lo = _mm256_loadu_si256((const __m256i *)lo);
        ctr_hi = _mm256_loadu_si256((const __m256i *)hi);
        for (size_t i = 0; i < 8; i++)
                h[i] = _mm256_set1_epi32((int)key[i]);
        for (size_t b = 0; b < blocks; b++) {
                __m256i m[16], v[16];

                if (b + 1 == blocks)
                        block_flags |= flags_end;
                load_msg8(in, b * KILN_BLAKE3_BLOCK_LEN, m);
                for (size_t i = 0; i < 8; i++)
                        v[i] = h[i];
                for (size_t i = 0; i < 4; i++)
                        v[8 + i] = _mm256_set1_epi32((int)kiln_blake3_iv[i]);
                v[12] = ctr_lo;
                v[13] = ctr_hi;
                v[14] = _mm256_set1_epi32(KILN_BLAKE3_BLOCK_LEN);
                v[15] = _mm256_set1_epi32(block_flags);
                for (size_t r = 0; r < 7; r++)
                        round8(v, m, r);
                for (size_t i = 0; i < 8; i++)
                        h[i] = xorv(v[i], v[i + 8]);
                block_flags = flags;
        }
        transpose8(h);
        for (size_t i = 0; i < 8; i++)
                _mm256_storeu_si256((__m256i *)(out + 32 * i), h[i]);
}

void kiln_blake3_hash_many_avx2(const uint8_t *const *inputs, size_t n, size_t blocks,
                                const uint32_t key[8], uint64_t counter, bool increment_counter,
                                uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t *out)
{
        for (; n >= 8; n -= 8) {
                hash8(inputs, blocks, key, counter, increment_counter, flags, flags_start,
                      flags_end, out);
                inputs += 8;
                out += 8 * KILN_BLAKE3_OUT_LEN;
                if (increment_counter)
                        counter += 8;
        }
#ifdef KILN_BLAKE3_HAVE_SSE41
        kiln_blake3_hash_many_sse41(inputs, n, blocks, key, counter, increment_counter, flags,
                                    flags_start, flags_end, out);
#else
        kiln_blake3_hash_many_portable(inputs, n, blocks, key, counter, increment_counter, flags,
                                       flags_start, flags_end, out);
#endif
}
