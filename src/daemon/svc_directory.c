/* tvix.castore.v1.DirectoryService with kiln's status codes:
 * client mistakes (a malformed or invalid Directory, bad order or sizes in a
 * Put, an empty Put) are INVALID_ARGUMENT with a message naming the problem
 * and the position of the Directory in the stream; store failures map
 * through kiln_rpc_status_from_errno(). A recursive Get streams from the
 * store's traversal as it goes; a Put hands every validated Directory to
 * the store's putter as it arrives. */
#include <stdio.h>

#include "call.h"
#include "metrics.h"
#include "rpc_directory.pb-c.h"

static grpc_byte_buffer *encode(const struct kiln_directory *dir, struct kiln_buf *scratch)
{
        kiln_buf_clear(scratch);
        kiln_directory_encode(dir, scratch);
        return kiln_rpc_bb_copy(scratch->data, scratch->len);
}

void svc_directory_get(struct srv_call *c)
{
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Tvix__Castore__V1__GetDirectoryRequest *req = NULL;
        if (srv_payload(c, &in) == 0)
                req = tvix__castore__v1__get_directory_request__unpack(NULL, in.len, in.data);
        if (!req)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
                                  "malformed GetDirectoryRequest", NULL);
        bool recursive = req->recursive;
        bool has_digest = req->by_what_case ==
                          TVIX__CASTORE__V1__GET_DIRECTORY_REQUEST__BY_WHAT_DIGEST;
        size_t dlen = req->digest.len;
        struct kiln_digest d = {0};
        if (has_digest && dlen == KILN_DIGEST_LEN)
                memcpy(d.b, req->digest.data, KILN_DIGEST_LEN);
        tvix__castore__v1__get_directory_request__free_unpacked(req, NULL);
        if (!has_digest)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "invalid by_what", NULL);
        if (dlen != KILN_DIGEST_LEN)
                return srv_finishf(c, GRPC_STATUS_INVALID_ARGUMENT, "invalid digest length: %zu",
                                   dlen);

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_buf_done) struct kiln_buf out = KILN_BUF_INIT;
        if (!recursive) {
                struct kiln_directory dir = KILN_DIRECTORY_INIT;
                int r = kiln_directory_get(srv_dirs(c), &d, &dir, &err);
                if (r < 0)
                        return srv_fail(c, err);
                if (r == 0)
                        return srv_finishf(c, GRPC_STATUS_NOT_FOUND, "directory %s not found",
                                           KILN_DIGEST_B64(&d));
                grpc_byte_buffer *bb = encode(&dir, &out);
                kiln_directory_done(&dir);
                atomic_fetch_add(&srv_metrics(c)->directories_sent, 1);
                return srv_finish(c, GRPC_STATUS_OK, NULL, bb);
        }

        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        int r = kiln_directory_get_recursive(srv_dirs(c), &d, &st, &err);
        if (r < 0)
                return srv_fail(c, err);
        for (;;) {
                struct kiln_directory dir = KILN_DIRECTORY_INIT;
                r = kiln_directory_stream_next(st, &dir, NULL, &err);
                if (r < 0)
                        return srv_fail(c, err);
                if (r == 0)
                        break; /* a missing root gives an empty, successful stream */
                grpc_byte_buffer *bb = encode(&dir, &out);
                kiln_directory_done(&dir);
                if (srv_send(c, bb) < 0)
                        return; /* the client went away */
                atomic_fetch_add(&srv_metrics(c)->directories_sent, 1);
        }
        srv_finish(c, GRPC_STATUS_OK, NULL, NULL);
}

void svc_directory_put(struct srv_call *c)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_directory_putter_freep) struct kiln_directory_putter *p = NULL;
        int r = kiln_directory_put_multiple_start(srv_dirs(c), &p, &err);
        if (r < 0)
                return srv_fail(c, err);
        _cleanup_(kiln_buf_done) struct kiln_buf msg = KILN_BUF_INIT;
        size_t n = 0;
        for (;;) {
                r = srv_recv_next(c, &msg);
                if (r < 0)
                        return;
                if (r == 0)
                        break;
                struct kiln_directory dir = KILN_DIRECTORY_INIT;
                r = kiln_directory_decode(msg.data, msg.len, &dir, &err);
                if (r < 0) /* whatever the code (e.g. EOVERFLOW): the client's mistake */
                        return srv_finishf(c, GRPC_STATUS_INVALID_ARGUMENT, "directory #%zu: %s",
                                           n, kiln_error_msg(err));
                r = kiln_directory_putter_put(p, &dir, &err);
                kiln_directory_done(&dir);
                if (r < 0) {
                        kiln_error_prefix(&err, r, "directory #%zu", n);
                        return srv_fail(c, err);
                }
                n++;
        }
        if (n == 0)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "got no directories", NULL);
        /* Clients upload blobs before the Directories naming them: make the
         * blobs durable before those Directories are committed. */
        r = kiln_blob_sync(srv_blobs(c), &err);
        if (r < 0)
                return srv_fail(c, err);
        struct kiln_digest root;
        r = kiln_directory_putter_close(p, &root, &err);
        if (r < 0)
                return srv_fail(c, err);
        atomic_fetch_add(&srv_metrics(c)->directories_put, n);
        Tvix__Castore__V1__PutDirectoryResponse resp =
                TVIX__CASTORE__V1__PUT_DIRECTORY_RESPONSE__INIT;
        resp.root_digest.data = root.b;
        resp.root_digest.len = KILN_DIGEST_LEN;
        uint8_t out[64];
        size_t len = tvix__castore__v1__put_directory_response__pack(&resp, out);
        srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy(out, len));
}
