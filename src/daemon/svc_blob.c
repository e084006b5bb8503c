/* tvix.castore.v1.BlobService with kiln's changes:
 *
 * - Stat honours send_chunks: without it only has() runs and the chunk list
 *   stays empty.
 * - Read streams BlobChunks of up to 1 MiB (KILN_RPC_CHUNK), filled from the
 *   store reader straight into the message's slice; memory per call is one
 *   message being filled plus the one in flight. Its initial metadata
 *   carries x-kiln-blob-size.
 * - Put writes every message to the store writer as it arrives (any split,
 *   empty messages fine) while the next one is being received; a client
 *   that cancels or disconnects leaves nothing behind (the writer is
 *   aborted, never committed).
 * - Errors carry the store's message with its errno mapped by
 *   kiln_rpc_status_from_errno() (reference: INTERNAL "error copying"). */
#include <inttypes.h>
#include <stdio.h>

#include <grpc/slice.h>

#include "call.h"
#include "metrics.h"
#include "rpc_blobstore.pb-c.h"

static bool digest_arg(struct srv_call *c, const ProtobufCBinaryData *b, struct kiln_digest *d)
{
        if (b->len != KILN_DIGEST_LEN) {
                srv_finishf(c, GRPC_STATUS_INVALID_ARGUMENT, "invalid digest length: %zu",
                            b->len);
                return false;
        }
        memcpy(d->b, b->data, KILN_DIGEST_LEN);
        return true;
}

static void not_found(struct srv_call *c, const struct kiln_digest *d)
{
        srv_finishf(c, GRPC_STATUS_NOT_FOUND, "blob %s not found", KILN_DIGEST_B64(d));
}

void svc_blob_stat(struct srv_call *c)
{
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Tvix__Castore__V1__StatBlobRequest *req = NULL;
        if (srv_payload(c, &in) == 0)
                req = tvix__castore__v1__stat_blob_request__unpack(NULL, in.len, in.data);
        if (!req)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed StatBlobRequest",
                                  NULL);
        struct kiln_digest d;
        bool send_chunks = req->send_chunks;
        bool ok = digest_arg(c, &req->digest, &d);
        tvix__castore__v1__stat_blob_request__free_unpacked(req, NULL);
        if (!ok)
                return;

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_free_ struct kiln_chunk *chunks = NULL;
        size_t n = 0;
        int r = send_chunks ? kiln_blob_chunks(srv_blobs(c), &d, &chunks, &n, &err)
                            : kiln_blob_has(srv_blobs(c), &d, &err);
        if (r < 0)
                return srv_fail(c, err);
        if (r == 0)
                return not_found(c, &d);

        Tvix__Castore__V1__StatBlobResponse resp = TVIX__CASTORE__V1__STAT_BLOB_RESPONSE__INIT;
        _cleanup_free_ Tvix__Castore__V1__StatBlobResponse__ChunkMeta *metas =
                kiln_calloc(n ? n : 1, sizeof(*metas));
        _cleanup_free_ Tvix__Castore__V1__StatBlobResponse__ChunkMeta **ptrs =
                kiln_calloc(n ? n : 1, sizeof(*ptrs));
        for (size_t i = 0; i < n; i++) {
                tvix__castore__v1__stat_blob_response__chunk_meta__init(&metas[i]);
                metas[i].digest.data = chunks[i].digest.b;
                metas[i].digest.len = KILN_DIGEST_LEN;
                metas[i].size = chunks[i].size;
                ptrs[i] = &metas[i];
        }
        resp.n_chunks = n;
        resp.chunks = ptrs;
        size_t len = tvix__castore__v1__stat_blob_response__get_packed_size(&resp);
        grpc_slice s = grpc_slice_malloc(len);
        tvix__castore__v1__stat_blob_response__pack(&resp, GRPC_SLICE_START_PTR(s));
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        srv_finish(c, GRPC_STATUS_OK, NULL, bb);
}

