/* BLAKE3 internals shared by the hasher (blake3.c), the dispatcher (blake3_dispatch.c) and
 * the per-ISA kernels (blake3_<isa>.c). Not installed: tests include it to pin kernels.
 *
 * Every kernel offers two primitives:
 *   compress   one block into a chaining value, in place;
 *   hash_many  N inputs of the same number of whole blocks, side by side, each into one CV.
 * hash_many is where SIMD pays: lane i of every vector belongs to input i, so a 4/8/16-wide
 * kernel runs 4/8/16 compressions for the price of one. The hasher feeds it whole chunks,
 * then pairs of CVs (parent nodes), many at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <kiln/blake3/blake3.h>

/* Domain flags of the compression function. */
enum {
        KILN_BLAKE3_CHUNK_START = 1 << 0,
        KILN_BLAKE3_CHUNK_END = 1 << 1,
        KILN_BLAKE3_PARENT = 1 << 2,
        KILN_BLAKE3_ROOT = 1 << 3,
};

/* For the round functions of the kernels: GCC judges them too big to inline, but only
 * inlined do their message and state indices become constants, so the state can live in
 * registers. Unoptimised (sanitizer) builds keep them as calls: forced inlining there
 * only multiplies instrumented stack traffic (the portable kernel ran 6x slower). */
#ifdef __OPTIMIZE__
#define KILN_BLAKE3_INLINE static inline __attribute__((always_inline))
#else
#define KILN_BLAKE3_INLINE static inline
#endif

/* Widest hash_many in the tree (AVX-512); sizes the hasher's scratch arrays. */
#define KILN_BLAKE3_MAX_DEGREE 16

static const uint32_t kiln_blake3_iv[8] = {
        0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
        0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
};

/* Message word order of each of the 7 rounds: round r+1 applies BLAKE3's fixed permutation
 * to round r. Row 0 is the identity. */
