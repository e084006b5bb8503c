/* Quoting untrusted strings for error messages. */
#include "quote.h"

#define QUOTE_MAX 64

char *kiln_nix_quote(const void *s, size_t len)
{
        static const char hex[] = "0123456789abcdef";
        const uint8_t *p = s;
        size_t n = KILN_MIN(len, QUOTE_MAX);
        char *out = kiln_malloc(n * 4 + 4);
        char *o = out;
        for (size_t i = 0; i < n; i++) {
                uint8_t c = p[i];
                if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
                        *o++ = (char)c;
                } else {
                        *o++ = '\\';
                        *o++ = 'x';
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 15];
                }
        }
        if (n < len) {
                memcpy(o, "...", 3);
                o += 3;
        }
        *o = '\0';
        return out;
}
