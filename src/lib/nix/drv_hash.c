/* hashDerivationModulo and the paths derived from it (Nix 2.8's
 * derivations.cc and primops.cc derivationStrict).
 *
 * The hash of a regular derivation is the SHA-256 of its ATerm in which each
 * input derivation's path is replaced by the base16 hash of that input
 * (recursively, so the hash does not depend on how fixed-output inputs were
 * fetched); inputs sharing a hash merge their output lists. A fixed-output
 * derivation's hash is that of "fixed:out:<method+algo>:<hex>:<out path>". */
#include <fcntl.h>
#include <stdio.h>

#include <kiln/castore/digest_map.h>
#include <kiln/nix/drv_hash.h>

#define MAX_DEPTH 2048

void kiln_nix_drv_hash_free(struct kiln_nix_drv_hash *h)
{
        if (!h)
                return;
        for (size_t i = 0; i < h->n_outputs; i++)
                free(h->outputs[i].output);
        free(h->outputs);
        free(h);
}

const uint8_t *kiln_nix_drv_hash_get(const struct kiln_nix_drv_hash *h, const char *output)
{
        for (size_t i = 0; i < h->n_outputs; i++)
                if (!strcmp(h->outputs[i].output, output))
                        return h->outputs[i].sha256;
        return NULL;
}

int kiln_nix_derivation_type(const struct kiln_nix_derivation *d, enum kiln_nix_drv_type *ret,
                             struct kiln_error **err)
{
        size_t count[KILN_NIX_OUTPUT_IMPURE + 1] = {0};
        enum kiln_nix_hash_algo floating = KILN_NIX_HASH_NONE;
        for (size_t i = 0; i < d->n_outputs; i++) {
                const struct kiln_nix_drv_output *o = &d->outputs[i];
                count[o->kind]++;
                if (o->kind == KILN_NIX_OUTPUT_FLOATING) {
                        if (floating != KILN_NIX_HASH_NONE && floating != o->hash.algo)
                                return kiln_error_set(err, EINVAL,
                                                      "all floating outputs must use the same "
                                                      "hash algorithm");
                        floating = o->hash.algo;
                }
        }
        if (d->n_outputs == 0)
                return kiln_error_set(err, EINVAL, "a derivation must have at least one output");
        static const enum kiln_nix_drv_type of_kind[] = {
            [KILN_NIX_OUTPUT_INPUT_ADDRESSED] = KILN_NIX_DRV_INPUT_ADDRESSED,
            [KILN_NIX_OUTPUT_DEFERRED] = KILN_NIX_DRV_DEFERRED,
            [KILN_NIX_OUTPUT_FIXED] = KILN_NIX_DRV_FIXED,
            [KILN_NIX_OUTPUT_FLOATING] = KILN_NIX_DRV_FLOATING,
            [KILN_NIX_OUTPUT_IMPURE] = KILN_NIX_DRV_IMPURE,
        };
        for (size_t k = 0; k < KILN_ARRAY_SIZE(count); k++) {
                if (count[k] == 0)
                        continue;
                if (count[k] != d->n_outputs)
                        return kiln_error_set(err, EINVAL, "can't mix derivation output types");
                if (k == KILN_NIX_OUTPUT_FIXED) {
                        if (d->n_outputs > 1)
                                return kiln_error_set(err, EINVAL,
                                                      "only one fixed output is allowed");
                        if (strcmp(d->outputs[0].name, "out") != 0)
                                return kiln_error_set(err, EINVAL,
                                                      "single fixed output must be named \"out\"");
                }
                *ret = of_kind[k];
                return 0;
        }
        return kiln_error_set(err, EINVAL, "a derivation must have at least one output");
}

/* --- the source of input derivations --- */

static int dir_read(void *ctx, const struct kiln_nix_store_path *drv_path,
                    struct kiln_nix_derivation **ret, struct kiln_error **err)
{
        int dirfd = (int)(intptr_t)ctx;
        char base[KILN_NIX_PATH_MAX];
        const char *full = kiln_nix_store_path_format(drv_path, base);
        const char *rel = full + KILN_NIX_STORE_DIR_LEN + 1;
        int r = kiln_nix_derivation_read_file(dirfd, rel, ret, err);
        if (r == -ENOENT) {
                kiln_error_clear(err);
                return 0;
        }
        return r < 0 ? r : 1;
}

