/* Derivations as `nix show-derivation` (Nix 2.8) prints them, built as
 * jansson values and printed the way Nix's own JSON writer does. Safe from
 * any thread (on distinct values). */
#pragma once

#include <jansson.h>

#include <kiln/nix/derivation.h>

/* The object Nix prints for one derivation: "outputs" (each with "path",
 * and "hashAlgo" and "hash" when fixed, "hashAlgo" when floating, plus
 * "impure": true when impure), "inputSrcs", "inputDrvs", "system",
 * "builder", "args" and "env", in that order. Strings may hold any bytes
 * but NUL (built with jansson's *_nocheck calls). New reference. */
KILN_PUBLIC json_t *kiln_nix_derivation_to_json(const struct kiln_nix_derivation *d);

/* Appends j as Nix's JSONWriter prints it with indentation: objects and
 * lists open a new line per member indented by two spaces per level,
 * "key": value, empty ones as {} and []; strings escape " \ and \n \r \t
 * as such, other bytes below 0x20 as \u00XX, and leave every other byte as
 * it is (no UTF-8 check). No final newline. Objects keep insertion order. */
KILN_PUBLIC void kiln_nix_json_print(const json_t *j, struct kiln_buf *out);
