/* Nix store paths under /nix/store: "<hash part>-<name>", where the hash part
 * is the nixbase32 of a 20-byte digest, and the ways Nix computes that digest
 * (store-api.cc of Nix 2.8: makeStorePath, makeTextPath, makeFixedOutputPath,
 * makeOutputPath). Pure functions, safe from any thread. */
#pragma once

#include <kiln/nix/hash.h>

#define KILN_NIX_STORE_DIR     "/nix/store"
#define KILN_NIX_STORE_DIR_LEN 10
#define KILN_NIX_PATH_DIGEST   20  /* bytes of the digest in the hash part */
#define KILN_NIX_HASH_PART_LEN 32  /* its nixbase32 characters */
#define KILN_NIX_NAME_MAX      211 /* longest name Nix accepts */
/* Longest absolute path: "/nix/store/" + hash part + "-" + name, plus NUL. */
#define KILN_NIX_PATH_MAX                                                                          \
        (KILN_NIX_STORE_DIR_LEN + 1 + KILN_NIX_HASH_PART_LEN + 1 + KILN_NIX_NAME_MAX + 1)

/* A parsed store path; no heap memory, copy freely. */
struct kiln_nix_store_path {
        uint8_t digest[KILN_NIX_PATH_DIGEST];
        char name[KILN_NIX_NAME_MAX + 1]; /* NUL-terminated, validated */
};

/* Checks a store path name as Nix 2.8 does: 1 to 211 characters, each one of
 * A-Z a-z 0-9 + - . _ ? =. (Nix 2.8 accepts a leading '.'; so does this.)
 * -EINVAL "invalid store path name 'x': empty", "… longer than 211
 * characters", "… illegal character ' '". */
KILN_PUBLIC int kiln_nix_store_name_validate(const char *name, size_t len, struct kiln_error **err);

/* Parses "<hash part>-<name>" (no directory). -EINVAL naming the input:
 * too short, a hash part character outside nixbase32, a missing '-', a bad
 * name. */
KILN_PUBLIC int kiln_nix_store_path_parse_base(const char *base, size_t len,
                                               struct kiln_nix_store_path *ret,
                                               struct kiln_error **err);
/* Parses an absolute path "/nix/store/<hash part>-<name>", exactly so: no
 * trailing slash, no "." or ".." or doubled slash, nothing below it.
 * -EINVAL "path '…' is not in the Nix store" or as above. */
KILN_PUBLIC int kiln_nix_store_path_parse(const char *path, size_t len,
                                          struct kiln_nix_store_path *ret, struct kiln_error **err);

/* The 32-character hash part and a NUL into buf; returns buf. */
KILN_PUBLIC char *kiln_nix_store_path_hash_part(const struct kiln_nix_store_path *p,
                                                char buf[KILN_NIX_HASH_PART_LEN + 1]);
/* "/nix/store/<hash part>-<name>" and a NUL into buf; returns buf. */
KILN_PUBLIC char *kiln_nix_store_path_format(const struct kiln_nix_store_path *p,
                                             char buf[KILN_NIX_PATH_MAX]);
/* The same as a heap string. */
KILN_PUBLIC char *kiln_nix_store_path_to_string(const struct kiln_nix_store_path *p);
/* The same in a buffer that lives until the end of the caller's block. */
#define KILN_NIX_STORE_PATH_STR(p) kiln_nix_store_path_format((p), (char[KILN_NIX_PATH_MAX]){0})

/* Store paths order by their text, as Nix's StorePathSet does. */
KILN_PUBLIC int kiln_nix_store_path_cmp(const struct kiln_nix_store_path *a,
                                        const struct kiln_nix_store_path *b);

/* makeStorePath: the digest is SHA-256 of
 * "<type>:<algo>:<hex of hash>:/nix/store:<name>", folded to 20 bytes by
 * XOR (compressHash). -EINVAL for an invalid name. */
KILN_PUBLIC int kiln_nix_make_store_path(const char *type, const struct kiln_nix_hash *hash,
                                         const char *name, struct kiln_nix_store_path *ret,
                                         struct kiln_error **err);

/* makeTextPath, for text added to the store such as a .drv file: type "text"
 * followed by ":<path>" for each reference in store path order (refs may come
 * in any order and with duplicates), over the SHA-256 of the contents. */
KILN_PUBLIC int kiln_nix_make_text_path(const char *name, const uint8_t sha256[32],
                                        const struct kiln_nix_store_path *refs, size_t n_refs,
                                        struct kiln_nix_store_path *ret, struct kiln_error **err);

/* How a fixed-output path was hashed: the file's bytes (flat), or its NAR
 * serialisation (recursive, "r:" in derivations). */
enum kiln_nix_ingestion {
        KILN_NIX_FLAT,
        KILN_NIX_RECURSIVE,
};

/* makeFixedOutputPath: recursive SHA-256 gives type "source" (followed by
 * ":<path>" for each reference and ":self" when self_reference) over the
 * hash itself; any other combination hashes "fixed:out:[r:]<algo>:<hex>:"
 * and uses type "output:out", and then must have no references (-EINVAL). */
KILN_PUBLIC int kiln_nix_make_fixed_output_path(enum kiln_nix_ingestion method,
                                                const struct kiln_nix_hash *hash, const char *name,
                                                const struct kiln_nix_store_path *refs,
                                                size_t n_refs, bool self_reference,
                                                struct kiln_nix_store_path *ret,
                                                struct kiln_error **err);

/* makeOutputPath: an input-addressed output of derivation `drv_name` whose
 * hashDerivationModulo is sha256: type "output:<output>", name
 * kiln_nix_output_path_name(). */
KILN_PUBLIC int kiln_nix_make_output_path(const char *output, const uint8_t sha256[32],
                                          const char *drv_name, struct kiln_nix_store_path *ret,
                                          struct kiln_error **err);

/* The name of an output's path: drv_name for "out", else
 * "<drv_name>-<output>". Heap string. */
KILN_PUBLIC char *kiln_nix_output_path_name(const char *drv_name, const char *output);