void kiln_nix_drv_source_dir(int dirfd, struct kiln_nix_drv_source *ret)
{
        *ret = (struct kiln_nix_drv_source){.read = dir_read, .ctx = (void *)(intptr_t)dirfd};
}

/* --- the hasher --- */

struct memo {
        struct kiln_nix_drv_hash *hash; /* NULL while being computed */
};

struct kiln_nix_drv_hasher {
        struct kiln_nix_drv_source src;
        struct kiln_digest_map memo; /* BLAKE3 of the .drv path -> struct memo * */
        unsigned depth;
};

struct kiln_nix_drv_hasher *kiln_nix_drv_hasher_new(const struct kiln_nix_drv_source *src)
{
        struct kiln_nix_drv_hasher *h = kiln_calloc(1, sizeof(*h));
        h->src = *src;
        return h;
}

static void memo_free(void *p)
{
        struct memo *m = p;
        kiln_nix_drv_hash_free(m->hash);
        free(m);
}

void kiln_nix_drv_hasher_free(struct kiln_nix_drv_hasher *h)
{
        if (!h)
                return;
        kiln_digest_map_done(&h->memo, memo_free);
        free(h);
}

static struct kiln_nix_drv_hash *hash_new(enum kiln_nix_drv_hash_kind kind,
                                          const struct kiln_nix_derivation *d)
{
        struct kiln_nix_drv_hash *r = kiln_calloc(1, sizeof(*r));
        r->kind = kind;
        r->outputs = kiln_calloc(d->n_outputs, sizeof(*r->outputs));
        r->n_outputs = d->n_outputs;
        for (size_t i = 0; i < d->n_outputs; i++)
                r->outputs[i].output = kiln_strdup(d->outputs[i].name);
        return r;
}

static int fixed_path(const struct kiln_nix_drv_output *o, const char *drv_name,
                      struct kiln_nix_store_path *ret, struct kiln_error **err)
{
        _cleanup_free_ char *name = kiln_nix_output_path_name(drv_name, o->name);
        return kiln_nix_make_fixed_output_path(o->method, &o->hash, name, NULL, 0, false, ret, err);
}

/* One (base16 hash, output name) of the replaced input list. */
struct input_pair {
        char hex[65];
        const char *output;
};

static int pair_cmp(const void *a, const void *b)
{
        const struct input_pair *x = a, *y = b;
        int c = strcmp(x->hex, y->hex);
        return c ? c : strcmp(x->output, y->output);
}

static void to_hex(const uint8_t h[32], char out[65])
{
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < 32; i++) {
                out[2 * i] = hex[h[i] >> 4];
                out[2 * i + 1] = hex[h[i] & 15];
        }
        out[64] = '\0';
}

int kiln_nix_drv_hash_modulo(struct kiln_nix_drv_hasher *h, const struct kiln_nix_derivation *d,
                             const char *drv_name, bool mask_outputs,
                             struct kiln_nix_drv_hash **ret, struct kiln_error **err)
{
        enum kiln_nix_drv_type type;
        int r = kiln_nix_derivation_type(d, &type, err);
        if (r < 0)
                return r;

