/* objectstore+file:///abs/path and objectstore+memory://: a chunking blob
 * store over an object store (objstore.h), with upstream's layout.
 *
 * Layout (keys below the base):
 *   chunks/b3/<hex of digest bytes 0..1>/<hex digest>  one chunk, zstd-compressed
 *   blobs/b3/<hex of digest bytes 0..1>/<hex digest>   blob index: a serialized
 *       StatBlobResponse listing the chunks, only for blobs of two or more
 *       (a smaller blob is the chunk with its own digest; upstream also
 *       writes a zero-byte index for those, which kiln reads but does not
 *       write)
 *
 * Writing: the writer hashes the whole blob while FastCDC (fastcdc.h, avg 256
 * KiB unless ?avg_chunk_size=) splits it; each finished chunk is hashed,
 * compressed (zstd level 1, one context per writer) and stored unless
 * present. close() stores the index unless present; chunks are published
 * before the index that names them, so a visible index never lacks its
 * chunks (barring later damage). sync() makes it all durable (objstore.h:
 * publication is atomic, durability batched). A writer holds at most one max-size chunk plus its
 * compressed form. An aborted writer leaves the chunks it already stored:
 * they are complete, verified objects, and removing them could race with
 * another writer that found them present and relied on them.
 *
 * Reading: open_read tries the chunk object under the digest first (it is
 * decompressed and verified at open, since its size is only known then), then
 * the index, whose chunks are fetched one at a time as reading reaches them.
 * Every chunk is decompressed into a reused buffer and checked against its
 * size and BLAKE3 digest before any of its bytes are returned, so a reader
 * holds one decompressed chunk (≤ 2·avg) plus the reused buffers. The index
 * itself cannot be checked without the data: while chunks load in order
 * from the start, a running hash of the whole blob is kept and compared before
 * the last chunk's bytes are returned; a reader that skips ahead by seeking
 * relies on the per-chunk checks only. A stored object that fails to
 * decompress, has the wrong size or hash, or an index that does not parse, is
 * -EBADMSG naming the blob and the chunk; a chunk named by an index but
 * missing is -ENOENT "chunk … not found".
 *
 * The empty blob: has(), open_read() and chunks() treat it as always present
 * (it needs no stored bytes). The reference answers open_read for it but has()
 * false unless it was written (upstream); kiln makes them agree.
 *
 * Locking: the service itself has no mutable state except a small cache of
 * compression contexts and buffers, under a mutex held only to push or pop
 * one entry. The object store does its own locking (none for files, a rwlock
 * for memory). Readers and writers belong to one thread at a time. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <zstd.h>

#include <kiln/blake3/blake3.h>

#include "fastcdc.h"
#include "backends.h"
#include "blob_index.h"
#include "objstore.h"
#include "rpc_blobstore.pb-c.h"

/* The largest chunk any kiln writer produces (max for the largest avg); a
 * bigger stored chunk is refused as corrupt instead of being allocated. */
#define CHUNK_LIMIT      KILN_BLOB_CHUNK_LIMIT
#define COMPRESSED_LIMIT (ZSTD_COMPRESSBOUND(CHUNK_LIMIT) + 4096)
/* Enough for ~6 million chunks (a 1.5 TiB blob at the default size). */
#define INDEX_LIMIT ((size_t)256 << 20)
/* zstd level 1: any level reads back the same, and 1 compresses build
 * outputs about half again as fast as the default 3 for a few percent of
 * size. */
#define ZSTD_LEVEL 1
/* Cached scratch sets (contexts and buffers) kept between readers/writers. */
#define SCRATCH_CACHE_MAX 4

#define KEY_BUFSZ 96

/* Buffers and zstd contexts a reader or writer needs; reused across them so
 * short-lived readers do not fault in fresh pages every time. */
struct scratch {
        struct scratch *next;
        ZSTD_CCtx *cctx;
        ZSTD_DCtx *dctx;
        struct kiln_buf a; /* writer: current chunk; reader: decompressed chunk */
        struct kiln_buf b; /* writer: compressed chunk; reader: stored object */
};

