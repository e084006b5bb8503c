/* Nix derivations (ATerm): the strict parser takes any bytes; what it
 * accepts prints to a fixed point (parse ∘ print = identity on printed
 * text). Not byte for byte with the input: like Nix, the parser takes a
 * fixed output's hash in nixbase32 too, and prints it in base16. */
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
        struct kiln_buf out = KILN_BUF_INIT, again = KILN_BUF_INIT;
        kiln_nix_derivation_print(d, &out);
        struct kiln_nix_derivation *d2 = NULL;
        FUZZ_CHECK(kiln_nix_derivation_parse(out.data, out.len, &d2, &err) == 0);
        kiln_nix_derivation_print(d2, &again);
        FUZZ_CHECK(fuzz_buf_eq(&out, &again));
        kiln_buf_done(&out);
        kiln_buf_done(&again);
        kiln_nix_derivation_free(d);
        kiln_nix_derivation_free(d2);
        return 0;
}
