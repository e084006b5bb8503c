/* Nix store paths (see include/kiln/nix/store_path.h). */
#include <stdio.h>

#include <kiln/nix/nixbase32.h>
#include <kiln/nix/store_path.h>

#include "quote.h"

static bool name_char_ok(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '+' || c == '-' || c == '.' || c == '_' || c == '?' || c == '=';
}

int kiln_nix_store_name_validate(const char *name, size_t len, struct kiln_error **err)
{
        if (len == 0)
                return kiln_error_set(err, EINVAL, "invalid store path name '': empty");
        _cleanup_free_ char *q = NULL;
        if (len > KILN_NIX_NAME_MAX) {
                q = kiln_nix_quote(name, len);
                return kiln_error_set(err, EINVAL,
                                      "invalid store path name '%s': longer than %d characters", q,
                                      KILN_NIX_NAME_MAX);
        }
        for (size_t i = 0; i < len; i++)
                if (!name_char_ok(name[i])) {
                        q = kiln_nix_quote(name, len);
                        _cleanup_free_ char *qc = kiln_nix_quote(name + i, 1);
                        return kiln_error_set(
                            err, EINVAL, "invalid store path name '%s': illegal character '%s'", q,
                            qc);
                }
        return 0;
}

int kiln_nix_store_path_parse_base(const char *base, size_t len, struct kiln_nix_store_path *ret,
                                   struct kiln_error **err)
{
        _cleanup_free_ char *q = NULL;
        if (len < KILN_NIX_HASH_PART_LEN + 2 || base[KILN_NIX_HASH_PART_LEN] != '-') {
                q = kiln_nix_quote(base, len);
                return kiln_error_set(err, EINVAL,
                                      "invalid store path '%s': not <32-character hash>-<name>", q);
        }
        struct kiln_nix_store_path p;
        struct kiln_error *e = NULL;
        int r = kiln_nixbase32_decode(base, KILN_NIX_HASH_PART_LEN, p.digest, sizeof(p.digest), &e);
        if (r >= 0)
                r = kiln_nix_store_name_validate(base + KILN_NIX_HASH_PART_LEN + 1,
                                                 len - KILN_NIX_HASH_PART_LEN - 1, &e);
        if (r < 0) {
                q = kiln_nix_quote(base, len);
                r = kiln_error_set(err, -r, "invalid store path '%s': %s", q, kiln_error_msg(e));
                kiln_error_free(e);
                return r;
        }
        memcpy(p.name, base + KILN_NIX_HASH_PART_LEN + 1, len - KILN_NIX_HASH_PART_LEN - 1);
        p.name[len - KILN_NIX_HASH_PART_LEN - 1] = '\0';
        *ret = p;
        return 0;
}

int kiln_nix_store_path_parse(const char *path, size_t len, struct kiln_nix_store_path *ret,
                              struct kiln_error **err)
{
        if (len <= KILN_NIX_STORE_DIR_LEN + 1 ||
            memcmp(path, KILN_NIX_STORE_DIR "/", KILN_NIX_STORE_DIR_LEN + 1) != 0 ||
            memchr(path + KILN_NIX_STORE_DIR_LEN + 1, '/', len - KILN_NIX_STORE_DIR_LEN - 1)) {
                _cleanup_free_ char *q = kiln_nix_quote(path, len);
                return kiln_error_set(err, EINVAL, "path '%s' is not in the Nix store", q);
        }
        /* The name's alphabet excludes '/', so a valid base is one component;
         * "." and ".." are too short to be one. */
        return kiln_nix_store_path_parse_base(path + KILN_NIX_STORE_DIR_LEN + 1,
                                              len - KILN_NIX_STORE_DIR_LEN - 1, ret, err);
}

char *kiln_nix_store_path_hash_part(const struct kiln_nix_store_path *p,
                                    char buf[KILN_NIX_HASH_PART_LEN + 1])
{
        kiln_nixbase32_encode(p->digest, sizeof(p->digest), buf);
        return buf;
}

char *kiln_nix_store_path_format(const struct kiln_nix_store_path *p, char buf[KILN_NIX_PATH_MAX])
{
        memcpy(buf, KILN_NIX_STORE_DIR "/", KILN_NIX_STORE_DIR_LEN + 1);
        char *o = buf + KILN_NIX_STORE_DIR_LEN + 1;
        o += kiln_nixbase32_encode(p->digest, sizeof(p->digest), o);
        *o++ = '-';
        size_t n = strlen(p->name);
        memcpy(o, p->name, n + 1);
        return buf;
}

char *kiln_nix_store_path_to_string(const struct kiln_nix_store_path *p)
{
        return kiln_strdup(KILN_NIX_STORE_PATH_STR(p));
}

int kiln_nix_store_path_cmp(const struct kiln_nix_store_path *a,
                            const struct kiln_nix_store_path *b)
{
        char ha[KILN_NIX_HASH_PART_LEN + 1], hb[KILN_NIX_HASH_PART_LEN + 1];
        int c = strcmp(kiln_nix_store_path_hash_part(a, ha), kiln_nix_store_path_hash_part(b, hb));
        return c ? c : strcmp(a->name, b->name);
}

