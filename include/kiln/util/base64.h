/* Base64 (RFC 4648) and base32 encodings used by castore display forms, the
 * proto3 JSON mapping and build scratch names. */
#pragma once

#include <kiln/util/util.h>

/* Length of the padded standard base64 encoding of n bytes (without NUL). */
static inline size_t kiln_base64_len(size_t n)
{
        return (n + 2) / 3 * 4;
}
/* Writes the padded standard base64 of `in` plus a NUL into out (size at
 * least kiln_base64_len(n) + 1); returns the length written without NUL. */
KILN_PUBLIC size_t kiln_base64_encode(const void *in, size_t n, char *out);
/* Heap-allocated padded standard base64 string. */
KILN_PUBLIC char *kiln_base64_encode_alloc(const void *in, size_t n);
/* Decodes standard or URL-safe base64, padding optional, into a new buffer.
 * Returns 0, or -EINVAL on a character outside the alphabet, misplaced
 * padding or a length that cannot be base64 (*ret untouched). */
KILN_PUBLIC int kiln_base64_decode(const char *in, size_t inlen, uint8_t **ret, size_t *ret_len);

/* RFC 4648 base32, uppercase, '='-padded. out needs (n+4)/5*8 + 1 bytes. */
KILN_PUBLIC size_t kiln_base32_encode(const void *in, size_t n, char *out);
