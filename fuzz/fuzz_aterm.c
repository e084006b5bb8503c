/* Nix derivations (ATerm): the strict parser takes any bytes; what it
 * accepts prints back byte for byte (it accepts only the form Nix writes). */
#include <kiln/nix/derivation.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kiln_error *err = NULL;
        struct kiln_nix_derivation *d = NULL;
        int r = kiln_nix_derivation_parse(data, size, &d, &err);
        if (r < 0) {
                fuzz_rejected(r, &err);
                return 0;
        }
        struct kiln_buf out = KILN_BUF_INIT;
        kiln_nix_derivation_print(d, &out);
        FUZZ_CHECK(out.len == size && !memcmp(out.data, data, size));
        kiln_buf_done(&out);
        kiln_nix_derivation_free(d);
        return 0;
}
