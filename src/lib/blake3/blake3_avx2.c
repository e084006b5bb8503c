/* BLAKE3 AVX2 kernel (built with -mavx2; called only when the CPU and OS support AVX2).
 *
 * Only hash_many: eight inputs side by side, vector i holding state word i of each. A
 * single block gains nothing from 256-bit rows, so compress and the last < 8 inputs go to
 * the SSE4.1 kernel (every AVX2 CPU has SSE4.1), or the portable one if the build left
 * SSE4.1 out.
 *
 * On x86-64 the seven rounds of a block are inline assembly; everything around them
 * (loading and transposing the message, counters, output) is intrinsics. The state needs
 * all 16 YMM registers and the rotations one more, and GCC's allocator answers that with
 * spills on the critical path: written as intrinsics the kernel ran at 0.71-0.80 TSC ticks
 * per byte with GCC 12 -O3 (0.62 with clang), the assembly at 0.54. The assembly keeps the
 * state in ymm0-15, takes message words and shuffle masks as memory operands, and frees a
 * temporary for the shift-based rotations by parking one row-2 word (ymm8) in memory while
 * it is not needed. The intrinsic rounds remain for 32-bit x86 (8 YMM registers) and are
 * built into the unit tests (-DKILN_BLAKE3_AVX2_INTRINSICS) so that path stays proven. */
#include <immintrin.h>

#if defined(__x86_64__) && !defined(KILN_BLAKE3_AVX2_INTRINSICS)
#define ROUNDS_IN_ASM 1
#endif
#ifdef KILN_BLAKE3_AVX2_INTRINSICS
#define kiln_blake3_hash_many_avx2 kiln_blake3_hash_many_avx2_intrinsics
#endif

#include "blake3_impl.h"

#ifdef ROUNDS_IN_ASM

/* clang-format off */
#define B3_STR(x)        #x
#define B3_XSTR(x)       B3_STR(x)
#define Y(n)             "%%ymm" B3_XSTR(n)
/* Message word i of the block, as transposed by load_msg8(). */
#define MSG(i)           "(" B3_XSTR(i) "*32)(%[m])"
#define OP(op, src, dst) op " " src ", " dst ", " dst "\n\t"

/* b = b >>> R, with ymm8 as the temporary. */
#define ROTR_ASM(b, R)                                                                     \
        "vpsrld $" B3_XSTR(R) ", " Y(b) ", %%ymm8\n\t"                                     \
        "vpslld $(32-" B3_XSTR(R) "), " Y(b) ", " Y(b) "\n\t"                              \
        "vpor %%ymm8, " Y(b) ", " Y(b) "\n\t"

/* Half of the quarter-round on four (a, b, c, d) register quadruples at once, message words
 * x0-x3: a += m + b; d = (d ^ a) >>> (16 or 8, by byte shuffle); c += d; b = (b ^ c) >>> R2.
 * Each step runs for all four before the next, so independent work fills the pipelines. m
 * is added first because it does not wait for b. ymm8 (a row-2 word) is parked in memory
 * around the rotations of b, the only time every state register is live and a temporary
 * is needed. */
#define HALF_ASM(a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3,          \
                 x0, x1, x2, x3, MASK, R2)                                                 \
        OP("vpaddd", MSG(x0), Y(a0)) OP("vpaddd", MSG(x1), Y(a1))                          \
        OP("vpaddd", MSG(x2), Y(a2)) OP("vpaddd", MSG(x3), Y(a3))                          \
        OP("vpaddd", Y(b0), Y(a0)) OP("vpaddd", Y(b1), Y(a1))                              \
        OP("vpaddd", Y(b2), Y(a2)) OP("vpaddd", Y(b3), Y(a3))                              \
        OP("vpxor", Y(a0), Y(d0)) OP("vpxor", Y(a1), Y(d1))                                \
        OP("vpxor", Y(a2), Y(d2)) OP("vpxor", Y(a3), Y(d3))                                \
        OP("vpshufb", MASK, Y(d0)) OP("vpshufb", MASK, Y(d1))                              \
        OP("vpshufb", MASK, Y(d2)) OP("vpshufb", MASK, Y(d3))                              \
        OP("vpaddd", Y(d0), Y(c0)) OP("vpaddd", Y(d1), Y(c1))                              \
        OP("vpaddd", Y(d2), Y(c2)) OP("vpaddd", Y(d3), Y(c3))                              \
        OP("vpxor", Y(c0), Y(b0)) OP("vpxor", Y(c1), Y(b1))                                \
        OP("vpxor", Y(c2), Y(b2)) OP("vpxor", Y(c3), Y(b3))                                \
        "vmovdqa %%ymm8, %[spill]\n\t"                                                     \
        ROTR_ASM(b0, R2) ROTR_ASM(b1, R2) ROTR_ASM(b2, R2) ROTR_ASM(b3, R2)                \
        "vmovdqa %[spill], %%ymm8\n\t"

