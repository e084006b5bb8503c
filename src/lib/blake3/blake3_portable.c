/* BLAKE3 portable kernel: plain C, the reference every SIMD kernel is tested against, and
 * the only one on CPUs (or builds) without SSE4.1. */
#include "blake3_impl.h"

static inline uint32_t rotr32(uint32_t w, unsigned c)
{
        return (w >> c) | (w << (32 - c));
}

/* The quarter-round mixing state words a, b, c, d with message words x and y. */
KILN_BLAKE3_INLINE void g(uint32_t s[16], size_t a, size_t b, size_t c, size_t d, uint32_t x,
                          uint32_t y)
{
        s[a] = s[a] + x + s[b];
        s[d] = rotr32(s[d] ^ s[a], 16);
        s[c] = s[c] + s[d];
        s[b] = rotr32(s[b] ^ s[c], 12);
        s[a] = s[a] + y + s[b];
        s[d] = rotr32(s[d] ^ s[a], 8);
        s[c] = s[c] + s[d];
        s[b] = rotr32(s[b] ^ s[c], 7);
}

KILN_BLAKE3_INLINE void round_fn(uint32_t s[16], const uint32_t m[16], size_t r)
{
        const uint8_t *w = kiln_blake3_schedule[r];

        /* Columns, then diagonals. */
        g(s, 0, 4, 8, 12, m[w[0]], m[w[1]]);
        g(s, 1, 5, 9, 13, m[w[2]], m[w[3]]);
        g(s, 2, 6, 10, 14, m[w[4]], m[w[5]]);
        g(s, 3, 7, 11, 15, m[w[6]], m[w[7]]);
        g(s, 0, 5, 10, 15, m[w[8]], m[w[9]]);
        g(s, 1, 6, 11, 12, m[w[10]], m[w[11]]);
        g(s, 2, 7, 8, 13, m[w[12]], m[w[13]]);
        g(s, 3, 4, 9, 14, m[w[14]], m[w[15]]);
}

/* Spelled out so the schedule indices are constants and the state stays in registers. */
KILN_BLAKE3_INLINE void all_rounds(uint32_t s[16], const uint32_t m[16])
{
        round_fn(s, m, 0);
        round_fn(s, m, 1);
        round_fn(s, m, 2);
        round_fn(s, m, 3);
        round_fn(s, m, 4);
        round_fn(s, m, 5);
        round_fn(s, m, 6);
}

void kiln_blake3_compress_portable(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                                   uint8_t block_len, uint64_t counter, uint8_t flags)
{
        uint32_t m[16], s[16];

        memcpy(&s[0], cv, 8 * sizeof(uint32_t));
        memcpy(&s[8], kiln_blake3_iv, 4 * sizeof(uint32_t));
        s[12] = (uint32_t)counter;
        s[13] = (uint32_t)(counter >> 32);
        s[14] = block_len;
        s[15] = flags;
        for (size_t i = 0; i < 16; i++)
                m[i] = kiln_blake3_load32(block + 4 * i);
        all_rounds(s, m);
        for (size_t i = 0; i < 8; i++)
                cv[i] = s[i] ^ s[i + 8];
}

void kiln_blake3_hash_many_portable(const uint8_t *const *inputs, size_t n, size_t blocks,
                                    const uint32_t key[8], uint64_t counter, bool increment_counter,
                                    uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                                    uint8_t *out)
{
        kiln_blake3_hash_one_by_one(kiln_blake3_compress_portable, inputs, n, blocks, key, counter,
                                    increment_counter, flags, flags_start, flags_end, out);
}
