/* Nix hashes: OpenSSL's EVP digests, and the text forms of Nix's hash.cc. */
#include <assert.h>
#include <pthread.h>

#include <openssl/evp.h>

#include <kiln/util/base64.h>
#include <kiln/nix/hash.h>
#include <kiln/nix/nixbase32.h>

#include "quote.h"

static const struct {
        const char *name;
        const char *ossl; /* OpenSSL's name for EVP_MD_fetch */
        size_t size;
} algos[] = {
    [KILN_NIX_HASH_NONE] = {"none", NULL, 0},
    [KILN_NIX_HASH_MD5] = {"md5", "MD5", 16},
    [KILN_NIX_HASH_SHA1] = {"sha1", "SHA1", 20},
    [KILN_NIX_HASH_SHA256] = {"sha256", "SHA256", 32},
    [KILN_NIX_HASH_SHA512] = {"sha512", "SHA512", 64},
};

/* Fetched once: an implicit fetch by EVP_sha256() at every init costs a
 * provider lookup, which shows when hashing many short strings. */
static EVP_MD *fetched[KILN_ARRAY_SIZE(algos)];
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_all(void)
{
        for (size_t i = 1; i < KILN_ARRAY_SIZE(algos); i++) {
                fetched[i] = EVP_MD_fetch(NULL, algos[i].ossl, NULL);
                /* Without the default provider nothing here can work. */
                if (!fetched[i])
                        abort();
        }
}

static const EVP_MD *md_of(enum kiln_nix_hash_algo algo)
{
        pthread_once(&fetch_once, fetch_all);
        assert(algo > KILN_NIX_HASH_NONE && algo < KILN_ARRAY_SIZE(algos));
        return fetched[algo];
}

static bool algo_valid(enum kiln_nix_hash_algo algo)
{
        return algo > KILN_NIX_HASH_NONE && (size_t)algo < KILN_ARRAY_SIZE(algos);
}

size_t kiln_nix_hash_algo_size(enum kiln_nix_hash_algo algo)
{
        return algo_valid(algo) ? algos[algo].size : 0;
}

const char *kiln_nix_hash_algo_name(enum kiln_nix_hash_algo algo)
{
        return algo_valid(algo) ? algos[algo].name : "none";
}

int kiln_nix_hash_algo_parse(const char *s, size_t len, enum kiln_nix_hash_algo *ret,
                             struct kiln_error **err)
{
        for (size_t i = 1; i < KILN_ARRAY_SIZE(algos); i++)
                if (strlen(algos[i].name) == len && memcmp(algos[i].name, s, len) == 0) {
                        *ret = (enum kiln_nix_hash_algo)i;
                        return 0;
                }
        _cleanup_free_ char *q = kiln_nix_quote(s, len);
        return kiln_error_set(err, EINVAL, "unknown hash algorithm '%s'", q);
}

void kiln_nix_hasher_init(struct kiln_nix_hasher *h, enum kiln_nix_hash_algo algo)
{
        h->algo = algo;
        h->ctx = EVP_MD_CTX_new();
        if (!h->ctx || !EVP_DigestInit_ex2(h->ctx, md_of(algo), NULL))
                abort();
}

void kiln_nix_hasher_update(struct kiln_nix_hasher *h, const void *p, size_t n)
{
        if (n && !EVP_DigestUpdate(h->ctx, p, n))
                abort();
}

void kiln_nix_hasher_final(struct kiln_nix_hasher *h, struct kiln_nix_hash *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->algo = h->algo;
        if (!EVP_DigestFinal_ex(h->ctx, ret->b, NULL) ||
            !EVP_DigestInit_ex2(h->ctx, md_of(h->algo), NULL))
                abort();
}

void kiln_nix_hasher_done(struct kiln_nix_hasher *h)
{
        EVP_MD_CTX_free(h->ctx);
        h->ctx = NULL;
}

void kiln_nix_hash_of(enum kiln_nix_hash_algo algo, const void *p, size_t n,
                      struct kiln_nix_hash *ret)
{
        memset(ret, 0, sizeof(*ret));
        ret->algo = algo;
        if (!EVP_Digest(p, n, ret->b, NULL, md_of(algo), NULL))
                abort();
}

void kiln_nix_sha256(const void *p, size_t n, uint8_t ret[32])
{
        if (!EVP_Digest(p, n, ret, NULL, md_of(KILN_NIX_HASH_SHA256), NULL))
                abort();
}

char *kiln_nix_hash_format(const struct kiln_nix_hash *h, enum kiln_nix_hash_format format,
                           bool typed, char buf[KILN_NIX_HASH_STR_MAX])
{
        static const char hex[] = "0123456789abcdef";
        size_t size = kiln_nix_hash_algo_size(h->algo);
        char *o = buf;
        if (typed || format == KILN_NIX_SRI) {
                const char *name = kiln_nix_hash_algo_name(h->algo);
                size_t n = strlen(name);
                memcpy(o, name, n);
                o += n;
                *o++ = format == KILN_NIX_SRI ? '-' : ':';
        }
        switch (format) {
        case KILN_NIX_BASE16:
                for (size_t i = 0; i < size; i++) {
                        *o++ = hex[h->b[i] >> 4];
                        *o++ = hex[h->b[i] & 15];
                }
                *o = '\0';
                break;
        case KILN_NIX_NIXBASE32:
                kiln_nixbase32_encode(h->b, size, o);
                break;
        case KILN_NIX_BASE64:
        case KILN_NIX_SRI:
                kiln_base64_encode(h->b, size, o);
                break;
        }
        return buf;
}

