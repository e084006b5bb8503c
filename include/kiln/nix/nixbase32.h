/* nixbase32: Nix's own base32 (alphabet 0123456789abcdfghijklmnpqrsvwxyz, no
 * padding), written from the highest 5-bit group of the byte string down, so
 * that it is not RFC 4648 base32 read with another alphabet. Pure
 * functions, safe from any thread. */
#pragma once

#include <kiln/util/error.h>

/* Characters in the encoding of n bytes: ceil(8n / 5) (20 → 32, 32 → 52). */
static inline size_t kiln_nixbase32_len(size_t n)
{
        return (n * 8 + 4) / 5;
}

/* True for a character of the alphabet. */
KILN_PUBLIC bool kiln_nixbase32_is_char(char c);

/* Writes the kiln_nixbase32_len(n) characters of the encoding of `in` and a
 * NUL into out; returns the length without the NUL. */
KILN_PUBLIC size_t kiln_nixbase32_encode(const void *in, size_t n, char *out);

/* Decodes exactly n bytes from the len characters at s into out. -EINVAL
 * when len is not kiln_nixbase32_len(n) ("wrong length"), for a character
 * outside the alphabet, or when the value does not fit in n bytes (a
 * non-canonical encoding, as Nix rejects it); out is then undefined. */
KILN_PUBLIC int kiln_nixbase32_decode(const char *s, size_t len, void *out, size_t n,
                                      struct kiln_error **err);
