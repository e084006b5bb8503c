/* Differential BLAKE3: every SIMD level this CPU runs, fed the same bytes in
 * input-chosen splits, against the portable reference in one piece. */
#include <kiln/blake3/blake3.h>

#include "fuzz.h"

static void digest_at(enum kiln_blake3_level level, const uint8_t *p, size_t n,
                      const uint8_t *splits, size_t nsplits, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        FUZZ_CHECK(kiln_blake3_force_level(level) == 0);
        struct kiln_blake3 h;
        kiln_blake3_init(&h);
        size_t pos = 0;
        for (size_t i = 0; i < nsplits && pos < n; i++) {
                /* Split lengths around the kernels' widths (up to 16 chunks of 1 KiB). */
                size_t k = KILN_MIN(n - pos, (size_t)splits[i] * 67);
                kiln_blake3_update(&h, p + pos, k);
                pos += k;
        }
        kiln_blake3_update(&h, p + pos, n - pos);
        kiln_blake3_final(&h, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 2)
                return 0;
        size_t nsplits = KILN_MIN((size_t)data[0] % 16, size - 1);
        const uint8_t *splits = data + 1, *p = data + 1 + nsplits;
        size_t n = size - 1 - nsplits;
        /* Also past one 16-chunk batch: the input repeated to a length it picks. */
        static uint8_t big[40 * 1024];
        size_t bign = 0;
        if (n && (data[0] & 0x80)) {
                bign = KILN_MIN(sizeof(big), n * (1 + (size_t)data[1] * 13));
                for (size_t i = 0; i < bign; i++)
                        big[i] = p[i % n];
        }
        uint8_t ref[KILN_BLAKE3_OUT_LEN], got[KILN_BLAKE3_OUT_LEN];
        for (int pass = 0; pass < 2; pass++) {
                const uint8_t *in = pass ? big : p;
                size_t len = pass ? bign : n;
                if (pass && !bign)
                        break;
                digest_at(KILN_BLAKE3_PORTABLE, in, len, NULL, 0, ref);
                for (int l = KILN_BLAKE3_PORTABLE; l <= KILN_BLAKE3_LEVEL_MAX; l++) {
                        if (kiln_blake3_force_level((enum kiln_blake3_level)l) < 0)
                                continue; /* not built or not on this CPU */
                        digest_at((enum kiln_blake3_level)l, in, len, splits, nsplits, got);
                        FUZZ_CHECK(!memcmp(ref, got, sizeof(ref)));
                }
        }
        return 0;
}