struct os_blob_service {
        struct kiln_blob_service base;
        struct kiln_objstore *store;
        size_t avg;
        pthread_mutex_t lock; /* protects the scratch cache */
        struct scratch *cache;
        unsigned n_cache;
};

struct os_reader {
        struct kiln_blob_reader base;
        struct os_blob_service *svc;
        struct kiln_digest digest;
        struct kiln_chunk *chunks;
        uint64_t *offsets; /* offsets[i] = start of chunk i */
        size_t n;
        size_t cur;  /* chunk held in s->a when loaded */
        bool loaded; /* s->a holds chunk cur, verified */
        struct scratch *s;
        /* Whole-blob check over chunks loaded in order from the start. */
        struct kiln_blake3 whole;
        uint64_t hashed;
};

struct os_writer {
        struct kiln_blob_writer base;
        struct os_blob_service *svc;
        struct kiln_blake3 whole;
        struct kiln_fastcdc cdc;
        struct scratch *s;
        struct kiln_chunk *chunks;
        size_t n, cap;
};

static const char *key_of(char buf[KEY_BUFSZ], const char *ns, const struct kiln_digest *d)
{
        char hex[KILN_DIGEST_HEX_BUFSZ];
        kiln_digest_to_hex(d, hex);
        snprintf(buf, KEY_BUFSZ, "%s/b3/%.4s/%s", ns, hex, hex);
        return buf;
}

/* --- scratch cache --- */

static struct scratch *scratch_get(struct os_blob_service *svc)
{
        pthread_mutex_lock(&svc->lock);
        struct scratch *s = svc->cache;
        if (s) {
                svc->cache = s->next;
                svc->n_cache--;
        }
        pthread_mutex_unlock(&svc->lock);
        if (!s)
                s = kiln_calloc(1, sizeof(*s));
        kiln_buf_clear(&s->a);
        kiln_buf_clear(&s->b);
        return s;
}

static void scratch_free(struct scratch *s)
{
        ZSTD_freeCCtx(s->cctx);
        ZSTD_freeDCtx(s->dctx);
        kiln_buf_done(&s->a);
        kiln_buf_done(&s->b);
        free(s);
}

static void scratch_put(struct os_blob_service *svc, struct scratch *s)
{
        if (!s)
                return;
        pthread_mutex_lock(&svc->lock);
        if (svc->n_cache < SCRATCH_CACHE_MAX) {
                s->next = svc->cache;
                svc->cache = s;
                svc->n_cache++;
                s = NULL;
        }
        pthread_mutex_unlock(&svc->lock);
        if (s)
                scratch_free(s);
}

/* --- decoding stored objects --- */

/* Decompresses the zstd object `in` into out (replacing its contents).
 * Output beyond limit bytes is an error. -EBADMSG with a message saying what
 * is wrong (the caller names the object). */