/* One round; s0-s15 is its message word order (a row of kiln_blake3_schedule). State word
 * i lives in ymm<i>; the diagonal step just names other registers. */
#define ROUND_ASM(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15)   \
        HALF_ASM(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,                     \
                 s0, s2, s4, s6, "%[rot16]", 12)                                           \
        HALF_ASM(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,                     \
                 s1, s3, s5, s7, "%[rot8]", 7)                                             \
        HALF_ASM(0, 1, 2, 3, 5, 6, 7, 4, 10, 11, 8, 9, 15, 12, 13, 14,                     \
                 s8, s10, s12, s14, "%[rot16]", 12)                                        \
        HALF_ASM(0, 1, 2, 3, 5, 6, 7, 4, 10, 11, 8, 9, 15, 12, 13, 14,                     \
                 s9, s11, s13, s15, "%[rot8]", 7)

#define LOAD_H(n)       "vmovdqa (" B3_XSTR(n) "*32)(%[h]), " Y(n) "\n\t"
#define LOAD_IV(n, k)   "vpbroadcastd (" B3_XSTR(k) "*4)(%[iv]), " Y(n) "\n\t"
#define LOAD_ROW3(n, k) "vmovdqa (" B3_XSTR(k) "*32)(%[row3]), " Y(n) "\n\t"
#define STORE_H(n, k)                                                                      \
        "vpxor " Y(k) ", " Y(n) ", " Y(n) "\n\t"                                           \
        "vmovdqa " Y(n) ", (" B3_XSTR(n) "*32)(%[h])\n\t"

/* A block: load the state, run the rounds, store h = row 0-1 ^ row 2-3. The schedule rows
 * are spelled out because the assembler needs literals; the unit tests hold this kernel to
 * the portable one, which reads kiln_blake3_schedule. */
#define BLOCK8_ASM                                                                         \
        LOAD_H(0) LOAD_H(1) LOAD_H(2) LOAD_H(3) LOAD_H(4) LOAD_H(5) LOAD_H(6) LOAD_H(7)    \
        LOAD_IV(8, 0) LOAD_IV(9, 1) LOAD_IV(10, 2) LOAD_IV(11, 3)                          \
        LOAD_ROW3(12, 0) LOAD_ROW3(13, 1) LOAD_ROW3(14, 2) LOAD_ROW3(15, 3)                \
        ROUND_ASM(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)                    \
        ROUND_ASM(2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)                    \
        ROUND_ASM(3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1)                    \
        ROUND_ASM(10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6)                    \
        ROUND_ASM(12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4)                    \
        ROUND_ASM(9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7)                    \
        ROUND_ASM(11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13)                    \
        STORE_H(0, 8) STORE_H(1, 9) STORE_H(2, 10) STORE_H(3, 11)                          \
        STORE_H(4, 12) STORE_H(5, 13) STORE_H(6, 14) STORE_H(7, 15)
/* clang-format on */

static const uint8_t rot16_mask[32] __attribute__((aligned(32))) = {
        2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
        2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
};
static const uint8_t rot8_mask[32] __attribute__((aligned(32))) = {
        1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
        1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
};

/* One block on eight lanes: h = first half of the compression of h with message m, where
 * row3 is the state's last row (counter low, counter high, block length, flags). */
