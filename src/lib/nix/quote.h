/* Quoting untrusted strings for error messages (internal to the Nix layer). */
#pragma once

#include <kiln/util/util.h>

/* At most the first 64 bytes of (s, len), with bytes outside printable ASCII,
 * the quote ' and the backslash written as \xNN (so a message stays one line)
 * and "..." appended when cut. Heap string. */
char *kiln_nix_quote(const void *s, size_t len);