        if (type == KILN_NIX_DRV_FIXED) {
                struct kiln_nix_drv_hash *res = hash_new(KILN_NIX_DRV_HASH_REGULAR, d);
                for (size_t i = 0; i < d->n_outputs; i++) {
                        const struct kiln_nix_drv_output *o = &d->outputs[i];
                        struct kiln_nix_store_path p;
                        r = fixed_path(o, drv_name, &p, err);
                        if (r < 0) {
                                kiln_nix_drv_hash_free(res);
                                return r;
                        }
                        char algo[16];
                        _cleanup_free_ char *s =
                            kiln_asprintf("fixed:out:%s:%s:%s", kiln_nix_output_hash_algo(o, algo),
                                          KILN_NIX_HASH_STR(&o->hash, KILN_NIX_BASE16, false),
                                          KILN_NIX_STORE_PATH_STR(&p));
                        kiln_nix_sha256(s, strlen(s), res->outputs[i].sha256);
                }
                *ret = res;
                return 0;
        }
        if (type == KILN_NIX_DRV_IMPURE) {
                struct kiln_nix_drv_hash *res = hash_new(KILN_NIX_DRV_HASH_DEFERRED, d);
                for (size_t i = 0; i < d->n_outputs; i++)
                        kiln_nix_sha256("impure", 6, res->outputs[i].sha256);
                *ret = res;
                return 0;
        }

        enum kiln_nix_drv_hash_kind kind =
            type == KILN_NIX_DRV_FLOATING ? KILN_NIX_DRV_HASH_DEFERRED : KILN_NIX_DRV_HASH_REGULAR;
        size_t n_pairs = 0;
        for (size_t i = 0; i < d->n_input_drvs; i++)
                n_pairs += d->input_drvs[i].n_outputs;
        _cleanup_free_ struct input_pair *pairs =
            kiln_calloc(n_pairs ? n_pairs : 1, sizeof(*pairs));
        size_t k = 0;
        for (size_t i = 0; i < d->n_input_drvs; i++) {
                const struct kiln_nix_drv_input *in = &d->input_drvs[i];
                const struct kiln_nix_drv_hash *ih;
                r = kiln_nix_drv_hash_path(h, &in->drv, &ih, err);
                if (r < 0)
                        return r;
                if (ih->kind == KILN_NIX_DRV_HASH_DEFERRED)
                        kind = KILN_NIX_DRV_HASH_DEFERRED;
                for (size_t j = 0; j < in->n_outputs; j++) {
                        const uint8_t *oh = kiln_nix_drv_hash_get(ih, in->outputs[j]);
                        if (!oh)
                                return kiln_error_set(
                                    err, EINVAL, "input derivation %s has no output '%s'",
                                    KILN_NIX_STORE_PATH_STR(&in->drv), in->outputs[j]);
                        to_hex(oh, pairs[k].hex);
                        pairs[k++].output = in->outputs[j];
                }
        }
        qsort(pairs, n_pairs, sizeof(*pairs), pair_cmp);

        /* Group by hash, dropping repeated (hash, output) pairs. */
        _cleanup_free_ struct kiln_nix_print_input *inputs =
            kiln_calloc(n_pairs ? n_pairs : 1, sizeof(*inputs));
        _cleanup_free_ const char **names = kiln_calloc(n_pairs ? n_pairs : 1, sizeof(*names));
        size_t n_inputs = 0, n_names = 0;
        for (size_t i = 0; i < n_pairs; i++) {
                if (i > 0 && pair_cmp(&pairs[i - 1], &pairs[i]) == 0)
                        continue;
                if (n_inputs == 0 || strcmp(inputs[n_inputs - 1].key, pairs[i].hex) != 0) {
                        inputs[n_inputs++] = (struct kiln_nix_print_input){
                            .key = pairs[i].hex, .outputs = &names[n_names]};
                }
                names[n_names++] = pairs[i].output;
                inputs[n_inputs - 1].n_outputs++;
        }

        struct kiln_nix_print_options opt = {
            .mask_outputs = mask_outputs,
            .input_drvs = inputs,
            .n_input_drvs = n_inputs,
        };
        struct kiln_buf text = KILN_BUF_INIT;
        kiln_nix_derivation_print_with(d, &opt, &text);
        uint8_t sum[32];
        kiln_nix_sha256(text.data, text.len, sum);
        kiln_buf_done(&text);

        struct kiln_nix_drv_hash *res = hash_new(kind, d);
        for (size_t i = 0; i < d->n_outputs; i++)
                memcpy(res->outputs[i].sha256, sum, 32);
        *ret = res;
        return 0;
}

