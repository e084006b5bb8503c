/* Quoting untrusted strings for error messages (internal to the Nix layer):
 * kiln_quote() cut at 64 bytes. */
#pragma once

#include <kiln/util/util.h>

static inline char *kiln_nix_quote(const void *s, size_t len)
{
        return kiln_quote(s, len, 64);
}
