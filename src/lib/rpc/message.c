/* Byte-buffer helpers and the BlobChunk framing shared by clients and the
 * daemon. */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include <kiln/rpc/rpc.h>

void kiln_rpc_bb_read(grpc_byte_buffer *bb, struct kiln_buf *b)
{
        kiln_buf_clear(b);
        kiln_buf_reserve(b, grpc_byte_buffer_length(bb));
        grpc_byte_buffer_reader rd;
        if (!grpc_byte_buffer_reader_init(&rd, bb))
                abort(); /* only fails for compressed buffers, which we never negotiate */
        grpc_slice s;
        while (grpc_byte_buffer_reader_next(&rd, &s)) {
                kiln_buf_append(b, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
                grpc_slice_unref(s);
        }
        grpc_byte_buffer_reader_destroy(&rd);
}

grpc_byte_buffer *kiln_rpc_bb_copy(const void *p, size_t n)
{
        grpc_slice s = grpc_slice_from_copied_buffer(p, n);
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        return bb;
}

/* Reads a varint at *pos; false when truncated or longer than 10 bytes. */
static bool varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *ret)
{
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 70; shift += 7) {
                if (*pos >= n)
                        return false;
                uint8_t c = p[(*pos)++];
                v |= (uint64_t)(c & 0x7f) << shift;
                if (!(c & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

int kiln_rpc_blob_chunk_decode(const uint8_t *p, size_t n, const uint8_t **ret_data,
                               size_t *ret_len, struct kiln_error **err)
{
        const uint8_t *data = NULL;
        size_t len = 0, pos = 0;
        while (pos < n) {
                uint64_t key, v;
                if (!varint(p, n, &pos, &key))
                        goto bad;
                switch (key & 7) {
                case 0: /* varint */
                        if (!varint(p, n, &pos, &v))
                                goto bad;
                        break;
                case 1: /* 64-bit */
                        if (n - pos < 8)
                                goto bad;
                        pos += 8;
                        break;
                case 2: /* length-delimited */
                        if (!varint(p, n, &pos, &v) || v > n - pos)
                                goto bad;
                        if (key >> 3 == 1) {
                                data = p + pos;
                                len = (size_t)v;
                        }
                        pos += (size_t)v;
                        break;
                case 5: /* 32-bit */
                        if (n - pos < 4)
                                goto bad;
                        pos += 4;
                        break;
                default:
                        goto bad;
                }
                if (key >> 3 == 0 || (key >> 3 == 1 && (key & 7) != 2))
                        goto bad;
        }
        *ret_data = data;
        *ret_len = len;
        return 0;
bad:
        return kiln_error_set(err, EINVAL, "malformed BlobChunk message");
}

/* The length of a `data = 1` field header at the start of (p, n), with the
 * field's length in *ret_len; 0 when (p, n) does not start with one. */
static size_t chunk_header(const uint8_t *p, size_t n, uint64_t *ret_len)
{
        size_t pos = 1;
        if (n < 2 || p[0] != 0x0a || !varint(p, n, &pos, ret_len))
                return 0;
        return pos;
}

int kiln_rpc_blob_chunk_each(grpc_byte_buffer *bb, struct kiln_buf *scratch,
                             kiln_rpc_bytes_fn fn, void *ud, struct kiln_error **err)
{
        size_t total = grpc_byte_buffer_length(bb);
        if (total == 0)
                return 0; /* an empty chunk */
        grpc_byte_buffer_reader rd;
        if (!grpc_byte_buffer_reader_init(&rd, bb))
                abort(); /* only fails for compressed buffers, which we never negotiate */
        grpc_slice *s;
        uint64_t len = 0;
        size_t h = 0;
        if (grpc_byte_buffer_reader_peek(&rd, &s))
                h = chunk_header(GRPC_SLICE_START_PTR(*s), GRPC_SLICE_LENGTH(*s), &len);
        int r = 0;
        if (h && len == total - h) {
                size_t skip = h;
                do {
                        size_t n = GRPC_SLICE_LENGTH(*s);
                        if (n > skip)
                                r = fn(ud, GRPC_SLICE_START_PTR(*s) + skip, n - skip, err);
                        skip = 0;
                } while (r >= 0 && grpc_byte_buffer_reader_peek(&rd, &s));
                grpc_byte_buffer_reader_destroy(&rd);
                return r < 0 ? r : 0;
        }
        grpc_byte_buffer_reader_destroy(&rd);
        kiln_rpc_bb_read(bb, scratch);
        const uint8_t *data;
        size_t n;
        r = kiln_rpc_blob_chunk_decode(scratch->data, scratch->len, &data, &n, err);
        if (r < 0 || n == 0)
                return r;
        return fn(ud, data, n, err);
}

grpc_byte_buffer *kiln_rpc_blob_chunk_new(grpc_slice data)
{
        size_t len = GRPC_SLICE_LENGTH(data);
        uint8_t hdr[11];
        size_t h = 0;
        if (len) { /* proto3: an empty `data` is not written */
                hdr[h++] = 0x0a;
                for (uint64_t v = len; ; v >>= 7) {
                        hdr[h++] = (uint8_t)(v & 0x7f) | (v >= 0x80 ? 0x80 : 0);
                        if (v < 0x80)
                                break;
                }
        }
        grpc_slice slices[2] = {grpc_slice_from_copied_buffer((const char *)hdr, h), data};
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(slices, 2);
        grpc_slice_unref(slices[0]);
        grpc_slice_unref(slices[1]);
        return bb;
}

const grpc_slice *kiln_rpc_md_get(const grpc_metadata_array *md, const char *key)
{
        size_t klen = strlen(key);
        for (size_t i = 0; i < md->count; i++)
                if (GRPC_SLICE_LENGTH(md->metadata[i].key) == klen &&
                    !memcmp(GRPC_SLICE_START_PTR(md->metadata[i].key), key, klen))
                        return &md->metadata[i].value;
        return NULL;
}

const grpc_channel_args *kiln_rpc_channel_args(void)
{
        static grpc_arg args[] = {
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                 .value.integer = KILN_RPC_MAX_RECV},
                /* How far a receiver lets its peer run ahead (the stream's
                 * flow-control window before BDP probing grows it). */
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                 .value.integer = 8 * 1024 * 1024},
                /* The largest HTTP/2 frame: 1 MiB messages in few frames. */
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_HTTP2_MAX_FRAME_SIZE,
                 .value.integer = 16 * 1024 * 1024 - 1},
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE,
                 .value.integer = 8 * 1024 * 1024},
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_TCP_READ_CHUNK_SIZE,
                 .value.integer = 1024 * 1024},
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_TCP_MIN_READ_CHUNK_SIZE,
                 .value.integer = 256 * 1024},
                {.type = GRPC_ARG_INTEGER,
                 .key = (char *)GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE,
                 .value.integer = 4 * 1024 * 1024},
        };
        static const grpc_channel_args cargs = {.num_args = KILN_ARRAY_SIZE(args), .args = args};
        return &cargs;
}
