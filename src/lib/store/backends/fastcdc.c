/* FastCDC 2020 with normalized chunking; see fastcdc.h for the parameters and
 * the gear table. */
#include <assert.h>
#include <pthread.h>

#include "fastcdc.h"

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static void gear_build(void)
{
        uint64_t state = 0x6b696c6e63646331ULL; /* "kilncdc1" */
        for (size_t i = 0; i < 256; i++) {
                state += 0x9e3779b97f4a7c15ULL;
                uint64_t z = state;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                gear[i] = z ^ (z >> 31);
        }
}

uint64_t kiln_fastcdc_gear(uint8_t i)
{
        pthread_once(&gear_once, gear_build);
        return gear[i];
}

/* The top `bits` bits of a 64-bit word. */
static uint64_t top_mask(unsigned bits)
{
        return ~0ULL << (64 - bits);
}

void kiln_fastcdc_init(struct kiln_fastcdc *c, size_t avg)
{
        assert(avg >= KILN_FASTCDC_AVG_MIN && avg <= KILN_FASTCDC_AVG_MAX);
        assert((avg & (avg - 1)) == 0);
        pthread_once(&gear_once, gear_build);
        unsigned bits = (unsigned)__builtin_ctzll(avg);
        *c = (struct kiln_fastcdc){
                .min = avg / 2,
                .avg = avg,
                .max = avg * 2,
                .mask_s = top_mask(bits + 1),
                .mask_l = top_mask(bits - 1),
        };
}

/* Rolls h over p[i..end) and stops after the first byte whose hash has no bit
 * of mask set. Returns the index after that byte, or end. */
static size_t roll(uint64_t *h, uint64_t mask, const uint8_t *p, size_t i, size_t end,
                   bool *found)
{
        uint64_t x = *h;
        for (; i < end; i++) {
                x = (x << 1) + gear[p[i]];
                if (!(x & mask)) {
                        *h = x;
                        *found = true;
                        return i + 1;
                }
        }
        *h = x;
        return end;
}

size_t kiln_fastcdc_next(struct kiln_fastcdc *c, const uint8_t *p, size_t n, bool *ret_cut)
{
        size_t i = 0;
        bool found = false;

        /* Cut-point skipping: the first min bytes are never hashed. */
        if (c->len < c->min) {
                size_t skip = KILN_MIN(n, c->min - c->len);
                c->len += skip;
                i = skip;
        }
        if (i < n && c->len < c->avg) {
                size_t end = i + KILN_MIN(n - i, c->avg - c->len);
                size_t j = roll(&c->hash, c->mask_s, p, i, end, &found);
                c->len += j - i;
                i = j;
        }
        if (!found && i < n && c->len >= c->avg) {
                size_t end = i + KILN_MIN(n - i, c->max - c->len);
                size_t j = roll(&c->hash, c->mask_l, p, i, end, &found);
                c->len += j - i;
                i = j;
        }
        if (found || c->len == c->max) {
                kiln_fastcdc_reset(c);
                *ret_cut = true;
                return i;
        }
        *ret_cut = false;
        return i;
}
