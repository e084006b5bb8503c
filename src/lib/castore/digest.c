/* Digest parsing and display. */
#include <ctype.h>
#include <stdio.h>

#include <kiln/util/base64.h>
#include <kiln/blake3/blake3.h>
#include <kiln/castore/digest.h>

const struct kiln_digest kiln_digest_empty = {{
        0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d,
        0xea, 0x36, 0xdc, 0xc9, 0x49, 0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1,
        0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f, 0x32, 0x62,
}};

void kiln_digest_of(const void *data, size_t len, struct kiln_digest *ret)
{
        kiln_blake3(data, len, ret->b);
}

char *kiln_digest_to_b64(const struct kiln_digest *d, char buf[KILN_DIGEST_B64_BUFSZ])
{
        memcpy(buf, "b3:", 3);
        kiln_base64_encode(d->b, KILN_DIGEST_LEN, buf + 3);
        return buf;
}

char *kiln_digest_to_hex(const struct kiln_digest *d, char buf[KILN_DIGEST_HEX_BUFSZ])
{
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < KILN_DIGEST_LEN; i++) {
                buf[2 * i] = hex[d->b[i] >> 4];
                buf[2 * i + 1] = hex[d->b[i] & 15];
        }
        buf[2 * KILN_DIGEST_LEN] = '\0';
        return buf;
}

int kiln_digest_from_bytes(const void *p, size_t len, struct kiln_digest *ret,
                           struct kiln_error **err)
{
        if (len != KILN_DIGEST_LEN)
                return kiln_error_set(err, EINVAL, "invalid digest length: %zu", len);
        memcpy(ret->b, p, KILN_DIGEST_LEN);
        return 0;
}

static int bad_digest(const char *s, const char *why, struct kiln_error **err)
{
        _cleanup_free_ char *q = kiln_quote(s, strlen(s), 128);
        return kiln_error_set(err, EINVAL, "invalid digest '%s': %s", q, why);
}

int kiln_digest_parse(const char *s, struct kiln_digest *ret, struct kiln_error **err)
{
        const char *b64 = NULL;
        if (!strncmp(s, "b3:", 3))
                b64 = s + 3;
        else if (!strncmp(s, "blake3-", 7))
                b64 = s + 7;

        if (b64) {
                _cleanup_free_ uint8_t *raw = NULL;
                size_t n;
                if (kiln_base64_decode(b64, strlen(b64), &raw, &n) < 0)
                        return bad_digest(s, "not valid base64", err);
                if (n != KILN_DIGEST_LEN) {
                        char why[64];
                        snprintf(why, sizeof(why), "%zu bytes, expected 32", n);
                        return bad_digest(s, why, err);
                }
                memcpy(ret->b, raw, KILN_DIGEST_LEN);
                return 0;
        }

        size_t len = strlen(s);
        if (len == 2 * KILN_DIGEST_LEN) {
                struct kiln_digest d;
                for (size_t i = 0; i < KILN_DIGEST_LEN; i++) {
                        int hi = kiln_unhex(s[2 * i]), lo = kiln_unhex(s[2 * i + 1]);
                        if (hi < 0 || lo < 0)
                                return bad_digest(s, "not hex", err);
                        d.b[i] = (uint8_t)(hi << 4 | lo);
                }
                *ret = d;
                return 0;
        }
        return bad_digest(s, "expected b3:<base64> or 64 hex digits", err);
}
