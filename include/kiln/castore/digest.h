/* castore digests: exactly 32 bytes of BLAKE3 output. */
#pragma once

#include <kiln/util/error.h>

#define KILN_DIGEST_LEN 32
/* "b3:" + 44 base64 characters + NUL */
#define KILN_DIGEST_B64_BUFSZ 48
#define KILN_DIGEST_HEX_BUFSZ 65

struct kiln_digest {
        uint8_t b[KILN_DIGEST_LEN];
};

/* BLAKE3 of the empty string, which is also the digest of the empty Directory. */
KILN_PUBLIC extern const struct kiln_digest kiln_digest_empty;

static inline bool kiln_digest_eq(const struct kiln_digest *a, const struct kiln_digest *b)
{
        return memcmp(a->b, b->b, KILN_DIGEST_LEN) == 0;
}

static inline int kiln_digest_cmp(const struct kiln_digest *a, const struct kiln_digest *b)
{
        return memcmp(a->b, b->b, KILN_DIGEST_LEN);
}

/* BLAKE3 of a byte string. */
KILN_PUBLIC void kiln_digest_of(const void *data, size_t len, struct kiln_digest *ret);

/* Display form "b3:<standard base64>" into buf; returns buf. */
KILN_PUBLIC char *kiln_digest_to_b64(const struct kiln_digest *d, char buf[KILN_DIGEST_B64_BUFSZ]);
/* Lowercase hex into buf; returns buf. */
KILN_PUBLIC char *kiln_digest_to_hex(const struct kiln_digest *d, char buf[KILN_DIGEST_HEX_BUFSZ]);

/* Takes a wire digest field: -EINVAL "invalid digest length: N" unless len is 32. */
KILN_PUBLIC int kiln_digest_from_bytes(const void *p, size_t len, struct kiln_digest *ret,
                                       struct kiln_error **err);

/* Parses "b3:<base64>" (standard or URL-safe alphabet, padding optional),
 * "blake3-<base64>" or 64 hex digits. -EINVAL with a message naming what is
 * wrong (prefix, alphabet, length). */
KILN_PUBLIC int kiln_digest_parse(const char *s, struct kiln_digest *ret, struct kiln_error **err);

/* Debug-friendly short form for log lines and messages: the b3: form.
 * Uses a per-call buffer supplied by the macro's caller scope. */
#define KILN_DIGEST_B64(d) kiln_digest_to_b64((d), (char[KILN_DIGEST_B64_BUFSZ]){0})
#define KILN_DIGEST_HEX(d) kiln_digest_to_hex((d), (char[KILN_DIGEST_HEX_BUFSZ]){0})
