/* RFC 4648 base64 (standard alphabet out, standard or URL-safe in) and base32. */
#include <kiln/util/base64.h>

static const char b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t kiln_base64_encode(const void *in, size_t n, char *out)
{
        const uint8_t *p = in;
        char *o = out;
        size_t i = 0;
        for (; i + 3 <= n; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
                *o++ = b64_alphabet[v >> 18];
                *o++ = b64_alphabet[(v >> 12) & 63];
                *o++ = b64_alphabet[(v >> 6) & 63];
                *o++ = b64_alphabet[v & 63];
        }
        if (n - i == 1) {
                uint32_t v = (uint32_t)p[i] << 16;
                *o++ = b64_alphabet[v >> 18];
                *o++ = b64_alphabet[(v >> 12) & 63];
                *o++ = '=';
                *o++ = '=';
        } else if (n - i == 2) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
                *o++ = b64_alphabet[v >> 18];
                *o++ = b64_alphabet[(v >> 12) & 63];
                *o++ = b64_alphabet[(v >> 6) & 63];
                *o++ = '=';
        }
        *o = '\0';
        return (size_t)(o - out);
}

char *kiln_base64_encode_alloc(const void *in, size_t n)
{
        char *out = kiln_malloc(kiln_base64_len(n) + 1);
        kiln_base64_encode(in, n, out);
        return out;
}

static int b64_value(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

int kiln_base64_decode(const char *in, size_t inlen, uint8_t **ret, size_t *ret_len)
{
        size_t n = inlen;
        /* Padding is optional, but if present it completes a 4-character group. */
        if (n > 0 && in[n - 1] == '=') {
                if (n % 4 != 0)
                        return -EINVAL;
                n--;
                if (n > 0 && in[n - 1] == '=')
                        n--;
        }
        if (n % 4 == 1)
                return -EINVAL;
        uint8_t *out = kiln_malloc(n / 4 * 3 + 3);
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
                int v = b64_value(in[i]);
                if (v < 0) {
                        free(out);
                        return -EINVAL;
                }
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t)(acc >> bits);
                }
        }
        /* Leftover bits must be zero in a canonical encoding; accept but ignore. */
        *ret = out;
        *ret_len = o;
        return 0;
}

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

size_t kiln_base32_encode(const void *in, size_t n, char *out)
{
        const uint8_t *p = in;
        char *o = out;
        uint64_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
                acc = acc << 8 | p[i];
                bits += 8;
                while (bits >= 5) {
                        bits -= 5;
                        *o++ = b32_alphabet[(acc >> bits) & 31];
                }
        }
        if (bits > 0)
                *o++ = b32_alphabet[(acc << (5 - bits)) & 31];
        while ((o - out) % 8 != 0)
                *o++ = '=';
        *o = '\0';
        return (size_t)(o - out);
}