static int decompress(ZSTD_DCtx *dctx, const struct kiln_buf *in, size_t limit,
                      struct kiln_buf *out, struct kiln_error **err)
{
        kiln_buf_clear(out);
        unsigned long long fcs = ZSTD_getFrameContentSize(in->data, in->len);
        if (fcs == ZSTD_CONTENTSIZE_ERROR)
                return kiln_error_set(err, EBADMSG, "not a zstd frame");
        if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs > limit)
                return kiln_error_set(err, EBADMSG, "decompresses to %llu bytes, more than %zu",
                                      fcs, limit);
        /* The usual case, a single frame that records its size: one shot,
         * straight into the buffer (no streaming window to allocate). */
        if (fcs != ZSTD_CONTENTSIZE_UNKNOWN &&
            ZSTD_findFrameCompressedSize(in->data, in->len) == in->len) {
                kiln_buf_reserve(out, fcs ? (size_t)fcs : 1);
                size_t n = ZSTD_decompressDCtx(dctx, out->data, (size_t)fcs, in->data, in->len);
                if (ZSTD_isError(n))
                        return kiln_error_set(err, EBADMSG, "%s", ZSTD_getErrorName(n));
                if (n != fcs)
                        return kiln_error_set(err, EBADMSG,
                                              "decompressed %zu bytes, frame says %llu", n, fcs);
                out->len = n;
                return 0;
        }
        /* Frames without a recorded size (streaming writers), or several. */
        ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
        ZSTD_inBuffer ib = {in->data, in->len, 0};
        for (;;) {
                if (out->len == out->cap)
                        kiln_buf_reserve(out, KILN_MAX(out->cap, (size_t)64 * 1024));
                size_t avail = KILN_MIN(out->cap, limit + 1);
                ZSTD_outBuffer ob = {out->data, avail, out->len};
                size_t ret = ZSTD_decompressStream(dctx, &ob, &ib);
                if (ZSTD_isError(ret))
                        return kiln_error_set(err, EBADMSG, "%s", ZSTD_getErrorName(ret));
                out->len = ob.pos;
                if (out->len > limit)
                        return kiln_error_set(err, EBADMSG, "decompresses to more than %zu bytes",
                                              limit);
                if (ib.pos == ib.size && ob.pos < ob.size)
                        /* All input used and room left: done if the frame ended. */
                        return ret == 0 ? 0
                                        : kiln_error_set(err, EBADMSG, "truncated zstd frame");
        }
}

int kiln_blob_index_parse(const void *data, size_t len, struct kiln_chunk **ret, size_t *ret_n,
                          struct kiln_error **err)
{
        *ret = NULL;
        *ret_n = 0;
        if (len == 0)
                return 0;
        Tvix__Castore__V1__StatBlobResponse *msg =
                tvix__castore__v1__stat_blob_response__unpack(NULL, len, data);
        if (!msg)
                return kiln_error_set(err, EBADMSG, "not a StatBlobResponse");
        int r = 0;
        _cleanup_free_ struct kiln_chunk *chunks = NULL;
        if (msg->base.n_unknown_fields > 0) {
                r = kiln_error_set(err, EBADMSG, "unknown fields");
                goto out;
        }
        chunks = kiln_calloc(msg->n_chunks, sizeof(*chunks));
        uint64_t total = 0;
        for (size_t i = 0; i < msg->n_chunks; i++) {
                const Tvix__Castore__V1__StatBlobResponse__ChunkMeta *c = msg->chunks[i];
                if (c->base.n_unknown_fields > 0 || c->digest.len != KILN_DIGEST_LEN) {
                        r = kiln_error_set(err, EBADMSG, "chunk #%zu has a malformed digest", i);
                        goto out;
                }
                if (c->size == 0 || c->size > KILN_BLOB_CHUNK_LIMIT ||
                    __builtin_add_overflow(total, c->size, &total) || total > INT64_MAX) {
                        r = kiln_error_set(err, EBADMSG,
                                           "chunk #%zu has an impossible size %" PRIu64, i,
                                           c->size);
                        goto out;
                }
                memcpy(chunks[i].digest.b, c->digest.data, KILN_DIGEST_LEN);
                chunks[i].size = c->size;
        }
        *ret_n = msg->n_chunks;
        *ret = TAKE_PTR(chunks);
out:
        tvix__castore__v1__stat_blob_response__free_unpacked(msg, NULL);
        return r;
}

