/* The blob index of the objectstore blob backend (blob_objectstore.c): the
 * object blobs/b3/<hex>/<hex> listing a blob's chunks, a serialized
 * tvix.castore.v1.StatBlobResponse as upstream writes it. It comes from disk
 * (or from whoever else writes the store), so it is parsed as outside bytes;
 * fuzz/fuzz_blob_index.c checks these two and reads through what they
 * accept. */
#pragma once

#include <kiln/store/store.h>

#include "fastcdc.h"

/* The largest chunk any kiln writer produces (max for the largest avg); an
 * index naming a bigger one is corrupt. */
#define KILN_BLOB_CHUNK_LIMIT (2 * KILN_FASTCDC_AVG_MAX)

/* Parses an index: *ret (caller frees) gets its chunks, possibly none (a
 * zero-byte index, as upstream writes for single-chunk blobs, or one
 * listing no chunk). -EBADMSG with a one-line reason when the bytes are no
 * StatBlobResponse, hold unknown fields, a digest not 32 bytes long, a chunk
 * size of 0 or above KILN_BLOB_CHUNK_LIMIT, or a total above INT64_MAX. The
 * bao field is ignored. */
int kiln_blob_index_parse(const void *data, size_t len, struct kiln_chunk **ret, size_t *ret_n,
                          struct kiln_error **err);

/* Appends the canonical encoding of an index listing chunks[0..n). */
void kiln_blob_index_encode(const struct kiln_chunk *chunks, size_t n, struct kiln_buf *out);
