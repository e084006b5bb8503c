/* castore Node: decode + validation (the first byte picks named or
 * anonymous); accepted nodes round-trip through the wire form and JSON, their
 * encoding is canonical (canonical.h) and an accepted canonical input
 * re-encodes to itself. */
#include <kiln/castore/castore.h>
#include <kiln/castore/json.h>

#include "canonical.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        enum kiln_node_naming naming = data[0] & 1 ? KILN_NODE_ANONYMOUS : KILN_NODE_NAMED;
        struct kiln_error *err = NULL;
        struct kiln_node n = {0}, again = {0}, from_json = {0};
        int r = kiln_node_decode(data + 1, size - 1, naming, &n, &err);
        if (r < 0) {
                fuzz_rejected(r, &err);
                return 0;
        }
        struct kiln_buf enc = KILN_BUF_INIT, enc2 = KILN_BUF_INIT;
        kiln_node_encode(&n, &enc);
        FUZZ_CHECK(canon_check(&canon_node, enc.data, enc.len));
        if (canon_check(&canon_node, data + 1, size - 1))
                FUZZ_CHECK(enc.len == size - 1 && !memcmp(enc.data, data + 1, size - 1));
        FUZZ_CHECK(kiln_node_decode(enc.data, enc.len, naming, &again, &err) == 0);
        FUZZ_CHECK(kiln_node_eq(&n, &again));
        kiln_node_encode(&again, &enc2);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc2));

        json_t *j = kiln_node_to_json(&n);
        FUZZ_CHECK(kiln_node_from_json(j, naming, &from_json, &err) == 0);
        FUZZ_CHECK(kiln_node_eq(&n, &from_json));
        json_decref(j);

        kiln_node_done(&n);
        kiln_node_done(&again);
        kiln_node_done(&from_json);
        kiln_buf_done(&enc);
        kiln_buf_done(&enc2);
        return 0;
}