int kiln_nix_drv_hash_path(struct kiln_nix_drv_hasher *h,
                           const struct kiln_nix_store_path *drv_path,
                           const struct kiln_nix_drv_hash **ret, struct kiln_error **err)
{
        char buf[KILN_NIX_PATH_MAX];
        const char *path = kiln_nix_store_path_format(drv_path, buf);
        struct kiln_digest key;
        kiln_digest_of(path, strlen(path), &key);
        struct memo *m = kiln_digest_map_get(&h->memo, &key);
        if (m) {
                if (!m->hash)
                        return kiln_error_set(err, EINVAL, "derivation %s depends on itself", path);
                *ret = m->hash;
                return 0;
        }
        if (h->depth >= MAX_DEPTH)
                return kiln_error_set(err, EINVAL,
                                      "derivation %s: input derivations nested deeper than %d",
                                      path, MAX_DEPTH);

        _cleanup_free_ char *name = NULL;
        int r = kiln_nix_drv_name_from_path(drv_path, &name, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_nix_derivation_freep) struct kiln_nix_derivation *d = NULL;
        r = h->src.read(h->src.ctx, drv_path, &d, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "read input derivation %s", path);
        if (r == 0)
                return kiln_error_set(err, ENOENT, "input derivation %s not found", path);

        m = kiln_calloc(1, sizeof(*m));
        kiln_digest_map_put(&h->memo, &key, m);
        h->depth++;
        struct kiln_nix_drv_hash *res = NULL;
        r = kiln_nix_drv_hash_modulo(h, d, name, false, &res, err);
        h->depth--;
        if (r < 0) {
                /* Forget the marker: a later call may retry (and fail the same way). */
                memo_free(kiln_digest_map_remove(&h->memo, &key));
                return r;
        }
        m->hash = res;
        *ret = res;
        return 0;
}

int kiln_nix_drv_output_paths(struct kiln_nix_drv_hasher *h, const struct kiln_nix_derivation *d,
                              const char *drv_name, struct kiln_nix_output_path *ret,
                              struct kiln_error **err)
{
        enum kiln_nix_drv_type type;
        int r = kiln_nix_derivation_type(d, &type, err);
        if (r < 0)
                return r;
        _cleanup_free_ struct kiln_nix_output_path *res = kiln_calloc(d->n_outputs, sizeof(*res));
        switch (type) {
        case KILN_NIX_DRV_FIXED:
                r = fixed_path(&d->outputs[0], drv_name, &res[0].path, err);
                if (r < 0)
                        return r;
                res[0].known = true;
                break;
        case KILN_NIX_DRV_INPUT_ADDRESSED:
        case KILN_NIX_DRV_DEFERRED: {
                _cleanup_(kiln_nix_drv_hash_freep) struct kiln_nix_drv_hash *hm = NULL;
                r = kiln_nix_drv_hash_modulo(h, d, drv_name, true, &hm, err);
                if (r < 0)
                        return r;
                if (hm->kind == KILN_NIX_DRV_HASH_DEFERRED)
                        break;
                for (size_t i = 0; i < d->n_outputs; i++) {
                        r = kiln_nix_make_output_path(d->outputs[i].name, hm->outputs[i].sha256,
                                                      drv_name, &res[i].path, err);
                        if (r < 0)
                                return r;
                        res[i].known = true;
                }
                break;
        }
        case KILN_NIX_DRV_FLOATING:
        case KILN_NIX_DRV_IMPURE:
                break;
        }
        memcpy(ret, res, d->n_outputs * sizeof(*res));
        return 0;
}

