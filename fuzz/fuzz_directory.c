/* castore Directory: decode + validation of any bytes; what is accepted
 * encodes canonically (by canonical.h's definition), decodes back to the
 * same, and survives proto3 JSON; an accepted canonical input re-encodes to
 * itself. */
#include <kiln/castore/castore.h>
#include <kiln/castore/json.h>

#include "canonical.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kiln_error *err = NULL;
        struct kiln_directory d = {0}, again = {0}, from_json = {0};
        int r = kiln_directory_decode(data, size, &d, &err);
        if (r < 0) {
                fuzz_rejected(r, &err);
                return 0;
        }
        struct kiln_buf enc = KILN_BUF_INIT, enc2 = KILN_BUF_INIT, enc3 = KILN_BUF_INIT;
        kiln_directory_encode(&d, &enc);
        FUZZ_CHECK(canon_check(&canon_directory, enc.data, enc.len));
        if (canon_check(&canon_directory, data, size))
                FUZZ_CHECK(enc.len == size && (size == 0 || !memcmp(enc.data, data, size)));
        FUZZ_CHECK(kiln_directory_decode(enc.data, enc.len, &again, &err) == 0);
        kiln_directory_encode(&again, &enc2);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc2));

        json_t *j = kiln_directory_to_json(&d);
        FUZZ_CHECK(kiln_directory_from_json(j, &from_json, &err) == 0);
        kiln_directory_encode(&from_json, &enc3);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc3));
        json_decref(j);

        kiln_directory_done(&d);
        kiln_directory_done(&again);
        kiln_directory_done(&from_json);
        kiln_buf_done(&enc);
        kiln_buf_done(&enc2);
        kiln_buf_done(&enc3);
        return 0;
}