void kiln_blob_index_encode(const struct kiln_chunk *chunks, size_t n, struct kiln_buf *out)
{
        Tvix__Castore__V1__StatBlobResponse msg = TVIX__CASTORE__V1__STAT_BLOB_RESPONSE__INIT;
        _cleanup_free_ Tvix__Castore__V1__StatBlobResponse__ChunkMeta *metas =
                kiln_calloc(n, sizeof(*metas));
        _cleanup_free_ Tvix__Castore__V1__StatBlobResponse__ChunkMeta **ptrs =
                kiln_calloc(n, sizeof(*ptrs));
        for (size_t i = 0; i < n; i++) {
                tvix__castore__v1__stat_blob_response__chunk_meta__init(&metas[i]);
                metas[i].digest.data = (uint8_t *)chunks[i].digest.b;
                metas[i].digest.len = KILN_DIGEST_LEN;
                metas[i].size = chunks[i].size;
                ptrs[i] = &metas[i];
        }
        msg.n_chunks = n;
        msg.chunks = ptrs;
        size_t len = tvix__castore__v1__stat_blob_response__get_packed_size(&msg);
        if (len == 0)
                return; /* no chunks: no bytes (and maybe no buffer) */
        kiln_buf_reserve(out, len);
        out->len += tvix__castore__v1__stat_blob_response__pack(&msg, out->data + out->len);
}

/* Parses and validates the index of d. *ret (caller frees) may be an empty list. */
static int parse_index(const struct kiln_digest *d, const struct kiln_buf *raw,
                       struct kiln_chunk **ret, size_t *ret_n, struct kiln_error **err)
{
        int r = kiln_blob_index_parse(raw->data, raw->len, ret, ret_n, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "blob %s: index is corrupt", KILN_DIGEST_B64(d));
        return 0;
}

/* Reads the index of d: 1 with the list (possibly empty), 0 if absent. */
static int read_index(struct os_blob_service *svc, const struct kiln_digest *d,
                      struct kiln_buf *raw, struct kiln_chunk **ret, size_t *ret_n,
                      struct kiln_error **err)
{
        char key[KEY_BUFSZ];
        int r = svc->store->ops->get(svc->store, key_of(key, "blobs", d), INDEX_LIMIT, raw, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "blob %s: read index", KILN_DIGEST_B64(d));
        if (r == 0)
                return 0;
        r = parse_index(d, raw, ret, ret_n, err);
        return r < 0 ? r : 1;
}

/* Loads chunk c into s->a and verifies it. `size` is the expected size, or
 * 0 when unknown (a chunk read by its own digest). 1 = loaded, 0 = absent.
 * Errors name the blob and the chunk. */
static int load_chunk(struct os_blob_service *svc, struct scratch *s,
                      const struct kiln_digest *blob, const struct kiln_digest *c, uint64_t size,
                      struct kiln_error **err)
{
        char key[KEY_BUFSZ];
        int r = svc->store->ops->get(svc->store, key_of(key, "chunks", c), COMPRESSED_LIMIT,
                                     &s->b, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "blob %s: chunk %s", KILN_DIGEST_B64(blob),
                                         KILN_DIGEST_B64(c));
        if (r == 0)
                return 0;
        if (!s->dctx)
                s->dctx = ZSTD_createDCtx();
        if (!s->dctx)
                return kiln_error_set(err, ENOMEM, "create zstd decompression context");
        r = decompress(s->dctx, &s->b, size ? (size_t)size : CHUNK_LIMIT, &s->a, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "blob %s: chunk %s is corrupt",
                                         KILN_DIGEST_B64(blob), KILN_DIGEST_B64(c));
        if (size && s->a.len != size)
                return kiln_error_set(err, EBADMSG,
                                      "blob %s: chunk %s is corrupt: %zu bytes, expected %" PRIu64,
                                      KILN_DIGEST_B64(blob), KILN_DIGEST_B64(c), s->a.len, size);
        struct kiln_digest got;
        kiln_digest_of(s->a.data, s->a.len, &got);
        if (!kiln_digest_eq(&got, c))
                return kiln_error_set(err, EBADMSG,
                                      "blob %s: chunk %s is corrupt (contents hash to %s)",
                                      KILN_DIGEST_B64(blob), KILN_DIGEST_B64(c),
                                      KILN_DIGEST_B64(&got));
        return 1;
}

/* --- reader --- */

