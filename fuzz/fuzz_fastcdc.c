/* FastCDC (fastcdc.h) against the textbook chunker written plainly here,
 * byte at a time, from the parameters fastcdc.h documents: the SplitMix64
 * gear table seeded "kilncdc1" (recomputed here and compared entry by
 * entry), min = avg/2, max = 2*avg, the first min bytes of a chunk not
 * hashed, h = (h << 1) + gear[byte] from 0, a cut after the byte where h has
 * none of its top log2(avg)+1 bits set while the chunk is at most avg long,
 * none of its top log2(avg)-1 bits after that, and at max.
 *
 * Input: byte 0 picks avg (4 KiB..32 KiB mostly, up to 4 MiB) and whether the
 * data is also written through an objectstore+memory:// writer; byte 1 how
 * the data is stretched (as is, repeated, or xorshift bytes seeded from it,
 * up to 128 KiB); byte 2 the number of update sizes that follow, then the
 * update sizes (0 included), then the data.
 *
 * Property: the cuts kiln_fastcdc_next() reports for the data fed in those
 * updates are the reference's; every return is within its update and the
 * whole update when there is no cut; the pending count is the bytes since the
 * last cut; chunks cover the data, each but the last longer than min, all at
 * most max. Written through the object store (data up to 32 KiB), the blob's chunk list is the
 * reference's chunks with their digests (one chunk: no list) and the blob
 * reads back. */
#include <kiln/castore/digest.h>
#include <kiln/store/store.h>

#include "fastcdc.h"
#include "fuzz.h"

#define DATA_MAX ((size_t)128 << 10)
#define CUTS_MAX (DATA_MAX / (KILN_FASTCDC_AVG_MIN / 2) + 2)

static uint64_t ref_gear[256];

static void ref_gear_build(void)
{
        uint64_t state = 0x6b696c6e63646331ULL; /* "kilncdc1" */
        for (int i = 0; i < 256; i++) {
                state += 0x9e3779b97f4a7c15ULL;
                uint64_t z = state;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                ref_gear[i] = z ^ (z >> 31);
                FUZZ_CHECK(ref_gear[i] == kiln_fastcdc_gear((uint8_t)i));
        }
}

/* The reference: chunk ends (exclusive offsets), the last one n. */
static size_t ref_chunk(const uint8_t *p, size_t n, size_t avg, size_t *ends)
{
        unsigned bits = 0;
        while (((size_t)1 << bits) < avg)
                bits++;
        uint64_t mask_s = ~0ULL << (64 - (bits + 1)), mask_l = ~0ULL << (64 - (bits - 1));
        size_t min = avg / 2, max = avg * 2, n_ends = 0, start = 0;
        while (start < n) {
                uint64_t h = 0;
                size_t end = n;
                for (size_t i = start; i < n; i++) {
                        size_t len = i - start + 1;
                        if (len > min) {
                                h = (h << 1) + ref_gear[p[i]];
                                if (!(h & (len <= avg ? mask_s : mask_l))) {
                                        end = i + 1;
                                        break;
                                }
                        }
                        if (len == max) {
                                end = i + 1;
                                break;
                        }
                }
                ends[n_ends++] = end;
                start = end;
        }
        return n_ends;
}

