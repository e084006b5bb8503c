/* The hashes Nix uses (MD5, SHA-1, SHA-256, SHA-512, computed by OpenSSL's
 * libcrypto) and their textual forms: base16 (lowercase hex), nixbase32,
 * base64, SRI ("sha256-<base64>") and the "algo:" prefixed forms. Nothing here
 * keeps global state beyond a once-initialised table, so every function may
 * be called from any thread; a hasher is used by one thread at a time. */
#pragma once

#include <kiln/util/error.h>

enum kiln_nix_hash_algo {
        KILN_NIX_HASH_NONE = 0,
        KILN_NIX_HASH_MD5,
        KILN_NIX_HASH_SHA1,
        KILN_NIX_HASH_SHA256,
        KILN_NIX_HASH_SHA512,
};

#define KILN_NIX_HASH_MAX_SIZE 64

/* A digest and its algorithm; bytes past the algorithm's size are zero. */
struct kiln_nix_hash {
        enum kiln_nix_hash_algo algo;
        uint8_t b[KILN_NIX_HASH_MAX_SIZE];
};

/* Digest size in bytes of algo (16, 20, 32, 64); 0 for NONE. */
KILN_PUBLIC size_t kiln_nix_hash_algo_size(enum kiln_nix_hash_algo algo);
/* "md5", "sha1", "sha256", "sha512" (static strings); "none" for NONE. */
KILN_PUBLIC const char *kiln_nix_hash_algo_name(enum kiln_nix_hash_algo algo);
/* Parses an algorithm name (exactly as Nix spells it, lowercase).
 * -EINVAL "unknown hash algorithm 'x'". */
KILN_PUBLIC int kiln_nix_hash_algo_parse(const char *s, size_t len, enum kiln_nix_hash_algo *ret,
                                         struct kiln_error **err);

static inline bool kiln_nix_hash_eq(const struct kiln_nix_hash *a, const struct kiln_nix_hash *b)
{
        return a->algo == b->algo && memcmp(a->b, b->b, kiln_nix_hash_algo_size(a->algo)) == 0;
}

/* A streaming hash context, embedded by its user: init, update any number of
 * times, final (which resets it for reuse with the same algorithm), done. */
struct evp_md_ctx_st;
struct kiln_nix_hasher {
        enum kiln_nix_hash_algo algo;
        struct evp_md_ctx_st *ctx; /* OpenSSL's EVP_MD_CTX */
};

/* Starts a hash; algo must not be NONE. Cannot fail (out of memory aborts). */
KILN_PUBLIC void kiln_nix_hasher_init(struct kiln_nix_hasher *h, enum kiln_nix_hash_algo algo);
KILN_PUBLIC void kiln_nix_hasher_update(struct kiln_nix_hasher *h, const void *p, size_t n);
/* Writes the digest of everything fed since init (or the last final) and
 * starts over. */
KILN_PUBLIC void kiln_nix_hasher_final(struct kiln_nix_hasher *h, struct kiln_nix_hash *ret);
/* Releases the context; a zeroed or already-done hasher is fine. */
KILN_PUBLIC void kiln_nix_hasher_done(struct kiln_nix_hasher *h);

/* The digest of one byte string. */
KILN_PUBLIC void kiln_nix_hash_of(enum kiln_nix_hash_algo algo, const void *p, size_t n,
                                  struct kiln_nix_hash *ret);
/* SHA-256 of a byte string as 32 raw bytes. */
KILN_PUBLIC void kiln_nix_sha256(const void *p, size_t n, uint8_t ret[32]);

enum kiln_nix_hash_format {
        KILN_NIX_BASE16,    /* lowercase hex */
        KILN_NIX_NIXBASE32, /* Nix's base32 */
        KILN_NIX_BASE64,    /* RFC 4648 standard alphabet, padded */
        KILN_NIX_SRI,       /* "<algo>-<base64>": always typed */
};

/* Longest text form: "sha512:" and 128 hex digits, plus the NUL. */
#define KILN_NIX_HASH_STR_MAX 136

/* Writes the text of h in `format` and a NUL into buf, prefixed with
 * "<algo>:" when `typed` (SRI always carries its own "<algo>-"); returns buf. */
KILN_PUBLIC char *kiln_nix_hash_format(const struct kiln_nix_hash *h,
                                       enum kiln_nix_hash_format format, bool typed,
                                       char buf[KILN_NIX_HASH_STR_MAX]);
/* The same in a buffer that lives until the end of the caller's block. */
#define KILN_NIX_HASH_STR(h, format, typed)                                                        \
        kiln_nix_hash_format((h), (format), (typed), (char[KILN_NIX_HASH_STR_MAX]){0})
/* Heap string of the text of h (caller frees). */
KILN_PUBLIC char *kiln_nix_hash_to_string(const struct kiln_nix_hash *h,
                                          enum kiln_nix_hash_format format, bool typed);

/* Parses a hash of a known algorithm given without any prefix, telling the
 * encoding by its length as Nix does (hex, nixbase32, then base64; Nix's
 * Hash::parseNonSRIUnprefixed). -EINVAL naming the input and what is wrong:
 * "invalid hash 'x': wrong length for sha256", "… invalid base16 digit 'g'",
 * "… invalid nixbase32 character 'e'", "… invalid base64". */
KILN_PUBLIC int kiln_nix_hash_parse_bare(const char *s, size_t len, enum kiln_nix_hash_algo algo,
                                         struct kiln_nix_hash *ret, struct kiln_error **err);
/* Parses any form Nix accepts where the algorithm may be known from context
 * (Hash::parseAny): "<algo>:<hex|nixbase32|base64>", SRI "<algo>-<base64>",
 * or a bare hash when `algo` is not NONE. A prefix and a known `algo` must
 * agree ("invalid hash 'x': expected a sha256 hash"); with neither, -EINVAL
 * "invalid hash 'x': no hash algorithm given". */
KILN_PUBLIC int kiln_nix_hash_parse(const char *s, enum kiln_nix_hash_algo algo,
                                    struct kiln_nix_hash *ret, struct kiln_error **err);
/* Parses only the SRI form "<algo>-<base64>". */
KILN_PUBLIC int kiln_nix_hash_parse_sri(const char *s, struct kiln_nix_hash *ret,
                                        struct kiln_error **err);
