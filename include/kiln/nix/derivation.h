/* Nix derivations: the model of a .drv file and its ATerm text
 *
 *     Derive([outputs],[inputDrvs],[inputSrcs],"system","builder",[args],[env])
 *
 * as Nix 2.8 writes it (derivations.cc). The parser is strict: it accepts
 * exactly what the printer writes, so that parse → print gives back the same
 * bytes, and reports the first deviation with its byte offset. Lists are
 * sorted and unique as Nix keeps them (outputs, input derivations and their
 * output names, input sources and environment by byte order). A derivation
 * is plain data: reading it from many threads is safe. */
#pragma once

#include <kiln/nix/hash.h>
#include <kiln/nix/store_path.h>

/* What an output is, by the three strings of its ATerm tuple
 * (path, hashAlgo, hash). */
enum kiln_nix_output_kind {
        KILN_NIX_OUTPUT_INPUT_ADDRESSED, /* (path, "", "") */
        KILN_NIX_OUTPUT_DEFERRED,        /* ("", "", ""): path not known yet */
        KILN_NIX_OUTPUT_FIXED,           /* (path, "[r:]algo", hex): fixed-output */
        KILN_NIX_OUTPUT_FLOATING,        /* ("", "[r:]algo", ""): content-addressed */
        KILN_NIX_OUTPUT_IMPURE,          /* ("", "[r:]algo", "impure") */
};

struct kiln_nix_drv_output {
        char *name;
        enum kiln_nix_output_kind kind;
        struct kiln_nix_store_path path; /* INPUT_ADDRESSED and FIXED */
        enum kiln_nix_ingestion method;  /* FIXED, FLOATING, IMPURE */
        struct kiln_nix_hash hash;       /* FIXED: the hash; FLOATING, IMPURE: algo only */
};

struct kiln_nix_drv_input {
        struct kiln_nix_store_path drv; /* the input derivation's .drv path */
        char **outputs;                 /* the outputs used, sorted, unique */
        size_t n_outputs;
};

/* Strings are NUL-terminated: Nix's cannot contain NUL, and neither can ours. */
struct kiln_nix_drv_env {
        char *name;
        char *value;
};

struct kiln_nix_derivation {
        struct kiln_nix_drv_output *outputs; /* sorted by name, at least one */
        size_t n_outputs;
        struct kiln_nix_drv_input *input_drvs; /* sorted by path */
        size_t n_input_drvs;
        struct kiln_nix_store_path *input_srcs; /* sorted */
        size_t n_input_srcs;
        char *system;
        char *builder;
        char **args;
        size_t n_args;
        struct kiln_nix_drv_env *env; /* sorted by name */
        size_t n_env;
};

KILN_PUBLIC struct kiln_nix_derivation *kiln_nix_derivation_new(void);
/* Frees everything; NULL and half-built derivations are fine. */
KILN_PUBLIC void kiln_nix_derivation_free(struct kiln_nix_derivation *d);
DEFINE_CLEANUP_FUNC(struct kiln_nix_derivation, kiln_nix_derivation_free)

/* Parses ATerm text. -EINVAL with one message naming the byte offset and what
 * was expected, e.g. "invalid derivation at byte 12: expected '('" or
 * "… environment variable 'b' is out of order"; *ret is untouched then. */
KILN_PUBLIC int kiln_nix_derivation_parse(const void *text, size_t len,
                                          struct kiln_nix_derivation **ret,
                                          struct kiln_error **err);
/* Reads and parses a .drv file (relative to dirfd), of at most 256 MiB. The
 * message names the path. */
KILN_PUBLIC int kiln_nix_derivation_read_file(int dirfd, const char *path,
                                              struct kiln_nix_derivation **ret,
                                              struct kiln_error **err);

/* Appends the ATerm text, byte for byte as Nix writes it. */
KILN_PUBLIC void kiln_nix_derivation_print(const struct kiln_nix_derivation *d,
                                           struct kiln_buf *out);

/* What the printer may change, for hashDerivationModulo (drv_hash.h):
 * mask_outputs blanks output paths and the environment variables named after
 * outputs; input_drvs, when set, replaces the inputDrvs list by these
 * (already sorted) pairs of a key printed as is and output names. */
struct kiln_nix_print_input {
        const char *key;
        const char *const *outputs;
        size_t n_outputs;
};
struct kiln_nix_print_options {
        bool mask_outputs;
        const struct kiln_nix_print_input *input_drvs;
        size_t n_input_drvs;
};
KILN_PUBLIC void kiln_nix_derivation_print_with(const struct kiln_nix_derivation *d,
                                                const struct kiln_nix_print_options *o,
                                                struct kiln_buf *out);

/* The value of an environment variable, or NULL. */
KILN_PUBLIC const char *kiln_nix_derivation_env_get(const struct kiln_nix_derivation *d,
                                                    const char *name);
/* The output of that name, or NULL. */
KILN_PUBLIC const struct kiln_nix_drv_output *
kiln_nix_derivation_output(const struct kiln_nix_derivation *d, const char *name);

/* The hashAlgo field of a content-addressed output ("r:" for recursive, then
 * the algorithm) and a NUL into buf; returns buf. */
KILN_PUBLIC char *kiln_nix_output_hash_algo(const struct kiln_nix_drv_output *o, char buf[16]);

/* The derivation's name from its .drv store path (the name without ".drv");
 * -EINVAL when the name does not end in ".drv". Heap string. */
KILN_PUBLIC int kiln_nix_drv_name_from_path(const struct kiln_nix_store_path *drv_path, char **ret,
                                            struct kiln_error **err);
