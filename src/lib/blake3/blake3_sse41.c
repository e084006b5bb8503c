/* BLAKE3 SSE4.1 kernel (built with -msse4.1; called only when the CPU has SSE4.1).
 *
 * compress keeps the 4x4 state as four row vectors, so one vector instruction advances
 * four quarter-rounds; the diagonal step rotates rows 1-3 into columns and back. The
 * message is kept pre-split the way the rows consume it, and permuted between rounds with
 * shuffles and blends instead of being reloaded.
 *
 * hash_many runs four independent inputs side by side: vector i holds state word i of all
 * four, so no shuffles are needed inside the rounds, only a transpose of each block on the
 * way in and of the CVs on the way out. */
#include <immintrin.h>

#include "blake3_impl.h"

static inline __m128i addv(__m128i a, __m128i b)
{
        return _mm_add_epi32(a, b);
}

static inline __m128i xorv(__m128i a, __m128i b)
{
        return _mm_xor_si128(a, b);
}

/* Rotations by 16 and 8 move whole bytes: one byte shuffle each. */
static inline __m128i rot16(__m128i x)
{
        return _mm_shuffle_epi8(x,
                                _mm_set_epi8(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2));
}

static inline __m128i rot12(__m128i x)
{
        return _mm_or_si128(_mm_srli_epi32(x, 12), _mm_slli_epi32(x, 20));
}

static inline __m128i rot8(__m128i x)
{
        return _mm_shuffle_epi8(x,
                                _mm_set_epi8(12, 15, 14, 13, 8, 11, 10, 9, 4, 7, 6, 5, 0, 3, 2, 1));
}

static inline __m128i rot7(__m128i x)
{
        return _mm_or_si128(_mm_srli_epi32(x, 7), _mm_slli_epi32(x, 25));
}

/* ---- compress: one block, state as rows ---- */

KILN_BLAKE3_INLINE void g_half1(__m128i *a, __m128i *b, __m128i *c, __m128i *d, __m128i m)
{
        *a = addv(addv(*a, m), *b);
        *d = rot16(xorv(*d, *a));
        *c = addv(*c, *d);
        *b = rot12(xorv(*b, *c));
}

KILN_BLAKE3_INLINE void g_half2(__m128i *a, __m128i *b, __m128i *c, __m128i *d, __m128i m)
{
        *a = addv(addv(*a, m), *b);
        *d = rot8(xorv(*d, *a));
        *c = addv(*c, *d);
        *b = rot7(xorv(*b, *c));
}

/* Rotating row 1 left by one lane, row 2 by two and row 3 by three lines the diagonals
 * (0,5,10,15), (1,6,11,12), ... up as columns. Row 0 stays, so message lanes keep order. */
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

/* The message as a round consumes it, for the current word order s:
 * mx = (s0,s2,s4,s6), my = (s1,s3,s5,s7) for the columns, mz = (s8,s10,s12,s14),
 * mw = (s9,s11,s13,s15) for the diagonals. Applying the permutation s'[i] = s[P[i]] to that
 * layout gives mx' = (mx1,my1,my3,mx2), my' = (mx3,mz1,mx0,mw2), mz' = (my0,mz2,mw0,mw3),
 * mw' = (mw1,my2,mz3,mz0). Blend masks count 16-bit lanes: 0x0C is dword 1, 0x3C dwords
 * 1-2, 0xC0 dword 3, 0xF0 dwords 2-3. */
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

void kiln_blake3_compress_sse41(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                                uint8_t block_len, uint64_t counter, uint8_t flags)
{
        __m128i a = _mm_loadu_si128((const __m128i *)&cv[0]);
        __m128i b = _mm_loadu_si128((const __m128i *)&cv[4]);
        __m128i c = _mm_loadu_si128((const __m128i *)&kiln_blake3_iv[0]);
        __m128i d = _mm_setr_epi32((int)(uint32_t)counter, (int)(uint32_t)(counter >> 32),
                                   block_len, flags);
        /* Little-endian loads: SSE4.1 only exists on little-endian x86. */
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
        _mm_storeu_si128((__m128i *)&cv[0], xorv(a, c));
        _mm_storeu_si128((__m128i *)&cv[4], xorv(b, d));
}

/* ---- hash_many: four inputs, one per lane ---- */