static const uint8_t kiln_blake3_schedule[7][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
        {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
        {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
        {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
        {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
        {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
        {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static inline uint32_t kiln_blake3_load32(const void *p)
{
        uint32_t w;
        memcpy(&w, p, sizeof(w));
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap32(w);
#endif
        return w;
}

static inline void kiln_blake3_store32(void *p, uint32_t w)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap32(w);
#endif
        memcpy(p, &w, sizeof(w));
}

static inline void kiln_blake3_store_cv(uint8_t out[KILN_BLAKE3_OUT_LEN], const uint32_t cv[8])
{
        for (size_t i = 0; i < 8; i++)
                kiln_blake3_store32(out + 4 * i, cv[i]);
}

/* One kernel's primitives. `compress` replaces cv with the first half of the compression
 * output (what a chaining value and a 32-byte root digest both are). `hash_many` hashes
 * `n` inputs of `blocks` whole blocks each, starting from `key`; input i uses counter
 * `counter + i` if `increment_counter` (chunks) or `counter` (parents). The first block
 * adds `flags_start`, the last `flags_end`. CV i lands at out + 32 * i. */
struct kiln_blake3_ops {
        enum kiln_blake3_level level;
        size_t degree; /* inputs hash_many takes at once; a power of two */
        void (*compress)(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                         uint8_t block_len, uint64_t counter, uint8_t flags);
        void (*hash_many)(const uint8_t *const *inputs, size_t n, size_t blocks,
                          const uint32_t key[8], uint64_t counter, bool increment_counter,
                          uint8_t flags, uint8_t flags_start, uint8_t flags_end, uint8_t *out);
};

/* Hashes inputs one at a time with a single-block compress: the tail of every kernel's
 * hash_many once fewer inputs remain than its vectors are wide. */
static inline void kiln_blake3_hash_one_by_one(
        void (*compress)(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                         uint8_t block_len, uint64_t counter, uint8_t flags),
        const uint8_t *const *inputs, size_t n, size_t blocks, const uint32_t key[8],
        uint64_t counter, bool increment_counter, uint8_t flags, uint8_t flags_start,
        uint8_t flags_end, uint8_t *out)
{
        for (size_t i = 0; i < n; i++) {
                uint32_t cv[8];
                uint8_t block_flags = flags | flags_start;

                memcpy(cv, key, sizeof(cv));
                for (size_t b = 0; b < blocks; b++) {
                        if (b + 1 == blocks)
                                block_flags |= flags_end;
                        compress(cv, inputs[i] + b * KILN_BLAKE3_BLOCK_LEN, KILN_BLAKE3_BLOCK_LEN,
                                 counter, block_flags);
                        block_flags = flags;
                }
                kiln_blake3_store_cv(out + i * KILN_BLAKE3_OUT_LEN, cv);
                if (increment_counter)
                        counter++;
        }
}

/* A kernel's hash_many for exactly `width` inputs side by side. */
typedef void kiln_blake3_hash_wide_fn(const uint8_t *const *inputs, size_t blocks,
                                      const uint32_t key[8], uint64_t counter,
                                      bool increment_counter, uint8_t flags, uint8_t flags_start,
                                      uint8_t flags_end, uint8_t *out);

/* The last n < width inputs of a hash_many on the width-wide kernel: the spare lanes hash
 * copies of the last input and their CVs are dropped. For n above half the width one wide
 * pass costs less than the narrower kernels and single compressions it replaces. */
static inline void kiln_blake3_hash_padded(kiln_blake3_hash_wide_fn *fn, size_t width,
                                           const uint8_t *const *inputs, size_t n, size_t blocks,
                                           const uint32_t key[8], uint64_t counter,
                                           bool increment_counter, uint8_t flags,
                                           uint8_t flags_start, uint8_t flags_end, uint8_t *out)
{
        const uint8_t *padded[KILN_BLAKE3_MAX_DEGREE];
        uint8_t cvs[KILN_BLAKE3_MAX_DEGREE * KILN_BLAKE3_OUT_LEN];

        for (size_t i = 0; i < width; i++)
                padded[i] = inputs[i < n ? i : n - 1];
        fn(padded, blocks, key, counter, increment_counter, flags, flags_start, flags_end, cvs);
        memcpy(out, cvs, n * KILN_BLAKE3_OUT_LEN);
}

/* Kernels. Only those the build enables exist; see blake3_dispatch.c. */
void kiln_blake3_compress_portable(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                                   uint8_t block_len, uint64_t counter, uint8_t flags);
void kiln_blake3_hash_many_portable(const uint8_t *const *inputs, size_t n, size_t blocks,
                                    const uint32_t key[8], uint64_t counter, bool increment_counter,
                                    uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                                    uint8_t *out);

void kiln_blake3_compress_sse41(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                                uint8_t block_len, uint64_t counter, uint8_t flags);
void kiln_blake3_hash_many_sse41(const uint8_t *const *inputs, size_t n, size_t blocks,
                                 const uint32_t key[8], uint64_t counter, bool increment_counter,
                                 uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                                 uint8_t *out);

void kiln_blake3_hash_many_avx2(const uint8_t *const *inputs, size_t n, size_t blocks,
                                const uint32_t key[8], uint64_t counter, bool increment_counter,
                                uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                                uint8_t *out);

/* The AVX2 kernel with its intrinsic rounds instead of the x86-64 assembly (test builds
 * only: on x86-64 the library uses the assembly). */
void kiln_blake3_hash_many_avx2_intrinsics(const uint8_t *const *inputs, size_t n, size_t blocks,
                                           const uint32_t key[8], uint64_t counter,
                                           bool increment_counter, uint8_t flags,
                                           uint8_t flags_start, uint8_t flags_end, uint8_t *out);

void kiln_blake3_compress_avx512(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                                 uint8_t block_len, uint64_t counter, uint8_t flags);
void kiln_blake3_hash_many_avx512(const uint8_t *const *inputs, size_t n, size_t blocks,
                                  const uint32_t key[8], uint64_t counter, bool increment_counter,
                                  uint8_t flags, uint8_t flags_start, uint8_t flags_end,
                                  uint8_t *out);

/* The AVX-512 kernel compiled against SIMDe's portable emulation (test builds only), so
 * machines without AVX-512 still exercise its code. */
void kiln_blake3_compress_avx512_simde(uint32_t cv[8], const uint8_t block[KILN_BLAKE3_BLOCK_LEN],
                                       uint8_t block_len, uint64_t counter, uint8_t flags);
void kiln_blake3_hash_many_avx512_simde(const uint8_t *const *inputs, size_t n, size_t blocks,
                                        const uint32_t key[8], uint64_t counter,
                                        bool increment_counter, uint8_t flags, uint8_t flags_start,
                                        uint8_t flags_end, uint8_t *out);

/* Whether the build includes the kernel of a level (the CPU may still lack it). */
bool kiln_blake3_level_built(enum kiln_blake3_level level);
/* The kernel table for a level, or NULL when the build or the CPU lacks it. */
const struct kiln_blake3_ops *kiln_blake3_ops_for_level(enum kiln_blake3_level level);
/* The kernel table every hasher uses now (selected on first use). */
const struct kiln_blake3_ops *kiln_blake3_ops_current(void);
/* Test hook: makes `ops` current for the whole process; NULL forgets any choice, so the
 * next use selects again (reading KILN_BLAKE3_SIMD anew). */
void kiln_blake3_ops_set(const struct kiln_blake3_ops *ops);

/* The two CVs of the top parent of a complete subtree of `chunks` chunks (a power of two, at
 * least 2) starting at chunk `chunk_counter`: the streaming hasher's wide path, for
 * blake3_parallel.c. */
void kiln_blake3_hash_subtree(const struct kiln_blake3_ops *ops, const uint8_t *in, size_t chunks,
                              const uint32_t key[8], uint64_t chunk_counter, uint8_t flags,
                              uint8_t out[2 * KILN_BLAKE3_OUT_LEN]);

/* kiln_blake3_parallel(): at most this many threads, and units of this many chunks (512 KiB:
 * small enough to share 1 GiB out evenly, large enough that taking one costs nothing). */
#define KILN_BLAKE3_MAX_THREADS          64
#define KILN_BLAKE3_PARALLEL_UNIT_CHUNKS 512
/* kiln_blake3_parallel_fd(): units of 128 KiB, each pread() into its thread's buffer, which
 * stays in the L2 cache between the kernel's copy and the hashing. */
#define KILN_BLAKE3_PARALLEL_FD_UNIT_CHUNKS 128

/* kiln_blake3_parallel() with units of `unit_chunks` chunks (a power of two, at least 1):
 * the test hook, so that small inputs still make many units. */
void kiln_blake3_parallel_units(const void *data, size_t len, unsigned threads,
                                size_t unit_chunks, uint8_t out[KILN_BLAKE3_OUT_LEN]);
int kiln_blake3_parallel_fd_units(int fd, size_t len, unsigned threads, size_t unit_chunks,
                                  uint8_t out[KILN_BLAKE3_OUT_LEN]);
