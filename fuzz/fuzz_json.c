/* proto3 JSON of Node, Directory, BuildRequest and Build (the first byte
 * picks which): what is accepted prints back to JSON that parses to the same
 * message. */
#include <kiln/build/build.h>
#include <kiln/castore/castore.h>
#include <kiln/castore/json.h>

#include "fuzz.h"

#define ROUNDTRIP(type, from, to, encode, done, ...)                                               \
        do {                                                                                       \
                type a = {0}, b = {0};                                                             \
                int r = from(j, ##__VA_ARGS__, &a, &err);                                          \
                if (r < 0) {                                                                       \
                        fuzz_rejected(r, &err);                                                    \
                } else {                                                                           \
                        json_t *back = to(&a);                                                     \
                        FUZZ_CHECK(from(back, ##__VA_ARGS__, &b, &err) == 0);                     \
                        struct kiln_buf ea = KILN_BUF_INIT, eb = KILN_BUF_INIT;                    \
                        encode(&a, &ea);                                                           \
                        encode(&b, &eb);                                                           \
                        FUZZ_CHECK(fuzz_buf_eq(&ea, &eb));                                         \
                        kiln_buf_done(&ea);                                                        \
                        kiln_buf_done(&eb);                                                        \
                        json_decref(back);                                                         \
                }                                                                                  \
                done(&a);                                                                          \
                done(&b);                                                                          \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        json_t *j = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
        if (!j)
                return 0;
        struct kiln_error *err = NULL;
        switch (data[0] % 5) {
        case 0:
                ROUNDTRIP(struct kiln_node, kiln_node_from_json, kiln_node_to_json,
                          kiln_node_encode, kiln_node_done, KILN_NODE_NAMED);
                break;
        case 1:
                ROUNDTRIP(struct kiln_node, kiln_node_from_json, kiln_node_to_json,
                          kiln_node_encode, kiln_node_done, KILN_NODE_ANONYMOUS);
                break;
        case 2:
                ROUNDTRIP(struct kiln_directory, kiln_directory_from_json, kiln_directory_to_json,
                          kiln_directory_encode, kiln_directory_done);
                break;
        case 3:
                ROUNDTRIP(struct kiln_build_request, kiln_build_request_from_json,
                          kiln_build_request_to_json, kiln_build_request_encode,
                          kiln_build_request_done);
                break;
        default:
                ROUNDTRIP(struct kiln_build, kiln_build_from_json, kiln_build_to_json,
                          kiln_build_encode, kiln_build_done);
                break;
        }
        json_decref(j);
        return 0;
}