KILN_BLAKE3_INLINE void g4(__m128i v[16], size_t a, size_t b, size_t c, size_t d, __m128i x,
                           __m128i y)
{
        v[a] = addv(addv(v[a], x), v[b]);
        v[d] = rot16(xorv(v[d], v[a]));
        v[c] = addv(v[c], v[d]);
        v[b] = rot12(xorv(v[b], v[c]));
        v[a] = addv(addv(v[a], y), v[b]);
        v[d] = rot8(xorv(v[d], v[a]));
        v[c] = addv(v[c], v[d]);
        v[b] = rot7(xorv(v[b], v[c]));
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

/* 4x4 transpose of 32-bit words: row i becomes column i. */
static inline void transpose4(__m128i *r0, __m128i *r1, __m128i *r2, __m128i *r3)
{
        __m128i ab_lo = _mm_unpacklo_epi32(*r0, *r1), ab_hi = _mm_unpackhi_epi32(*r0, *r1);
        __m128i cd_lo = _mm_unpacklo_epi32(*r2, *r3), cd_hi = _mm_unpackhi_epi32(*r2, *r3);

        *r0 = _mm_unpacklo_epi64(ab_lo, cd_lo);
        *r1 = _mm_unpackhi_epi64(ab_lo, cd_lo);
        *r2 = _mm_unpacklo_epi64(ab_hi, cd_hi);
        *r3 = _mm_unpackhi_epi64(ab_hi, cd_hi);
}

/* m[w] = word w of the block at `offset` of each of the four inputs. */
static inline void load_msg4(const uint8_t *const *in, size_t offset, __m128i m[16])
{
        for (size_t q = 0; q < 4; q++)
                for (size_t i = 0; i < 4; i++)
                        m[4 * q + i] = _mm_loadu_si128((const __m128i *)(in[i] + offset + 16 * q));
        for (size_t q = 0; q < 4; q++)
                transpose4(&m[4 * q], &m[4 * q + 1], &m[4 * q + 2], &m[4 * q + 3]);
}

static void hash4(const uint8_t *const *in, size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                  uint8_t *out)
{
        uint64_t step = increment_counter ? 1 : 0;
        __m128i ctr_lo = _mm_setr_epi32((int)(uint32_t)counter, (int)(uint32_t)(counter + step),
                                        (int)(uint32_t)(counter + 2 * step),
                                        (int)(uint32_t)(counter + 3 * step));
        __m128i ctr_hi = _mm_setr_epi32((int)(uint32_t)(counter >> 32),
                                        (int)(uint32_t)((counter + step) >> 32),
                                        (int)(uint32_t)((counter + 2 * step) >> 32),
                                        (int)(uint32_t)((counter + 3 * step) >> 32));
        uint8_t block_flags = flags | flags_start;
        __m128i h[8];

        for (size_t i = 0; i < 8; i++)
                h[i] = _mm_set1_epi32((int)key[i]);
        for (size_t b = 0; b < blocks; b++) {
                __m128i m[16], v[16];

                if (b + 1 == blocks)
                        block_flags |= flags_end;
                load_msg4(in, b * KILN_BLAKE3_BLOCK_LEN, m);
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
                        h[i] = xorv(v[i], v[i + 8]);
                block_flags = flags;
        }
        transpose4(&h[0], &h[1], &h[2], &h[3]);
        transpose4(&h[4], &h[5], &h[6], &h[7]);
        for (size_t i = 0; i < 4; i++) {
                _mm_storeu_si128((__m128i *)(out + 32 * i), h[i]);
                _mm_storeu_si128((__m128i *)(out + 32 * i + 16), h[4 + i]);
        }
}

void kiln_blake3_hash_many_sse41(const uint8_t *const *inputs, size_t n, size_t blocks,
                                 const uint32_t key[8], uint64_t counter, bool increment_counter,
                                 uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                                 uint8_t *out)
{
        for (; n >= 4; n -= 4) {
                hash4(inputs, blocks, key, counter, increment_counter, flags, flags_start,
                      flags_end, out);
                inputs += 4;
                out += 4 * KILN_BLAKE3_OUT_LEN;
                if (increment_counter)
                        counter += 4;
        }
        if (n > 2) {
                kiln_blake3_hash_padded(hash4, 4, inputs, n, blocks, key, counter,
                                        increment_counter, flags, flags_start, flags_end, out);
                return;
        }
        kiln_blake3_hash_one_by_one(kiln_blake3_compress_sse41, inputs, n, blocks, key, counter,
                                    increment_counter, flags, flags_start, flags_end, out);
}