static void through_store(size_t avg, const uint8_t *p, size_t n, const size_t *ends, size_t n_ends,
                          const size_t *splits, size_t n_splits)
{
        struct kiln_error *err = NULL;
        char url[64];
        snprintf(url, sizeof(url), "objectstore+memory://?avg_chunk_size=%zu", avg);
        struct kiln_blob_service *svc;
        FUZZ_CHECK(kiln_blob_service_open(url, &svc, &err) == 0);
        struct kiln_blob_writer *w;
        FUZZ_CHECK(kiln_blob_open_write(svc, &w, &err) == 0);
        size_t pos = 0;
        for (size_t s = 0; pos < n; s++) {
                size_t k = s < n_splits ? KILN_MIN(splits[s], n - pos) : n - pos;
                FUZZ_CHECK(kiln_blob_writer_write(w, p + pos, k, &err) == 0);
                pos += k;
        }
        struct kiln_digest d, want;
        FUZZ_CHECK(kiln_blob_writer_close(w, &d, &err) == 0);
        kiln_blob_writer_free(w);
        kiln_digest_of(p, n, &want);
        FUZZ_CHECK(kiln_digest_eq(&d, &want));
        struct kiln_chunk *chunks;
        size_t n_chunks;
        FUZZ_CHECK(kiln_blob_chunks(svc, &d, &chunks, &n_chunks, &err) == 1);
        if (n_ends < 2) {
                FUZZ_CHECK(n_chunks == 0);
        } else {
                FUZZ_CHECK(n_chunks == n_ends);
                for (size_t i = 0, start = 0; i < n_ends; start = ends[i++]) {
                        kiln_digest_of(p + start, ends[i] - start, &want);
                        FUZZ_CHECK(kiln_digest_eq(&chunks[i].digest, &want));
                        FUZZ_CHECK(chunks[i].size == ends[i] - start);
                }
        }
        free(chunks);
        struct kiln_buf back = KILN_BUF_INIT;
        struct kiln_blob_reader *r;
        FUZZ_CHECK(kiln_blob_open_read(svc, &d, &r, &err) == 1);
        kiln_buf_reserve(&back, n + 1);
        for (;;) {
                ssize_t got =
                    kiln_blob_reader_read(r, back.data + back.len, n + 1 - back.len, &err);
                FUZZ_CHECK(got >= 0);
                if (got == 0)
                        break;
                back.len += (size_t)got;
        }
        FUZZ_CHECK(back.len == n && (n == 0 || !memcmp(back.data, p, n)));
        kiln_blob_reader_free(r);
        kiln_buf_done(&back);
        kiln_blob_service_free(svc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool init;
        if (!init) {
                ref_gear_build();
                init = true;
        }
        if (size < 3)
                return 0;
        unsigned shift = (data[0] >> 4) == 15 ? 12 + (data[0] & 0xf) % 11 : 12 + (data[0] & 3);
        size_t avg = (size_t)1 << shift;
        bool store = (data[0] & 0xc) == 0xc;
        uint8_t stretch = data[1];
        size_t n_splits = KILN_MIN((size_t)data[2] % 32, size - 3);
        static size_t splits[32];
        for (size_t i = 0; i < n_splits; i++) {
                uint8_t b = data[3 + i];
                /* 0, small, around the chunk sizes, and large. */
                splits[i] = b < 16 ? b : b < 128 ? (size_t)b * 97 : ((size_t)b - 127) << 10;
        }
        const uint8_t *in = data + 3 + n_splits;
        size_t n_in = size - 3 - n_splits;

        static uint8_t buf[DATA_MAX];
        const uint8_t *p = in;
        size_t n = n_in;
        if (stretch && n_in) {
                n = KILN_MIN(DATA_MAX, n_in * (1 + (size_t)(stretch & 0x7f) * 29));
                if (stretch & 0x80) {
                        uint64_t x = 0x9e3779b97f4a7c15ULL;
                        for (size_t i = 0; i < n_in; i++)
                                x = (x ^ in[i]) * 0x100000001b3ULL;
                        for (size_t i = 0; i < n; i++) {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                /* Runs of the input's bytes among random ones. */
                                buf[i] = (x >> 60) == 0 ? in[i % n_in] : (uint8_t)(x >> 24);
                        }
                } else {
                        for (size_t i = 0; i < n; i++)
                                buf[i] = in[i % n_in];
                }
                p = buf;
        }

        static size_t ends[CUTS_MAX], got[CUTS_MAX];
        size_t n_ends = ref_chunk(p, n, avg, ends), n_got = 0;

        struct kiln_fastcdc c;
        kiln_fastcdc_init(&c, avg);
        size_t pos = 0, since = 0;
        for (size_t s = 0; pos < n || s < n_splits; s++) {
                size_t want = s < n_splits ? KILN_MIN(splits[s], n - pos) : n - pos;
                size_t off = 0;
                do {
                        bool cut;
                        size_t k = kiln_fastcdc_next(&c, p + pos + off, want - off, &cut);
                        FUZZ_CHECK(k <= want - off);
                        FUZZ_CHECK(cut || k == want - off);
                        off += k;
                        since += k;
                        if (cut) {
                                FUZZ_CHECK(n_got < CUTS_MAX);
                                FUZZ_CHECK(since > 0);
                                got[n_got++] = pos + off;
                                since = 0;
                        }
                        FUZZ_CHECK(kiln_fastcdc_pending(&c) == since);
                } while (off < want);
                pos += want;
        }
        if (since)
                got[n_got++] = n;
        FUZZ_CHECK(n_got == n_ends);
        for (size_t i = 0; i < n_got; i++) {
                FUZZ_CHECK(got[i] == ends[i]);
                size_t len = got[i] - (i ? got[i - 1] : 0);
                FUZZ_CHECK(len > 0 && len <= 2 * avg);
                if (i + 1 < n_got)
                        FUZZ_CHECK(len > avg / 2);
        }
        FUZZ_CHECK(n_got ? got[n_got - 1] == n : n == 0);
        if (store && n <= 32 * 1024) /* slow: zstd, BLAKE3, copies */
                through_store(avg, p, n, ends, n_ends, splits, n_splits);
        return 0;
}