static size_t locate(const struct os_reader *r, uint64_t pos)
{
        if (r->loaded && pos >= r->offsets[r->cur] &&
            pos - r->offsets[r->cur] < r->chunks[r->cur].size)
                return r->cur;
        size_t lo = 0, hi = r->n; /* the last chunk starting at or before pos */
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (r->offsets[mid] <= pos)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

static int reader_load(struct os_reader *r, size_t i, struct kiln_error **err)
{
        r->loaded = false;
        const struct kiln_chunk *c = &r->chunks[i];
        int rr = load_chunk(r->svc, r->s, &r->digest, &c->digest, c->size, err);
        if (rr < 0)
                return rr;
        if (rr == 0)
                return kiln_error_set(err, ENOENT, "blob %s: chunk %s not found",
                                      KILN_DIGEST_B64(&r->digest), KILN_DIGEST_B64(&c->digest));
        if (r->offsets[i] == r->hashed) {
                kiln_blake3_update(&r->whole, r->s->a.data, r->s->a.len);
                r->hashed += r->s->a.len;
                if (r->hashed == r->base.size) {
                        struct kiln_digest got;
                        kiln_blake3_final(&r->whole, got.b);
                        if (!kiln_digest_eq(&got, &r->digest))
                                return kiln_error_set(err, EBADMSG,
                                                      "blob %s: index is corrupt: its chunks "
                                                      "hash to %s",
                                                      KILN_DIGEST_B64(&r->digest),
                                                      KILN_DIGEST_B64(&got));
                }
        }
        r->cur = i;
        r->loaded = true;
        return 0;
}

static ssize_t os_reader_read(struct kiln_blob_reader *base, void *buf, size_t n,
                              struct kiln_error **err)
{
        struct os_reader *r = (struct os_reader *)base;
        size_t i = locate(r, base->pos);
        if (!r->loaded || i != r->cur) {
                int rr = reader_load(r, i, err);
                if (rr < 0)
                        return rr;
        }
        size_t off = (size_t)(base->pos - r->offsets[i]);
        size_t take = KILN_MIN(n, r->s->a.len - off);
        memcpy(buf, r->s->a.data + off, take);
        return (ssize_t)take;
}

static int os_reader_seek(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err)
{
        (void)r, (void)pos, (void)err;
        return 0; /* reads locate the chunk from the position */
}

static void os_reader_free(struct kiln_blob_reader *base)
{
        struct os_reader *r = (struct os_reader *)base;
        if (!r)
                return;
        scratch_put(r->svc, r->s);
        free(r->chunks);
        free(r->offsets);
        free(r);
}

static const struct kiln_blob_reader_ops os_reader_ops = {
        .read = os_reader_read,
        .seek = os_reader_seek,
        .free = os_reader_free,
};

static struct os_reader *reader_new(struct os_blob_service *svc, const struct kiln_digest *d)
{
        struct os_reader *r = kiln_calloc(1, sizeof(*r));
        r->base.ops = &os_reader_ops;
        r->svc = svc;
        r->digest = *d;
        kiln_blake3_init(&r->whole);
        return r;
}

static int os_blob_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                             struct kiln_blob_reader **ret, struct kiln_error **err)
{
        struct os_blob_service *svc = (struct os_blob_service *)s;
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *rb = NULL;
        struct os_reader *r = reader_new(svc, d);
        rb = &r->base;

        if (kiln_digest_eq(d, &kiln_digest_empty)) {
                *ret = TAKE_PTR(rb);
                return 1;
        }
        r->s = scratch_get(svc);
        /* A chunk under its own digest: the whole blob in one object. */
        int rr = load_chunk(svc, r->s, d, d, 0, err);
        if (rr < 0)
                return rr;
        if (rr > 0) {
                r->n = 1;
                r->chunks = kiln_malloc(sizeof(*r->chunks));
                r->chunks[0] = (struct kiln_chunk){*d, r->s->a.len};
                r->offsets = kiln_calloc(1, sizeof(*r->offsets));
                r->base.size = r->s->a.len;
                r->hashed = r->base.size; /* verified as a whole */
                r->cur = 0;
                r->loaded = true;
                *ret = TAKE_PTR(rb);
                return 1;
        }
        rr = read_index(svc, d, &r->s->b, &r->chunks, &r->n, err);
        if (rr <= 0)
                return rr;
        if (r->n == 0)
                /* The index says "one chunk, under the blob's digest", and it
                 * is not there. */
                return kiln_error_set(err, ENOENT, "blob %s: chunk %s not found",
                                      KILN_DIGEST_B64(d), KILN_DIGEST_B64(d));
        r->offsets = kiln_reallocarray(NULL, r->n, sizeof(*r->offsets));
        uint64_t off = 0;
        for (size_t i = 0; i < r->n; i++) {
                r->offsets[i] = off;
                off += r->chunks[i].size;
        }
        r->base.size = off;
        *ret = TAKE_PTR(rb);
        return 1;
}

