/* nixbase32 (see include/kiln/nix/nixbase32.h). The 5-bit group k of the
 * string (counting from its last character, k = 0) holds bits 5k..5k+4 of the
 * byte string read as a little-endian number. */
#include <kiln/nix/nixbase32.h>

#include "quote.h"

static const char alphabet[] = "0123456789abcdfghijklmnpqrsvwxyz";

/* Value of each character, or -1. */
static const int8_t values[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['f'] = 15, ['g'] = 16,
    ['h'] = 17, ['i'] = 18, ['j'] = 19, ['k'] = 20, ['l'] = 21, ['m'] = 22, ['n'] = 23, ['p'] = 24,
    ['q'] = 25, ['r'] = 26, ['s'] = 27, ['v'] = 28, ['w'] = 29, ['x'] = 30, ['y'] = 31, ['z'] = 32,
};
/* (stored off by one so that the zero-initialised rest means "invalid") */

bool kiln_nixbase32_is_char(char c)
{
        return values[(uint8_t)c] != 0;
}

size_t kiln_nixbase32_encode(const void *in, size_t n, char *out)
{
        const uint8_t *p = in;
        size_t len = kiln_nixbase32_len(n);
        for (size_t k = 0; k < len; k++) {
                size_t b = k * 5, i = b / 8;
                unsigned j = b % 8;
                unsigned v = p[i] >> j;
                if (i + 1 < n)
                        v |= (unsigned)p[i + 1] << (8 - j);
                out[len - 1 - k] = alphabet[v & 31];
        }
        out[len] = '\0';
        return len;
}

int kiln_nixbase32_decode(const char *s, size_t len, void *out, size_t n, struct kiln_error **err)
{
        uint8_t *o = out;
        if (len != kiln_nixbase32_len(n))
                return kiln_error_set(err, EINVAL,
                                      "wrong length: %zu nixbase32 characters, expected %zu", len,
                                      kiln_nixbase32_len(n));
        memset(o, 0, n);
        for (size_t k = 0; k < len; k++) {
                char c = s[len - 1 - k];
                int v = values[(uint8_t)c] - 1;
                if (v < 0) {
                        _cleanup_free_ char *q = kiln_nix_quote(&c, 1);
                        return kiln_error_set(err, EINVAL, "invalid nixbase32 character '%s'", q);
                }
                size_t b = k * 5, i = b / 8;
                unsigned j = b % 8;
                o[i] |= (uint8_t)(v << j);
                unsigned high = (unsigned)v >> (8 - j);
                if (i + 1 < n)
                        o[i + 1] |= (uint8_t)high;
                else if (high)
                        return kiln_error_set(err, EINVAL,
                                              "nixbase32 value does not fit in %zu bytes", n);
        }
        return 0;
}
