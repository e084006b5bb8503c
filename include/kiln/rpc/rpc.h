/* gRPC plumbing shared by libkiln's clients and the daemon (builds with the
 * `grpc` feature only): the one mapping between errno codes and gRPC status
 * codes, message size limits, and the byte-buffer helpers both sides use. */
#pragma once

#include <grpc/grpc.h>

#include <kiln/util/error.h>

/* Largest message kiln accepts, on both sides (channel argument
 * grpc.max_receive_message_length). Reference peers accept 4 MiB; kiln takes
 * more so a large Directory or BuildRequest from a peer with a higher limit
 * still fits, while bounding what one message can make us allocate. */
#define KILN_RPC_MAX_RECV (16 * 1024 * 1024)
/* Largest BlobChunk payload kiln sends (well below every peer's limit). */
#define KILN_RPC_CHUNK (1024 * 1024)

/* Initial metadata a kiln server adds to a BlobService/Read response: the
 * blob's length in decimal, so a client can size its reader before the data
 * arrives. Other peers ignore it; kiln clients work without it. */
#define KILN_RPC_MD_BLOB_SIZE "x-kiln-blob-size"

/* The channel arguments kiln's clients and server share: the receive limit
 * above, and HTTP/2 and socket buffering sized for bulk blob streams (large
 * frames and flow-control windows, big socket reads), which matters most on
 * unix sockets where the defaults make streaming latency-bound. */
KILN_PUBLIC const grpc_channel_args *kiln_rpc_channel_args(void);

/* Calls grpc_init(), the first time routing gRPC's own log lines: they are
 * dropped (kiln reports every failure itself, in one line) unless KILN_LOG
 * is "debug" or GRPC_VERBOSITY asks for them. Pair with grpc_shutdown(). */
KILN_PUBLIC void kiln_rpc_init(void);

/* errno → status: ENOENT NOT_FOUND, EINVAL INVALID_ARGUMENT, EBADMSG
 * DATA_LOSS, EEXIST ALREADY_EXISTS, ENOTSUP UNIMPLEMENTED, ENOSPC
 * RESOURCE_EXHAUSTED, ETIMEDOUT DEADLINE_EXCEEDED, ECANCELED CANCELLED,
 * EAGAIN UNAVAILABLE, ENOEXEC FAILED_PRECONDITION, EACCES and EPERM
 * PERMISSION_DENIED, anything else INTERNAL. `code` is positive or negative. */
KILN_PUBLIC grpc_status_code kiln_rpc_status_from_errno(int code);
/* status → positive errno, the inverse of the table above; UNKNOWN,
 * INTERNAL, ABORTED, OUT_OF_RANGE and others give EIO; OK gives 0. */
KILN_PUBLIC int kiln_rpc_errno_from_status(grpc_status_code status);
/* "NOT_FOUND", "INVALID_ARGUMENT", … ("STATUS_<n>" for unknown values). */
KILN_PUBLIC const char *kiln_rpc_status_name(grpc_status_code status);

/* Copies a received message into b (cleared first, its memory reused). */
KILN_PUBLIC void kiln_rpc_bb_read(grpc_byte_buffer *bb, struct kiln_buf *b);
/* A new message holding a copy of (p, n). */
KILN_PUBLIC grpc_byte_buffer *kiln_rpc_bb_copy(const void *p, size_t n);

/* BlobChunk { bytes data = 1; } framing, hand-coded because it sits on the
 * hot path. Decoding accepts any valid encoding (unknown fields skipped, the
 * last `data` wins) and points *ret_data into (p, n); -EINVAL when
 * malformed. */
KILN_PUBLIC int kiln_rpc_blob_chunk_decode(const uint8_t *p, size_t n, const uint8_t **ret_data,
                                           size_t *ret_len, struct kiln_error **err);
/* Hands the `data` bytes of a received BlobChunk to fn, in order and in
 * place, slice by slice, when the message is only that field (as every
 * encoder writes it); any other valid encoding is copied into *scratch and
 * decoded. Returns fn's first negative value, -EINVAL when malformed, or 0. */
typedef int (*kiln_rpc_bytes_fn)(void *ud, const uint8_t *p, size_t n, struct kiln_error **err);
KILN_PUBLIC int kiln_rpc_blob_chunk_each(grpc_byte_buffer *bb, struct kiln_buf *scratch,
                                         kiln_rpc_bytes_fn fn, void *ud, struct kiln_error **err);
/* A BlobChunk message around `data` (taken over; the bytes are not copied). */
KILN_PUBLIC grpc_byte_buffer *kiln_rpc_blob_chunk_new(grpc_slice data);

/* Looks up a metadata value by key; NULL when absent. The pointer is into
 * the array, valid while it lives. */
KILN_PUBLIC const grpc_slice *kiln_rpc_md_get(const grpc_metadata_array *md, const char *key);
