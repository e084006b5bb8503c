/* Content-defined chunking: FastCDC, 2020 variant (Xia et al., "The Design of
 * Fast Content-Defined Chunking for Data Deduplication Based Storage Systems",
 * IEEE TPDS 2020), as the object store uses it to split blobs.
 *
 * A streaming chunker: feed it bytes in any pieces and it reports where chunks
 * end. Cut points depend only on the bytes, never on how they were split into
 * calls, so a writer needs to buffer at most one chunk (≤ max bytes).
 *
 * Parameters: min = avg/2, max = 2*avg (avg a power of two). The gear hash is
 * h = (h << 1) + gear[byte], restarted at 0 for each chunk after its first
 * `min` bytes, which are skipped (cut-point skipping). Normalized chunking,
 * level 1: while the chunk is shorter than avg a cut needs log2(avg)+1 zero
 * bits, after that log2(avg)-1. The mask bits are the top bits of h, so a cut
 * depends on the last 64 bytes only (the sliding window). A chunk also ends at
 * max bytes. The two-bytes-per-step loop of the 2020 paper is an unrolling of
 * this same recurrence and is not needed for correctness.
 *
 * The gear table is our own, generated deterministically by SplitMix64 seeded
 * with the ASCII bytes "kilncdc1" (0x6b696c6e63646331): for i = 0..255,
 * state += 0x9e3779b97f4a7c15; z = state; z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9;
 * z = (z ^ z >> 27) * 0x94d049bb133111eb; gear[i] = z ^ z >> 31. Changing it
 * (or any parameter) changes every chunk boundary, not correctness: blob
 * digests never depend on chunking. Sharing a bucket with the reference would
 * need the reference's table.
 *
 * A chunker is plain state owned by one writer; the table is shared and
 * read-only once built (thread-safe). */
#pragma once

#include <kiln/util/util.h>

#define KILN_FASTCDC_AVG_DEFAULT ((size_t)256 * 1024)
/* Range accepted for avg (a power of two). */
#define KILN_FASTCDC_AVG_MIN ((size_t)4 * 1024)
#define KILN_FASTCDC_AVG_MAX ((size_t)4 * 1024 * 1024)

struct kiln_fastcdc {
        size_t min, avg, max;
        uint64_t mask_s; /* stricter mask, for chunk lengths below avg */
        uint64_t mask_l; /* looser mask, from avg on */
        uint64_t hash;
        size_t len; /* bytes of the current chunk seen so far */
};

/* Initialises for chunks of average size avg, which must be a power of two in
 * [KILN_FASTCDC_AVG_MIN, KILN_FASTCDC_AVG_MAX] (asserted). */
void kiln_fastcdc_init(struct kiln_fastcdc *c, size_t avg);

/* Scans p[0..n) as the continuation of the current chunk. Returns how many
 * bytes of p belong to it. With *ret_cut true the chunk ends after them and
 * the chunker starts a new one; otherwise the whole input was taken (the
 * return value is n) and the chunk goes on. At the end of the stream, the
 * bytes seen since the last cut (kiln_fastcdc_pending) form the final chunk. */
size_t kiln_fastcdc_next(struct kiln_fastcdc *c, const uint8_t *p, size_t n, bool *ret_cut);

/* Bytes of the current, unfinished chunk. */
static inline size_t kiln_fastcdc_pending(const struct kiln_fastcdc *c)
{
        return c->len;
}

/* Starts a new chunk (e.g. after the final one was taken). */
static inline void kiln_fastcdc_reset(struct kiln_fastcdc *c)
{
        c->hash = 0;
        c->len = 0;
}

/* Entry i of the gear table (exposed for tests). */
uint64_t kiln_fastcdc_gear(uint8_t i);