/* --- has, chunks --- */

static int os_blob_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                       struct kiln_error **err)
{
        struct os_blob_service *svc = (struct os_blob_service *)s;
        if (kiln_digest_eq(d, &kiln_digest_empty))
                return 1;
        /* Most blobs are a single chunk, so look for that first. */
        char key[KEY_BUFSZ];
        int r = svc->store->ops->exists(svc->store, key_of(key, "chunks", d), err);
        if (r != 0)
                return r;
        return svc->store->ops->exists(svc->store, key_of(key, "blobs", d), err);
}

static int os_blob_chunks(struct kiln_blob_service *s, const struct kiln_digest *d,
                          struct kiln_chunk **ret, size_t *ret_n, struct kiln_error **err)
{
        struct os_blob_service *svc = (struct os_blob_service *)s;
        if (kiln_digest_eq(d, &kiln_digest_empty)) {
                *ret = NULL;
                *ret_n = 0;
                return 1;
        }
        _cleanup_(kiln_buf_done) struct kiln_buf raw = KILN_BUF_INIT;
        struct kiln_chunk *chunks;
        size_t n;
        int r = read_index(svc, d, &raw, &chunks, &n, err);
        if (r < 0)
                return r;
        if (r == 0) {
                char key[KEY_BUFSZ];
                r = svc->store->ops->exists(svc->store, key_of(key, "chunks", d), err);
                if (r <= 0)
                        return r;
                chunks = NULL;
                n = 0;
        }
        *ret = chunks;
        *ret_n = n;
        return 1;
}

/* --- writer --- */

/* Stores a finished chunk. The bytes have already gone through the whole-blob
 * hasher; the first chunk starts the blob, so its digest is that hasher's
 * current value and it is hashed only once (single-chunk blobs, the common
 * case, cost one pass); later chunks are hashed on their own. */
static int writer_store_chunk(struct os_writer *w, const uint8_t *p, size_t n,
                              struct kiln_error **err)
{
        struct os_blob_service *svc = w->svc;
        struct kiln_digest d;
        if (w->n == 0)
                kiln_blake3_final(&w->whole, d.b);
        else
                kiln_digest_of(p, n, &d);
        if (w->n == w->cap) {
                w->cap = w->cap ? 2 * w->cap : 16;
                w->chunks = kiln_reallocarray(w->chunks, w->cap, sizeof(*w->chunks));
        }
        w->chunks[w->n++] = (struct kiln_chunk){d, n};