/* Fills up to n bytes (fewer only at the end of the blob). */
static ssize_t fill(struct kiln_blob_reader *rd, uint8_t *p, size_t n, struct kiln_error **err)
{
        size_t got = 0;
        while (got < n) {
                ssize_t r = kiln_blob_reader_read(rd, p + got, n - got, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                got += (size_t)r;
        }
        return (ssize_t)got;
}

void svc_blob_read(struct srv_call *c)
{
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Tvix__Castore__V1__ReadBlobRequest *req = NULL;
        if (srv_payload(c, &in) == 0)
                req = tvix__castore__v1__read_blob_request__unpack(NULL, in.len, in.data);
        if (!req)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed ReadBlobRequest",
                                  NULL);
        struct kiln_digest d;
        bool ok = digest_arg(c, &req->digest, &d);
        tvix__castore__v1__read_blob_request__free_unpacked(req, NULL);
        if (!ok)
                return;

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *rd = NULL;
        int r = kiln_blob_open_read(srv_blobs(c), &d, &rd, &err);
        if (r < 0)
                return srv_fail(c, err);
        if (r == 0)
                return not_found(c, &d);

        uint64_t size = kiln_blob_reader_size(rd);
        if (size != KILN_BLOB_SIZE_UNKNOWN) {
                char num[24];
                snprintf(num, sizeof(num), "%" PRIu64, size);
                grpc_metadata md = {.key = grpc_slice_from_static_string(KILN_RPC_MD_BLOB_SIZE),
                                    .value = grpc_slice_from_copied_string(num)};
                r = srv_send_md(c, &md, 1);
                grpc_slice_unref(md.value);
                if (r < 0)
                        return; /* the client went away */
        }
        for (;;) {
                grpc_slice s = grpc_slice_malloc(KILN_RPC_CHUNK);
                ssize_t n = fill(rd, GRPC_SLICE_START_PTR(s), KILN_RPC_CHUNK, &err);
                if (n <= 0) {
                        grpc_slice_unref(s);
                        if (n < 0)
                                return srv_fail(c, err);
                        break;
                }
                if ((size_t)n < KILN_RPC_CHUNK) {
                        grpc_slice head = grpc_slice_sub(s, 0, (size_t)n);
                        grpc_slice_unref(s);
                        s = head;
                }
                if (srv_send(c, kiln_rpc_blob_chunk_new(s)) < 0)
                        return; /* the client went away */
                atomic_fetch_add(&srv_metrics(c)->blob_read_bytes, (uint64_t)n);
                if ((size_t)n < KILN_RPC_CHUNK)
                        break;
        }
        atomic_fetch_add(&srv_metrics(c)->blobs_read, 1);
        srv_finish(c, GRPC_STATUS_OK, NULL, NULL);
}

struct put {
        struct kiln_blob_writer *w;
        uint64_t bytes;
};

static int write_bytes(void *ud, const uint8_t *p, size_t n, struct kiln_error **err)
{
        struct put *put = ud;
        put->bytes += n;
        return kiln_blob_writer_write(put->w, p, n, err);
}

void svc_blob_put(struct srv_call *c)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_blob_writer_freep) struct kiln_blob_writer *w = NULL;
        int r = kiln_blob_open_write(srv_blobs(c), &w, &err);
        if (r < 0)
                return srv_fail(c, err);
        _cleanup_(kiln_buf_done) struct kiln_buf scratch = KILN_BUF_INIT;
        struct put put = {.w = w};
        for (;;) {
                /* The next message arrives while this one is written. */
                grpc_byte_buffer *bb;
                r = srv_recv_next_bb(c, &bb);
                if (r < 0)
                        return;
                if (r == 0)
                        break;
                r = kiln_rpc_blob_chunk_each(bb, &scratch, write_bytes, &put, &err);
                grpc_byte_buffer_destroy(bb);
                if (r < 0)
                        return srv_fail(c, err);
        }
        struct kiln_digest d;
        r = kiln_blob_writer_close(w, &d, &err);
        if (r < 0)
                return srv_fail(c, err);
        atomic_fetch_add(&srv_metrics(c)->blobs_put, 1);
        atomic_fetch_add(&srv_metrics(c)->blob_put_bytes, put.bytes);
        Tvix__Castore__V1__PutBlobResponse resp = TVIX__CASTORE__V1__PUT_BLOB_RESPONSE__INIT;
        resp.digest.data = d.b;
        resp.digest.len = KILN_DIGEST_LEN;
        uint8_t out[64];
        size_t n = tvix__castore__v1__put_blob_response__pack(&resp, out);
        srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy(out, n));
}
