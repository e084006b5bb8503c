/* Derivation hashes and the store paths Nix 2.8 derives from them:
 * hashDerivationModulo (with input derivations replaced, recursively, by
 * their own hashes), the output paths given at instantiation
 * (derivationStrict) and the path of the .drv file itself (writeDerivation).
 *
 * A hasher memoises the hash of every input derivation it has read, so a
 * whole graph is read once. It is used by one thread at a time. */
#pragma once

#include <kiln/nix/derivation.h>

/* Where input derivations come from. read() returns 1 with *ret (the caller
 * of read owns it), 0 when the derivation does not exist, < 0 on failure.
 * kiln_nix_drv_source_dir() gives one reading a directory. */
struct kiln_nix_drv_source {
        int (*read)(void *ctx, const struct kiln_nix_store_path *drv_path,
                    struct kiln_nix_derivation **ret, struct kiln_error **err);
        void *ctx;
};

/* A source reading "<hash part>-<name>" relative to dirfd: the real
 * directory holding the store's files (e.g. a chroot store's
 * <root>/nix/store). The caller keeps dirfd open while the source is in use;
 * *ret needs no freeing. */
KILN_PUBLIC void kiln_nix_drv_source_dir(int dirfd, struct kiln_nix_drv_source *ret);

enum kiln_nix_drv_hash_kind {
        KILN_NIX_DRV_HASH_REGULAR,
        /* depends on content-addressed (floating) or impure outputs, whose
         * paths are known only after building: outputs stay deferred */
        KILN_NIX_DRV_HASH_DEFERRED,
};

struct kiln_nix_drv_hash_output {
        char *output;
        uint8_t sha256[32];
};

/* One hash per output (in output order): the same for every output of a
 * regular derivation, its own for each output of a fixed-output one. */
struct kiln_nix_drv_hash {
        enum kiln_nix_drv_hash_kind kind;
        struct kiln_nix_drv_hash_output *outputs;
        size_t n_outputs;
};
KILN_PUBLIC void kiln_nix_drv_hash_free(struct kiln_nix_drv_hash *h);
DEFINE_CLEANUP_FUNC(struct kiln_nix_drv_hash, kiln_nix_drv_hash_free)
/* The hash for one output, or NULL. */
KILN_PUBLIC const uint8_t *kiln_nix_drv_hash_get(const struct kiln_nix_drv_hash *h,
                                                 const char *output);

/* What a derivation is, from its outputs (Nix's BasicDerivation::type). */
enum kiln_nix_drv_type {
        KILN_NIX_DRV_INPUT_ADDRESSED,
        KILN_NIX_DRV_DEFERRED, /* input-addressed, paths not computed yet */
        KILN_NIX_DRV_FIXED,    /* one fixed output named "out" */
        KILN_NIX_DRV_FLOATING, /* content-addressed outputs */
        KILN_NIX_DRV_IMPURE,
};
/* -EINVAL as Nix says it: "can't mix derivation output types", "only one
 * fixed output is allowed", "single fixed output must be named \"out\"",
 * "all floating outputs must use the same hash algorithm". */
KILN_PUBLIC int kiln_nix_derivation_type(const struct kiln_nix_derivation *d,
                                         enum kiln_nix_drv_type *ret, struct kiln_error **err);

struct kiln_nix_drv_hasher;

/* A hasher reading input derivations from *src (copied). */
KILN_PUBLIC struct kiln_nix_drv_hasher *
kiln_nix_drv_hasher_new(const struct kiln_nix_drv_source *src);
KILN_PUBLIC void kiln_nix_drv_hasher_free(struct kiln_nix_drv_hasher *h);
DEFINE_CLEANUP_FUNC(struct kiln_nix_drv_hasher, kiln_nix_drv_hasher_free)

/* hashDerivationModulo(d, mask_outputs); drv_name is the derivation's name
 * (its .drv name without ".drv"), which fixed-output paths need. Input
 * derivations are read through the source and memoised. -ENOENT naming a
 * missing input, -EINVAL for a bad graph (a cycle, deeper than 2048 levels,
 * a missing output of an input). *ret is the caller's. */
KILN_PUBLIC int kiln_nix_drv_hash_modulo(struct kiln_nix_drv_hasher *h,
                                         const struct kiln_nix_derivation *d, const char *drv_name,
                                         bool mask_outputs, struct kiln_nix_drv_hash **ret,
                                         struct kiln_error **err);
/* The memoised hashDerivationModulo(read(drv_path), false) (Nix's
 * pathDerivationModulo). *ret belongs to the hasher and lives as long. */
KILN_PUBLIC int kiln_nix_drv_hash_path(struct kiln_nix_drv_hasher *h,
                                       const struct kiln_nix_store_path *drv_path,
                                       const struct kiln_nix_drv_hash **ret,
                                       struct kiln_error **err);

/* The path Nix gives each output at instantiation: input-addressed outputs
 * from hashDerivationModulo(d, masked), fixed ones from their hash. `known`
 * is false for deferred, floating and impure outputs. */
struct kiln_nix_output_path {
        bool known;
        struct kiln_nix_store_path path;
};
/* Fills ret[i] for d->outputs[i] (ret has d->n_outputs entries). */
KILN_PUBLIC int kiln_nix_drv_output_paths(struct kiln_nix_drv_hasher *h,
                                          const struct kiln_nix_derivation *d, const char *drv_name,
                                          struct kiln_nix_output_path *ret,
                                          struct kiln_error **err);

/* Compares d's own output paths (and the environment variables named after
 * its outputs) with those kiln_nix_drv_output_paths() computes: -EINVAL
 * "output 'out' has path X, Nix computes Y" for the first difference. */
KILN_PUBLIC int kiln_nix_drv_check_outputs(struct kiln_nix_drv_hasher *h,
                                           const struct kiln_nix_derivation *d,
                                           const char *drv_name, struct kiln_error **err);

/* What Nix's derivationStrict does last, for a derivation built in memory:
 * gives each output of an input-addressed (or deferred) derivation its path
 * and sets the environment variable named after it; a fixed output gets its
 * path from its hash, and "out" is set likewise. Floating and impure outputs,
 * and all outputs when the hash is deferred, are left alone. */
KILN_PUBLIC int kiln_nix_drv_fill_outputs(struct kiln_nix_drv_hasher *h,
                                          struct kiln_nix_derivation *d, const char *drv_name,
                                          struct kiln_error **err);

/* The store path of the .drv file (writeDerivation): makeTextPath of
 * "<drv_name>.drv" over the SHA-256 of its ATerm text, with the input
 * sources and input derivations as references. */
KILN_PUBLIC int kiln_nix_derivation_path(const struct kiln_nix_derivation *d, const char *drv_name,
                                         struct kiln_nix_store_path *ret, struct kiln_error **err);
