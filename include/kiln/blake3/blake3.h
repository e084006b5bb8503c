/* BLAKE3 (default, unkeyed mode, 32-byte output) with run-time SIMD dispatch.
 * Hashing is pure computation: these functions cannot fail. A hasher is not
 * thread-safe; use one per thread. */
#pragma once

#include <kiln/util/util.h>

#define KILN_BLAKE3_OUT_LEN   32
#define KILN_BLAKE3_BLOCK_LEN 64
#define KILN_BLAKE3_CHUNK_LEN 1024
#define KILN_BLAKE3_MAX_DEPTH 54

/* Instruction-set levels, in increasing order of preference. */
enum kiln_blake3_level {
        KILN_BLAKE3_PORTABLE = 0,
        KILN_BLAKE3_SSE41,
        KILN_BLAKE3_AVX2,
        KILN_BLAKE3_AVX512,
        KILN_BLAKE3_LEVEL_MAX = KILN_BLAKE3_AVX512,
};

struct kiln_blake3_chunk_state {
        uint32_t cv[8];
        uint64_t chunk_counter;
        uint8_t buf[KILN_BLAKE3_BLOCK_LEN];
        uint8_t buf_len;
        uint8_t blocks_compressed;
        uint8_t flags;
};

struct kiln_blake3 {
        uint32_t key[8];
        struct kiln_blake3_chunk_state chunk;
        uint8_t cv_stack_len;
        /* One extra entry so lazy merging can hold a pending cv. */
        uint8_t cv_stack[(KILN_BLAKE3_MAX_DEPTH + 1) * KILN_BLAKE3_OUT_LEN];
};

KILN_PUBLIC void kiln_blake3_init(struct kiln_blake3 *h);
/* Adds input; any split of the same bytes gives the same digest. `data` may be NULL
 * when `len` is 0. */
KILN_PUBLIC void kiln_blake3_update(struct kiln_blake3 *h, const void *data, size_t len);
/* Writes the digest; the hasher is unchanged and may take more input. */
KILN_PUBLIC void kiln_blake3_final(const struct kiln_blake3 *h, uint8_t out[KILN_BLAKE3_OUT_LEN]);
/* One-shot convenience. */
KILN_PUBLIC void kiln_blake3(const void *data, size_t len, uint8_t out[KILN_BLAKE3_OUT_LEN]);
/* The same digest as kiln_blake3(), computed on up to `threads` threads (the caller's
 * among them; capped at 64): independent subtrees of the input are hashed side by side and
 * their chaining values merged in tree order. Inputs of under two 512 KiB units, or
 * `threads` <= 1, are hashed by kiln_blake3() on the calling thread. Worth it only for
 * inputs of a few MiB and more; a thread that cannot be created just means fewer. */
KILN_PUBLIC void kiln_blake3_parallel(const void *data, size_t len, unsigned threads,
                                      uint8_t out[KILN_BLAKE3_OUT_LEN]);
/* The same for the first `len` bytes of the file `fd` (which must support pread()): each
 * thread pread()s 128 KiB pieces into its own reused buffer and hashes them. Returns 0, or
 * -errno of a failed read (-EIO when the file ends before `len`). Faster than mapping the
 * file where page faults are dear (virtual machines: there b3sum's mmap path is slower than
 * its read() path). */
KILN_PUBLIC int kiln_blake3_parallel_fd(int fd, size_t len, unsigned threads,
                                        uint8_t out[KILN_BLAKE3_OUT_LEN]);

/* The level in use: the best the CPU supports, unless KILN_BLAKE3_SIMD
 * (portable|sse41|avx2|avx512) in the environment or kiln_blake3_force_level()
 * chose another. The choice is made on first use and cached. A KILN_BLAKE3_SIMD
 * naming an unknown level, or one this CPU or build lacks, silently means the best
 * supported level: it is a tuning knob, and the library never prints. */
KILN_PUBLIC enum kiln_blake3_level kiln_blake3_level(void);
/* The best level this CPU (and build) supports. */
KILN_PUBLIC enum kiln_blake3_level kiln_blake3_level_supported(void);
/* Pins the level for the whole process (a test hook), overriding KILN_BLAKE3_SIMD.
 * Returns 0, -ENOTSUP when the CPU or the build lacks it (the level in use is then
 * unchanged), or -EINVAL for a value outside the enum. Safe to call while other
 * threads hash: each update() or final() call uses one level throughout, and every
 * level computes the same digests. */
KILN_PUBLIC int kiln_blake3_force_level(enum kiln_blake3_level level);
KILN_PUBLIC const char *kiln_blake3_level_name(enum kiln_blake3_level level);
/* Parses a level name; -EINVAL for an unknown name. */
KILN_PUBLIC int kiln_blake3_level_from_name(const char *name, enum kiln_blake3_level *ret);