int kiln_nix_make_store_path(const char *type, const struct kiln_nix_hash *hash, const char *name,
                             struct kiln_nix_store_path *ret, struct kiln_error **err)
{
        size_t len = strlen(name);
        int r = kiln_nix_store_name_validate(name, len, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *fp =
            kiln_asprintf("%s:%s:%s:%s", type, KILN_NIX_HASH_STR(hash, KILN_NIX_BASE16, true),
                          KILN_NIX_STORE_DIR, name);
        uint8_t h[32];
        kiln_nix_sha256(fp, strlen(fp), h);
        struct kiln_nix_store_path p = {{0}};
        for (size_t i = 0; i < sizeof(h); i++)
                p.digest[i % KILN_NIX_PATH_DIGEST] ^= h[i];
        memcpy(p.name, name, len + 1);
        *ret = p;
        return 0;
}

static int path_ptr_cmp(const void *a, const void *b)
{
        return kiln_nix_store_path_cmp(*(const struct kiln_nix_store_path *const *)a,
                                       *(const struct kiln_nix_store_path *const *)b);
}

/* "<type>:<ref1>:<ref2>…[:self]" with the references sorted and unique. */
static char *type_with_refs(const char *type, const struct kiln_nix_store_path *refs, size_t n,
                            bool self)
{
        _cleanup_free_ const struct kiln_nix_store_path **sorted =
            kiln_calloc(n ? n : 1, sizeof(*sorted));
        for (size_t i = 0; i < n; i++)
                sorted[i] = &refs[i];
        qsort(sorted, n, sizeof(*sorted), path_ptr_cmp);
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_buf_append(&b, type, strlen(type));
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && kiln_nix_store_path_cmp(sorted[i - 1], sorted[i]) == 0)
                        continue;
                char *s = KILN_NIX_STORE_PATH_STR(sorted[i]);
                kiln_buf_append_byte(&b, ':');
                kiln_buf_append(&b, s, strlen(s));
        }
        if (self)
                kiln_buf_append(&b, ":self", 5);
        kiln_buf_append_byte(&b, 0);
        return (char *)kiln_buf_steal(&b, NULL);
}

int kiln_nix_make_text_path(const char *name, const uint8_t sha256[32],
                            const struct kiln_nix_store_path *refs, size_t n_refs,
                            struct kiln_nix_store_path *ret, struct kiln_error **err)
{
        struct kiln_nix_hash h = {.algo = KILN_NIX_HASH_SHA256};
        memcpy(h.b, sha256, 32);
        _cleanup_free_ char *type = type_with_refs("text", refs, n_refs, false);
        return kiln_nix_make_store_path(type, &h, name, ret, err);
}

int kiln_nix_make_fixed_output_path(enum kiln_nix_ingestion method,
                                    const struct kiln_nix_hash *hash, const char *name,
                                    const struct kiln_nix_store_path *refs, size_t n_refs,
                                    bool self_reference, struct kiln_nix_store_path *ret,
                                    struct kiln_error **err)
{
        if (method == KILN_NIX_RECURSIVE && hash->algo == KILN_NIX_HASH_SHA256) {
                _cleanup_free_ char *type = type_with_refs("source", refs, n_refs, self_reference);
                return kiln_nix_make_store_path(type, hash, name, ret, err);
        }
        if (n_refs > 0 || self_reference)
                return kiln_error_set(err, EINVAL,
                                      "fixed-output path '%s': only recursive sha256 paths can "
                                      "have references",
                                      name);
        _cleanup_free_ char *inner =
            kiln_asprintf("fixed:out:%s%s:", method == KILN_NIX_RECURSIVE ? "r:" : "",
                          KILN_NIX_HASH_STR(hash, KILN_NIX_BASE16, true));
        struct kiln_nix_hash h;
        kiln_nix_hash_of(KILN_NIX_HASH_SHA256, inner, strlen(inner), &h);
        return kiln_nix_make_store_path("output:out", &h, name, ret, err);
}

char *kiln_nix_output_path_name(const char *drv_name, const char *output)
{
        if (!strcmp(output, "out"))
                return kiln_strdup(drv_name);
        return kiln_asprintf("%s-%s", drv_name, output);
}

int kiln_nix_make_output_path(const char *output, const uint8_t sha256[32], const char *drv_name,
                              struct kiln_nix_store_path *ret, struct kiln_error **err)
{
        struct kiln_nix_hash h = {.algo = KILN_NIX_HASH_SHA256};
        memcpy(h.b, sha256, 32);
        _cleanup_free_ char *type = kiln_asprintf("output:%s", output);
        _cleanup_free_ char *name = kiln_nix_output_path_name(drv_name, output);
        return kiln_nix_make_store_path(type, &h, name, ret, err);
}