static inline void block8(__m256i h[8], const __m256i m[16], const __m256i row3[4])
{
        __m256i spill;

        __asm__(BLOCK8_ASM
                : "+m"(*(__m256i(*)[8])h), [spill] "=m"(spill)
                : [h] "r"(h), [m] "r"(m), "m"(*(const __m256i(*)[16])m), [row3] "r"(row3),
                  "m"(*(const __m256i(*)[4])row3), [iv] "r"(kiln_blake3_iv),
                  "m"(kiln_blake3_iv), [rot16] "m"(rot16_mask), [rot8] "m"(rot8_mask)
                : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                  "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

#else /* !ROUNDS_IN_ASM */

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

KILN_BLAKE3_INLINE void g8(__m256i v[16], size_t a, size_t b, size_t c, size_t d, __m256i x,
                           __m256i y)
{
        /* a + m first: it does not wait for b, leaving one add on the b -> a path. */
        v[a] = addv(addv(v[a], x), v[b]);
        v[d] = rot16(xorv(v[d], v[a]));
        v[c] = addv(v[c], v[d]);
        v[b] = rot12(xorv(v[b], v[c]));
        v[a] = addv(addv(v[a], y), v[b]);
        v[d] = rot8(xorv(v[d], v[a]));
        v[c] = addv(v[c], v[d]);
        v[b] = rot7(xorv(v[b], v[c]));
}

/* One round: the four columns, then the four diagonals. Written G by G (not step by step
 * across the four) because that is what GCC allocates registers for best; the CPU overlaps
 * the independent Gs by itself. */
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

static inline void block8(__m256i h[8], const __m256i m[16], const __m256i row3[4])
{
        __m256i v[16];

        for (size_t i = 0; i < 8; i++)
                v[i] = h[i];
        for (size_t i = 0; i < 4; i++) {
                v[8 + i] = _mm256_set1_epi32((int)kiln_blake3_iv[i]);
                v[12 + i] = row3[i];
        }
        /* Spelled out so the schedule indices are constants and the state stays in
         * registers. */
        round8(v, m, 0);
        round8(v, m, 1);
        round8(v, m, 2);
        round8(v, m, 3);
        round8(v, m, 4);
        round8(v, m, 5);
        round8(v, m, 6);
        for (size_t i = 0; i < 8; i++)
                h[i] = xorv(v[i], v[i + 8]);
}

#endif /* ROUNDS_IN_ASM */

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
        /* Transposed in a local array: m is read by the assembly, so every store to it is
         * kept, and transposing m in place would write it twice. */
        __m256i r[16];

        for (size_t i = 0; i < 8; i++) {
                r[i] = _mm256_loadu_si256((const __m256i *)(in[i] + offset));
                r[8 + i] = _mm256_loadu_si256((const __m256i *)(in[i] + offset + 32));
        }
        /* Inputs are chunks 1 KiB apart: fetch a few blocks ahead of each stream. */
        for (size_t i = 0; i < 8; i++)
                _mm_prefetch((const char *)(in[i] + offset + 256), _MM_HINT_T0);
        transpose8(&r[0]);
        transpose8(&r[8]);
        for (size_t i = 0; i < 16; i++)
                m[i] = r[i];
}

static void hash8(const uint8_t *const *in, size_t blocks, const uint32_t key[8], uint64_t counter,
                  bool increment_counter, uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                  uint8_t *out)
{
        uint32_t lo[8], hi[8];
        uint8_t block_flags = flags | flags_start;
        __m256i h[8], row3[4];

        for (size_t i = 0; i < 8; i++) {
                uint64_t c = counter + (increment_counter ? i : 0);
                lo[i] = (uint32_t)c;
                hi[i] = (uint32_t)(c >> 32);
        }
        row3[0] = _mm256_loadu_si256((const __m256i *)lo);
        row3[1] = _mm256_loadu_si256((const __m256i *)hi);
        row3[2] = _mm256_set1_epi32(KILN_BLAKE3_BLOCK_LEN);
        for (size_t i = 0; i < 8; i++)
                h[i] = _mm256_set1_epi32((int)key[i]);
        for (size_t b = 0; b < blocks; b++) {
                __m256i m[16];

                if (b + 1 == blocks)
                        block_flags |= flags_end;
                load_msg8(in, b * KILN_BLAKE3_BLOCK_LEN, m);
                row3[3] = _mm256_set1_epi32(block_flags);
                block8(h, m, row3);
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
        if (n > 4) {
                kiln_blake3_hash_padded(hash8, 8, inputs, n, blocks, key, counter,
                                        increment_counter, flags, flags_start, flags_end, out);
                return;
        }
#ifdef KILN_BLAKE3_HAVE_SSE41
        kiln_blake3_hash_many_sse41(inputs, n, blocks, key, counter, increment_counter, flags,
                                    flags_start, flags_end, out);
#else
        kiln_blake3_hash_many_portable(inputs, n, blocks, key, counter, increment_counter, flags,
                                       flags_start, flags_end, out);
#endif
}