        char key[KEY_BUFSZ];
        key_of(key, "chunks", &d);
        int r = svc->store->ops->exists(svc->store, key, err);
        if (r < 0)
                return r;
        if (r > 0)
                return 0;
        struct scratch *s = w->s;
        if (!s->cctx) {
                s->cctx = ZSTD_createCCtx();
                if (!s->cctx)
                        return kiln_error_set(err, ENOMEM, "create zstd compression context");
        }
        kiln_buf_clear(&s->b);
        kiln_buf_reserve(&s->b, ZSTD_compressBound(n));
        size_t zn = ZSTD_compressCCtx(s->cctx, s->b.data, s->b.cap, p, n, ZSTD_LEVEL);
        if (ZSTD_isError(zn))
                return kiln_error_set(err, EIO, "compress chunk %s: %s", KILN_DIGEST_B64(&d),
                                      ZSTD_getErrorName(zn));
        r = svc->store->ops->put(svc->store, key, s->b.data, zn, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "store chunk %s", KILN_DIGEST_B64(&d));
        return 0;
}

static int os_writer_write(struct kiln_blob_writer *base, const void *data, size_t n,
                           struct kiln_error **err)
{
        struct os_writer *w = (struct os_writer *)base;
        const uint8_t *p = data;
        while (n > 0) {
                bool cut;
                size_t k = kiln_fastcdc_next(&w->cdc, p, n, &cut);
                kiln_blake3_update(&w->whole, p, k);
                struct kiln_buf *chunk = &w->s->a;
                if (cut && chunk->len == 0) {
                        /* The whole chunk is in the caller's buffer: no copy. */
                        int r = writer_store_chunk(w, p, k, err);
                        if (r < 0)
                                return r;
                } else {
                        kiln_buf_append(chunk, p, k);
                        if (cut) {
                                int r = writer_store_chunk(w, chunk->data, chunk->len, err);
                                if (r < 0)
                                        return r;
                                kiln_buf_clear(chunk);
                        }
                }
                p += k;
                n -= k;
        }
        return 0;
}

static int os_writer_close(struct kiln_blob_writer *base, struct kiln_digest *ret,
                           struct kiln_error **err)
{
        struct os_writer *w = (struct os_writer *)base;
        struct os_blob_service *svc = w->svc;
        struct kiln_buf *chunk = &w->s->a;
        int r;
        if (chunk->len > 0) {
                r = writer_store_chunk(w, chunk->data, chunk->len, err);
                if (r < 0)
                        return r;
                kiln_buf_clear(chunk);
                kiln_fastcdc_reset(&w->cdc);
        }
        struct kiln_digest d;
        kiln_blake3_final(&w->whole, d.b);

        /* A blob of one chunk (or none: the empty blob) is that chunk; only
         * a blob of several chunks gets an index listing them. */
        if (w->n < 2) {
                *ret = d;
                return 0;
        }
        struct kiln_buf *idx = &w->s->b;
        kiln_buf_clear(idx);
        kiln_blob_index_encode(w->chunks, w->n, idx);
        char key[KEY_BUFSZ];
        r = svc->store->ops->put(svc->store, key_of(key, "blobs", &d),
                                 idx->data ? idx->data : (const uint8_t *)"", idx->len, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "store index of blob %s", KILN_DIGEST_B64(&d));
        *ret = d;
        return 0;
}

static void os_writer_free(struct kiln_blob_writer *base)
{
        struct os_writer *w = (struct os_writer *)base;
        if (!w)
                return;
        scratch_put(w->svc, w->s);
        free(w->chunks);
        free(w);
}

static const struct kiln_blob_writer_ops os_writer_ops = {
        .write = os_writer_write,
        .close = os_writer_close,
        .free = os_writer_free,
};

static int os_blob_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                              struct kiln_error **err)
{
        (void)err;
        struct os_blob_service *svc = (struct os_blob_service *)s;
        struct os_writer *w = kiln_calloc(1, sizeof(*w));
        w->base.ops = &os_writer_ops;
        w->svc = svc;
        w->s = scratch_get(svc);
        kiln_blake3_init(&w->whole);
        kiln_fastcdc_init(&w->cdc, svc->avg);
        *ret = &w->base;
        return 0;
}

/* --- service --- */