int kiln_nix_drv_check_outputs(struct kiln_nix_drv_hasher *h, const struct kiln_nix_derivation *d,
                               const char *drv_name, struct kiln_error **err)
{
        _cleanup_free_ struct kiln_nix_output_path *paths =
            kiln_calloc(d->n_outputs, sizeof(*paths));
        int r = kiln_nix_drv_output_paths(h, d, drv_name, paths, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < d->n_outputs; i++) {
                const struct kiln_nix_drv_output *o = &d->outputs[i];
                bool has =
                    o->kind == KILN_NIX_OUTPUT_INPUT_ADDRESSED || o->kind == KILN_NIX_OUTPUT_FIXED;
                char want[KILN_NIX_PATH_MAX];
                if (paths[i].known)
                        kiln_nix_store_path_format(&paths[i].path, want);
                if (has != paths[i].known ||
                    (has && kiln_nix_store_path_cmp(&o->path, &paths[i].path) != 0))
                        return kiln_error_set(err, EINVAL,
                                              "output '%s' has path %s, Nix computes %s", o->name,
                                              has ? KILN_NIX_STORE_PATH_STR(&o->path) : "''",
                                              paths[i].known ? want : "none");
                const char *v = kiln_nix_derivation_env_get(d, o->name);
                if (has && (!v || strcmp(v, want) != 0))
                        return kiln_error_set(err, EINVAL,
                                              "environment variable '%s' is not the output path %s",
                                              o->name, want);
        }
        return 0;
}

static void env_set(struct kiln_nix_derivation *d, const char *name, const char *value)
{
        size_t lo = 0, hi = d->n_env;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(d->env[mid].name, name);
                if (c == 0) {
                        free(d->env[mid].value);
                        d->env[mid].value = kiln_strdup(value);
                        return;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        d->env = kiln_reallocarray(d->env, d->n_env + 1, sizeof(*d->env));
        memmove(&d->env[lo + 1], &d->env[lo], (d->n_env - lo) * sizeof(*d->env));
        d->env[lo] =
            (struct kiln_nix_drv_env){.name = kiln_strdup(name), .value = kiln_strdup(value)};
        d->n_env++;
}

int kiln_nix_drv_fill_outputs(struct kiln_nix_drv_hasher *h, struct kiln_nix_derivation *d,
                              const char *drv_name, struct kiln_error **err)
{
        /* derivationStrict hashes with every output variable present (and
         * masked), so an absent one must be added before hashing. */
        enum kiln_nix_drv_type type;
        int r = kiln_nix_derivation_type(d, &type, err);
        if (r < 0)
                return r;
        if (type == KILN_NIX_DRV_INPUT_ADDRESSED || type == KILN_NIX_DRV_DEFERRED)
                for (size_t i = 0; i < d->n_outputs; i++)
                        if (!kiln_nix_derivation_env_get(d, d->outputs[i].name))
                                env_set(d, d->outputs[i].name, "");
        _cleanup_free_ struct kiln_nix_output_path *paths =
            kiln_calloc(d->n_outputs, sizeof(*paths));
        r = kiln_nix_drv_output_paths(h, d, drv_name, paths, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < d->n_outputs; i++) {
                struct kiln_nix_drv_output *o = &d->outputs[i];
                if (!paths[i].known)
                        continue;
                o->path = paths[i].path;
                if (o->kind == KILN_NIX_OUTPUT_DEFERRED)
                        o->kind = KILN_NIX_OUTPUT_INPUT_ADDRESSED;
                env_set(d, o->name, KILN_NIX_STORE_PATH_STR(&o->path));
        }
        return 0;
}

int kiln_nix_derivation_path(const struct kiln_nix_derivation *d, const char *drv_name,
                             struct kiln_nix_store_path *ret, struct kiln_error **err)
{
        size_t n = d->n_input_srcs + d->n_input_drvs;
        _cleanup_free_ struct kiln_nix_store_path *refs = kiln_calloc(n ? n : 1, sizeof(*refs));
        if (d->n_input_srcs)
                memcpy(refs, d->input_srcs, d->n_input_srcs * sizeof(*refs));
        for (size_t i = 0; i < d->n_input_drvs; i++)
                refs[d->n_input_srcs + i] = d->input_drvs[i].drv;
        struct kiln_buf text = KILN_BUF_INIT;
        kiln_nix_derivation_print(d, &text);
        uint8_t sum[32];
        kiln_nix_sha256(text.data, text.len, sum);
        kiln_buf_done(&text);
        _cleanup_free_ char *name = kiln_asprintf("%s.drv", drv_name);
        return kiln_nix_make_text_path(name, sum, refs, n, ret, err);
}
