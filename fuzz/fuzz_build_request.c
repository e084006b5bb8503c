/* tvix.build.v1 BuildRequest (and, with the first byte odd, Build): decode
 * + validation; accepted messages re-encode canonically (by canonical.h's
 * definition too), an accepted canonical input re-encodes to itself, and
 * they survive JSON. */
#include <kiln/build/build.h>

#include "canonical.h"
#include "fuzz.h"

/* enc is canonical; if the input was, it is the input. */
static void identity(const struct canon_msg *m, const uint8_t *data, size_t size,
                     const struct kiln_buf *enc)
{
        FUZZ_CHECK(canon_check(m, enc->data, enc->len));
        if (canon_check(m, data, size))
                FUZZ_CHECK(enc->len == size && (size == 0 || !memcmp(enc->data, data, size)));
}

static void request(const uint8_t *data, size_t size)
{
        struct kiln_error *err = NULL;
        struct kiln_build_request q = {0}, again = {0}, from_json = {0};
        int r = kiln_build_request_decode(data, size, &q, &err);
        if (r < 0) {
                fuzz_rejected(r, &err);
                kiln_build_request_done(&q);
                return;
        }
        struct kiln_buf enc = KILN_BUF_INIT, enc2 = KILN_BUF_INIT, enc3 = KILN_BUF_INIT;
        kiln_build_request_encode(&q, &enc);
        identity(&canon_request, data, size, &enc);
        FUZZ_CHECK(kiln_build_request_decode(enc.data, enc.len, &again, &err) == 0);
        kiln_build_request_encode(&again, &enc2);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc2));
        json_t *j = kiln_build_request_to_json(&q);
        FUZZ_CHECK(kiln_build_request_from_json(j, &from_json, &err) == 0);
        kiln_build_request_encode(&from_json, &enc3);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc3));
        json_decref(j);
        kiln_build_request_done(&q);
        kiln_build_request_done(&again);
        kiln_build_request_done(&from_json);
        kiln_buf_done(&enc);
        kiln_buf_done(&enc2);
        kiln_buf_done(&enc3);
}

static void build(const uint8_t *data, size_t size)
{
        struct kiln_error *err = NULL;
        struct kiln_build b = {0}, again = {0}, from_json = {0};
        int r = kiln_build_decode(data, size, &b, &err);
        if (r < 0) {
                fuzz_rejected(r, &err);
                kiln_build_done(&b);
                return;
        }
        struct kiln_buf enc = KILN_BUF_INIT, enc2 = KILN_BUF_INIT, enc3 = KILN_BUF_INIT;
        kiln_build_encode(&b, &enc);
        /* A Build's canonical form also has one outputs_needles (3) per
         * output (2), empty or not, as kiln and upstream write it; one
         * without them is accepted, but is not that form. */
        if (canon_count(data, size, 2) == canon_count(data, size, 3))
                identity(&canon_build, data, size, &enc);
        else
                FUZZ_CHECK(canon_check(&canon_build, enc.data, enc.len));
        FUZZ_CHECK(kiln_build_decode(enc.data, enc.len, &again, &err) == 0);
        kiln_build_encode(&again, &enc2);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc2));
        json_t *j = kiln_build_to_json(&b);
        FUZZ_CHECK(kiln_build_from_json(j, &from_json, &err) == 0);
        kiln_build_encode(&from_json, &enc3);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc3));
        json_decref(j);
        kiln_build_done(&b);
        kiln_build_done(&again);
        kiln_build_done(&from_json);
        kiln_buf_done(&enc);
        kiln_buf_done(&enc2);
        kiln_buf_done(&enc3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        if (data[0] & 1)
                build(data + 1, size - 1);
        else
                request(data + 1, size - 1);
        return 0;
}