static void os_blob_free(struct kiln_blob_service *s)
{
        struct os_blob_service *svc = (struct os_blob_service *)s;
        while (svc->cache) {
                struct scratch *next = svc->cache->next;
                scratch_free(svc->cache);
                svc->cache = next;
        }
        kiln_objstore_free(svc->store);
        pthread_mutex_destroy(&svc->lock);
        free(svc);
}

static int os_blob_sync(struct kiln_blob_service *s, struct kiln_error **err)
{
        struct os_blob_service *svc = (struct os_blob_service *)s;
        if (!svc->store->ops->sync)
                return 0;
        return svc->store->ops->sync(svc->store, err);
}

static const struct kiln_blob_service_ops os_blob_ops = {
        .name = "objectstore",
        .has = os_blob_has,
        .open_read = os_blob_open_read,
        .open_write = os_blob_open_write,
        .chunks = os_blob_chunks,
        .sync = os_blob_sync,
        .free = os_blob_free,
};

static int parse_avg(const struct kiln_url *u, size_t *ret, struct kiln_error **err)
{
        _cleanup_free_ char *v = kiln_url_query_get(u, "avg_chunk_size");
        *ret = KILN_FASTCDC_AVG_DEFAULT;
        if (!v)
                return 0;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || x < KILN_FASTCDC_AVG_MIN || x > KILN_FASTCDC_AVG_MAX ||
            (x & (x - 1)))
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): avg_chunk_size must be a "
                                      "power of two from %zu to %zu, got '%s'",
                                      u->scheme, KILN_FASTCDC_AVG_MIN, KILN_FASTCDC_AVG_MAX, v);
        *ret = (size_t)x;
        return 0;
}

static bool only_slashes(const char *p)
{
        return p[strspn(p, "/")] == '\0';
}

int kiln_blob_objectstore_new(const struct kiln_url *u, struct kiln_blob_service **ret,
                              struct kiln_error **err)
{
        if (!u->sub)
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): name the object store, "
                                      "objectstore+file:///abs/path or objectstore+memory://",
                                      u->scheme);
        bool file = !strcmp(u->sub, "file");
        if (!file && strcmp(u->sub, "memory"))
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): unsupported object store "
                                      "'%s' (kiln supports file and memory)",
                                      u->scheme, u->sub);
        if (u->host)
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): host '%s' may not be set%s",
                                      u->scheme, u->host,
                                      file ? " (use objectstore+file:///abs/path)" : "");
        if (u->port)
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): port may not be set",
                                      u->scheme);
        if (file && u->path[0] != '/')
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): needs an absolute path, "
                                      "as in objectstore+file:///abs/path",
                                      u->scheme);
        if (file && only_slashes(u->path))
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): refusing to use '/' as the "
                                      "store directory",
                                      u->scheme);
        if (!file && u->path[0] && strcmp(u->path, "/"))
                return kiln_error_set(err, EINVAL,
                                      "invalid blob service URL (%s): path '%s' may not be set",
                                      u->scheme, u->path);
        static const char *const allowed[] = {"avg_chunk_size", NULL};
        _cleanup_free_ char *what = kiln_asprintf("invalid blob service URL (%s)", u->scheme);
        int r = kiln_url_query_check(u, allowed, what, err);
        if (r < 0)
                return r;
        size_t avg;
        r = parse_avg(u, &avg, err);
        if (r < 0)
                return r;

        struct kiln_objstore *store;
        if (file) {
                r = kiln_objstore_file_new(u->path, &store, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "open blob store '%s'", u->path);
        } else {
                kiln_objstore_memory_new(&store);
        }
        *ret = kiln_blob_objectstore_over(store, avg);
        return 0;
}

struct kiln_blob_service *kiln_blob_objectstore_over(struct kiln_objstore *store, size_t avg)
{
        struct os_blob_service *svc = kiln_calloc(1, sizeof(*svc));
        svc->base.ops = &os_blob_ops;
        svc->store = store;
        svc->avg = avg;
        pthread_mutex_init(&svc->lock, NULL);
        return &svc->base;
}