char *kiln_nix_hash_to_string(const struct kiln_nix_hash *h, enum kiln_nix_hash_format format,
                              bool typed)
{
        char buf[KILN_NIX_HASH_STR_MAX];
        return kiln_strdup(kiln_nix_hash_format(h, format, typed, buf));
}

static int bad_hash(struct kiln_error **err, const char *s, size_t len, const char *what,
                    const char *detail)
{
        _cleanup_free_ char *q = kiln_nix_quote(s, len);
        return kiln_error_set(err, EINVAL, "invalid hash '%s': %s%s", q, what, detail);
}

static int b64_digit(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Standard-alphabet base64 of exactly `size` bytes, padding optional (Nix
 * writes it, and accepts it missing). Unused low bits must be zero, so each
 * hash has one encoding. */
static int decode_b64(const char *s, size_t len, uint8_t *out, size_t size)
{
        size_t chars = (size * 8 + 5) / 6, padded = kiln_base64_len(size);
        if (len != chars && len != padded)
                return -1;
        for (size_t i = chars; i < len; i++)
                if (s[i] != '=')
                        return -1;
        uint32_t acc = 0;
        unsigned bits = 0;
        size_t o = 0;
        for (size_t i = 0; i < chars; i++) {
                int d = b64_digit(s[i]);
                if (d < 0)
                        return -1;
                acc = acc << 6 | (uint32_t)d;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t)(acc >> bits);
                }
        }
        if (acc & ((1u << bits) - 1))
                return -1;
        return 0;
}

int kiln_nix_hash_parse_bare(const char *s, size_t len, enum kiln_nix_hash_algo algo,
                             struct kiln_nix_hash *ret, struct kiln_error **err)
{
        size_t size = kiln_nix_hash_algo_size(algo);
        assert(size > 0);
        struct kiln_nix_hash h = {.algo = algo};

        if (len == size * 2) {
                for (size_t i = 0; i < size; i++) {
                        int hi = kiln_unhex(s[2 * i]), lo = kiln_unhex(s[2 * i + 1]);
                        if (hi < 0 || lo < 0) {
                                char c = hi < 0 ? s[2 * i] : s[2 * i + 1];
                                _cleanup_free_ char *qc = kiln_nix_quote(&c, 1);
                                _cleanup_free_ char *what = kiln_asprintf("'%s'", qc);
                                return bad_hash(err, s, len, "invalid base16 digit ", what);
                        }
                        h.b[i] = (uint8_t)(hi << 4 | lo);
                }
        } else if (len == kiln_nixbase32_len(size)) {
                struct kiln_error *e = NULL;
                if (kiln_nixbase32_decode(s, len, h.b, size, &e) < 0) {
                        int r = bad_hash(err, s, len, "", kiln_error_msg(e));
                        kiln_error_free(e);
                        return r;
                }
        } else if (len == kiln_base64_len(size)) {
                if (decode_b64(s, len, h.b, size) < 0)
                        return bad_hash(err, s, len, "invalid base64", "");
        } else {
                return bad_hash(err, s, len, "wrong length for ", kiln_nix_hash_algo_name(algo));
        }
        *ret = h;
        return 0;
}

static int parse_sri_rest(const char *s, const char *rest, enum kiln_nix_hash_algo algo,
                          struct kiln_nix_hash *ret, struct kiln_error **err)
{
        size_t size = kiln_nix_hash_algo_size(algo), len = strlen(rest);
        struct kiln_nix_hash h = {.algo = algo};
        if (len != kiln_base64_len(size) && len != (size * 8 + 5) / 6)
                return bad_hash(err, s, strlen(s), "wrong length for SRI ",
                                kiln_nix_hash_algo_name(algo));
        if (decode_b64(rest, len, h.b, size) < 0)
                return bad_hash(err, s, strlen(s), "invalid base64", "");
        *ret = h;
        return 0;
}

int kiln_nix_hash_parse_sri(const char *s, struct kiln_nix_hash *ret, struct kiln_error **err)
{
        const char *dash = strchr(s, '-');
        if (!dash)
                return bad_hash(err, s, strlen(s), "not an SRI hash", "");
        enum kiln_nix_hash_algo algo;
        int r = kiln_nix_hash_algo_parse(s, (size_t)(dash - s), &algo, err);
        if (r < 0)
                return r;
        return parse_sri_rest(s, dash + 1, algo, ret, err);
}

int kiln_nix_hash_parse(const char *s, enum kiln_nix_hash_algo algo, struct kiln_nix_hash *ret,
                        struct kiln_error **err)
{
        /* As Nix does: a ':' makes a prefix, else a '-' makes SRI (neither
         * character occurs in hex, nixbase32 or base64). */
        const char *colon = strchr(s, ':'), *dash = colon ? NULL : strchr(s, '-');
        const char *sep = colon ? colon : dash;
        if (!sep) {
                if (algo == KILN_NIX_HASH_NONE)
                        return bad_hash(err, s, strlen(s), "no hash algorithm given", "");
                return kiln_nix_hash_parse_bare(s, strlen(s), algo, ret, err);
        }
        enum kiln_nix_hash_algo given;
        int r = kiln_nix_hash_algo_parse(s, (size_t)(sep - s), &given, err);
        if (r < 0) {
                _cleanup_free_ char *q = kiln_nix_quote(s, strlen(s));
                return kiln_error_prefix(err, r, "invalid hash '%s'", q);
        }
        if (algo != KILN_NIX_HASH_NONE && given != algo)
                return bad_hash(err, s, strlen(s), "expected a hash of type ",
                                kiln_nix_hash_algo_name(algo));
        if (dash)
                return parse_sri_rest(s, dash + 1, given, ret, err);
        return kiln_nix_hash_parse_bare(sep + 1, strlen(sep + 1), given, ret, err);
}
