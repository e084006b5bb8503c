/* grpc+…:// blob service: the client of tvix.castore.v1.BlobService
 * with kiln's improvements. Nothing is buffered whole and every
 * byte is checked against a digest:
 *
 * - A blob the server lists in two or more chunks is read chunk by chunk;
 *   each chunk is fetched by its own digest (one Read, at most
 *   MAX_CHUNK_SIZE bytes) and verified before any of its bytes is returned.
 *   Seeking loads the chunk holding the target. A blob read in order from
 *   start to end is also checked as a whole before its last bytes go out.
 * - Any other blob is one streamed Read, hashed as it arrives. When its
 *   length is known (the kiln server sends it in x-kiln-blob-size, or the
 *   single chunk the server listed says it) the digest is checked before the
 *   last bytes are returned; otherwise at the end of the stream. A mismatch
 *   fails that final read with -EBADMSG: only then may bytes that turned out
 *   to be wrong have been returned earlier. Seeking forwards skips within the
 *   stream; seeking backwards re-opens the Read.
 * - Writes go out as one Put stream, one BlobChunk per write (writes over
 *   1 MiB are split), while the digest is computed locally; close checks
 *   that the server's digest is 32 bytes and equal to ours.
 *
 * The service holds only its channel, so it is thread-safe; readers and
 * writers own their call and are used by one thread at a time. */
#include <pthread.h>
#include <stdio.h>
#include <sys/uio.h>

#include <kiln/blake3/blake3.h>

#include "backends.h"
#include "../../rpc/client.h"
#include "rpc_blobstore.pb-c.h"

#define M_STAT "/tvix.castore.v1.BlobService/Stat"
#define M_READ "/tvix.castore.v1.BlobService/Read"
#define M_PUT  "/tvix.castore.v1.BlobService/Put"

/* A chunk listed by Stat is loaded whole: refuse absurd sizes. */
#define MAX_CHUNK_SIZE (64u << 20)

struct grpc_blob_service {
        struct kiln_blob_service base;
        struct rpc_channel *ch;
};

static int bad(struct grpc_blob_service *g, int code, struct kiln_error **err, const char *what,
               const struct kiln_digest *d)
{
        return kiln_error_set(err, code, "blob %s from %s: %s", KILN_DIGEST_B64(d),
                              rpc_channel_url(g->ch), what);
}

/* Stat: 1 with the response in *resp, 0 for NOT_FOUND. */
static int stat_blob(struct grpc_blob_service *g, const struct kiln_digest *d, bool send_chunks,
                     struct kiln_buf *resp, struct kiln_error **err)
{
        Tvix__Castore__V1__StatBlobRequest req = TVIX__CASTORE__V1__STAT_BLOB_REQUEST__INIT;
        req.digest.data = (uint8_t *)d->b;
        req.digest.len = KILN_DIGEST_LEN;
        req.send_chunks = send_chunks;
        uint8_t buf[64];
        size_t n = tvix__castore__v1__stat_blob_request__pack(&req, buf);
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        int r = rpc_unary(g->ch, M_STAT, buf, n, 0, NULL, resp, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return rpc_error_move(err, &e, r);
        return 1;
}

static int grpc_blob_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                         struct kiln_error **err)
{
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        return stat_blob((struct grpc_blob_service *)s, d, false, &resp, err);
}

static int grpc_blob_chunks(struct kiln_blob_service *s, const struct kiln_digest *d,
                            struct kiln_chunk **ret, size_t *ret_n, struct kiln_error **err)
{
        struct grpc_blob_service *g = (struct grpc_blob_service *)s;
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        int r = stat_blob(g, d, true, &resp, err);
        if (r <= 0)
                return r;
        Tvix__Castore__V1__StatBlobResponse *m =
                tvix__castore__v1__stat_blob_response__unpack(NULL, resp.len, resp.data);
        if (!m)
                return bad(g, EBADMSG, err, "malformed StatBlobResponse", d);
        struct kiln_chunk *chunks = kiln_calloc(m->n_chunks ? m->n_chunks : 1, sizeof(*chunks));
        uint64_t total = 0;
        for (size_t i = 0; i < m->n_chunks; i++) {
                const Tvix__Castore__V1__StatBlobResponse__ChunkMeta *c = m->chunks[i];
                if (c->digest.len != KILN_DIGEST_LEN) {
                        free(chunks);
                        size_t len = c->digest.len;
                        tvix__castore__v1__stat_blob_response__free_unpacked(m, NULL);
                        return kiln_error_set(err, EBADMSG,
                                              "blob %s from %s: invalid digest length %zu for "
                                              "chunk #%zu",
                                              KILN_DIGEST_B64(d), rpc_channel_url(g->ch), len, i);
                }
                memcpy(chunks[i].digest.b, c->digest.data, KILN_DIGEST_LEN);
                chunks[i].size = c->size;
                if (__builtin_add_overflow(total, c->size, &total)) {
                        free(chunks);
                        tvix__castore__v1__stat_blob_response__free_unpacked(m, NULL);
                        return bad(g, EBADMSG, err, "chunk sizes overflow", d);
                }
        }
        *ret_n = m->n_chunks;
        tvix__castore__v1__stat_blob_response__free_unpacked(m, NULL);
        *ret = chunks;
        return 1;
}

/* Starts Read(digest) and half-closes. */
static int start_read(struct grpc_blob_service *g, const struct kiln_digest *d,
                      struct rpc_call *c, struct kiln_error **err)
{
        Tvix__Castore__V1__ReadBlobRequest req = TVIX__CASTORE__V1__READ_BLOB_REQUEST__INIT;
        req.digest.data = (uint8_t *)d->b;
        req.digest.len = KILN_DIGEST_LEN;
        uint8_t buf[64];
        size_t n = tvix__castore__v1__read_blob_request__pack(&req, buf);
        int r = rpc_call_start(c, g->ch, M_READ, 0, NULL, err);
        if (r >= 0)
                r = rpc_call_send(c, kiln_rpc_bb_copy(buf, n), err);
        if (r >= 0)
                r = rpc_call_close_send(c, err);
        return r;
}

/* --- streamed reader (blobs without a finer chunk list) --- */

/* A received message, kept as gRPC delivered it: its payload is the list of
 * pieces of the message's slices (or of `copy`, for an encoding whose header
 * spans slices), so no byte is copied before it goes to the caller. */
struct msg {
        grpc_byte_buffer *bb;
        struct kiln_buf copy;
        struct iovec *seg;
        size_t nseg, cap;
        size_t len;
};

static void msg_clear(struct msg *m)
{
        if (m->bb)
                grpc_byte_buffer_destroy(m->bb);
        m->bb = NULL;
        m->nseg = m->len = 0;
}

static void msg_done(struct msg *m)
{
        msg_clear(m);
        kiln_buf_done(&m->copy);
        free(m->seg);
}

static int msg_add(void *ud, const uint8_t *p, size_t n, struct kiln_error **err)
{
        (void)err;
        struct msg *m = ud;
        if (m->nseg == m->cap) {
                m->cap = m->cap ? 2 * m->cap : 32;
                m->seg = kiln_reallocarray(m->seg, m->cap, sizeof(*m->seg));
        }
        m->seg[m->nseg++] = (struct iovec){(void *)p, n};
        m->len += n;
        return 0;
}

static void msg_hash(struct kiln_blake3 *h, const struct msg *m)
{
        for (size_t i = 0; i < m->nseg; i++)
                kiln_blake3_update(h, m->seg[i].iov_base, m->seg[i].iov_len);
}

/* Hashing beside the reading: once a stream has brought ASYNC_AFTER bytes,
 * its messages are hashed on a thread of its own while the caller consumes
 * them, so verification costs no time on the reading path. Received
 * messages live in a ring of RING slots; a slot is received into again only
 * once the hasher is done with it. */
#define RING        4
#define ASYNC_AFTER (2u << 20)

struct hash_worker {
        pthread_t thread;
        bool running, stop;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct kiln_blake3 *hasher;
        const struct msg *msg[RING];
        bool busy[RING];
        unsigned queue[RING];
        unsigned qhead, qlen;
};

static void *hash_loop(void *arg)
{
        struct hash_worker *hw = arg;
        pthread_mutex_lock(&hw->lock);
        for (;;) {
                while (!hw->qlen && !hw->stop)
                        pthread_cond_wait(&hw->cond, &hw->lock);
                if (!hw->qlen)
                        break;
                unsigned slot = hw->queue[hw->qhead];
                pthread_mutex_unlock(&hw->lock);
                msg_hash(hw->hasher, hw->msg[slot]);
                pthread_mutex_lock(&hw->lock);
                hw->qhead = (hw->qhead + 1) % RING;
                hw->qlen--;
                hw->busy[slot] = false;
                pthread_cond_broadcast(&hw->cond);
        }
        pthread_mutex_unlock(&hw->lock);
        return NULL;
}

/* Waits until the hasher is done with `slot` (RING: with everything). */
static void hash_wait(struct hash_worker *hw, unsigned slot)
{
        if (!hw->running)
                return;
        pthread_mutex_lock(&hw->lock);
        while (slot < RING ? hw->busy[slot] : hw->qlen > 0)
                pthread_cond_wait(&hw->cond, &hw->lock);
        pthread_mutex_unlock(&hw->lock);
}

static void hash_submit(struct hash_worker *hw, unsigned slot, const struct msg *m)
{
        if (!hw->running) {
                msg_hash(hw->hasher, m);
                return;
        }
        pthread_mutex_lock(&hw->lock);
        hw->msg[slot] = m;
        hw->busy[slot] = true;
        hw->queue[(hw->qhead + hw->qlen) % RING] = slot;
        hw->qlen++;
        pthread_cond_broadcast(&hw->cond);
        pthread_mutex_unlock(&hw->lock);
}

static void hash_start(struct hash_worker *hw)
{
        if (hw->running)
                return;
        hw->stop = false;
        hw->qhead = hw->qlen = 0;
        memset(hw->busy, 0, sizeof(hw->busy));
        hw->running = pthread_create(&hw->thread, NULL, hash_loop, hw) == 0;
}

static void hash_stop(struct hash_worker *hw)
{
        if (!hw->running)
                return;
        pthread_mutex_lock(&hw->lock);
        hw->stop = true;
        pthread_cond_broadcast(&hw->cond);
        pthread_mutex_unlock(&hw->lock);
        pthread_join(hw->thread, NULL); /* it drains the queue first */
        hw->running = false;
}

/* Where the caller is in the current message: its offset, and the piece
 * and the offset in it that this is. */
struct cursor {
        const struct msg *m;
        size_t off, seg, seg_off;
};

static void cursor_seek(struct cursor *c, size_t off)
{
        c->off = off;
        c->seg = 0;
        while (c->seg < c->m->nseg && off >= c->m->seg[c->seg].iov_len)
                off -= c->m->seg[c->seg++].iov_len;
        c->seg_off = off;
}

/* Moves n bytes on, copying them to out unless it is NULL. */
static void cursor_copy(struct cursor *c, uint8_t *out, size_t n)
{
        c->off += n;
        while (n) {
                const struct iovec *v = &c->m->seg[c->seg];
                size_t k = KILN_MIN(n, v->iov_len - c->seg_off);
                if (out) {
                        memcpy(out, (const uint8_t *)v->iov_base + c->seg_off, k);
                        out += k;
                }
                n -= k;
                c->seg_off += k;
                if (c->seg_off == v->iov_len)
                        c->seg++, c->seg_off = 0;
        }
}

struct stream_reader {
        struct kiln_blob_reader base;
        struct grpc_blob_service *svc;
        struct kiln_digest digest;
        bool size_known;
        struct rpc_call call;
        struct msg ring[RING]; /* received messages, their memory reused */
        unsigned slot;         /* the ring slot holding the current message */
        struct cursor cur;     /* bytes of it handed out (or skipped) */
        uint64_t received;     /* payload bytes received (and hashed) so far */
        struct kiln_blake3 hasher;
        struct hash_worker hw;
        bool eof;      /* the stream ended with OK */
        bool verified; /* the digest matched */
};

static const struct msg no_msg;

static size_t cur_left(const struct stream_reader *sr)
{
        return sr->cur.m->len - sr->cur.off;
}

static uint64_t stream_pos(const struct stream_reader *sr)
{
        return sr->received - cur_left(sr);
}

/* Receives the next message: 1, 0 at the end (then verified), < 0. */
static int stream_next(struct stream_reader *sr, struct kiln_error **err)
{
        struct grpc_blob_service *g = sr->svc;
        if (sr->eof)
                return 0;
        /* Receive into the next ring slot; the current one stays intact. */
        unsigned next = (sr->slot + 1) % RING;
        hash_wait(&sr->hw, next);
        struct msg *m = &sr->ring[next];
        msg_clear(m);
        int r = rpc_call_recv_bb(&sr->call, &m->bb, err);
        if (r < 0)
                return r;
        if (r == 0) {
                sr->eof = true;
                hash_stop(&sr->hw);
                uint8_t got[KILN_DIGEST_LEN];
                kiln_blake3_final(&sr->hasher, got);
                if (memcmp(got, sr->digest.b, KILN_DIGEST_LEN))
                        return bad(g, EBADMSG, err, "received data does not match the digest",
                                   &sr->digest);
                if (sr->size_known && sr->received != sr->base.size)
                        return bad(g, EBADMSG, err, "received fewer bytes than announced",
                                   &sr->digest);
                sr->verified = true;
                sr->base.size = sr->received;
                sr->size_known = true;
                return 0;
        }
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        if (kiln_rpc_blob_chunk_each(m->bb, &m->copy, msg_add, m, &e) < 0)
                return bad(g, EBADMSG, err, "malformed BlobChunk", &sr->digest);
        if (sr->size_known && m->len > sr->base.size - sr->received)
                return bad(g, EBADMSG, err, "received more bytes than announced", &sr->digest);
        sr->cur = (struct cursor){.m = m};
        if (m->len == 0)
                return 1; /* nothing to keep: the slot may be received into again */
        sr->slot = next;
        if (sr->received >= ASYNC_AFTER)
                hash_start(&sr->hw);
        hash_submit(&sr->hw, next, m);
        sr->received += m->len;
        return 1;
}

/* (Re)starts the Read and receives the first message; 0 when the server
 * says NOT_FOUND. */
static int stream_open(struct stream_reader *sr, struct kiln_error **err)
{
        rpc_call_done(&sr->call);
        hash_stop(&sr->hw);
        sr->cur = (struct cursor){.m = &no_msg};
        sr->received = 0;
        sr->eof = sr->verified = false;
        kiln_blake3_init(&sr->hasher);
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        int r = start_read(sr->svc, &sr->digest, &sr->call, &e);
        if (r >= 0)
                r = rpc_call_recv_md(&sr->call, &e);
        if (r >= 0 && !sr->size_known) {
                const grpc_slice *v = kiln_rpc_md_get(&sr->call.initial_md, KILN_RPC_MD_BLOB_SIZE);
                char num[24];
                if (v && GRPC_SLICE_LENGTH(*v) > 0 && GRPC_SLICE_LENGTH(*v) < sizeof(num)) {
                        memcpy(num, GRPC_SLICE_START_PTR(*v), GRPC_SLICE_LENGTH(*v));
                        num[GRPC_SLICE_LENGTH(*v)] = '\0';
                        char *end;
                        errno = 0;
                        unsigned long long sz = strtoull(num, &end, 10);
                        if (!*end && !errno && sz != KILN_BLOB_SIZE_UNKNOWN) {
                                sr->base.size = sz;
                                sr->size_known = true;
                        }
                }
        }
        if (r >= 0)
                r = stream_next(sr, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return rpc_error_move(err, &e, r);
        return 1;
}

static int stream_seek(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err);

/* How many of the next n bytes the caller may take now (the cursor is at
 * them), receiving messages as needed: > 0, 0 at the end, or < 0. With
 * one_piece, no more than the rest of the cursor's piece. */
static ssize_t stream_take(struct stream_reader *sr, size_t n, bool one_piece,
                           struct kiln_error **err)
{
        if (stream_pos(sr) != sr->base.pos) { /* after a failed seek */
                int rr = stream_seek(&sr->base, sr->base.pos, err);
                if (rr < 0)
                        return rr;
        }
        while (!cur_left(sr)) {
                int rr = stream_next(sr, err);
                if (rr <= 0)
                        return rr;
        }
        size_t take = KILN_MIN(n, cur_left(sr));
        if (one_piece)
                take = KILN_MIN(take, sr->cur.m->seg[sr->cur.seg].iov_len - sr->cur.seg_off);
        /* Withhold the last bytes of a blob of known length until the stream
         * has ended and the digest matched. */
        if (sr->size_known && !sr->verified && stream_pos(sr) + take == sr->base.size) {
                /* stream_next() receives into another ring slot. */
                struct cursor keep = sr->cur;
                int rr;
                do
                        rr = stream_next(sr, err);
                while (rr > 0 && sr->cur.m->len == 0);
                sr->cur = keep;
                if (rr < 0)
                        return rr;
                if (rr > 0)
                        return bad(sr->svc, EBADMSG, err, "received more bytes than announced",
                                   &sr->digest);
        }
        return (ssize_t)take;
}

static ssize_t stream_read(struct kiln_blob_reader *r, void *buf, size_t n,
                           struct kiln_error **err)
{
        struct stream_reader *sr = (struct stream_reader *)r;
        ssize_t take = stream_take(sr, n, false, err);
        if (take > 0)
                cursor_copy(&sr->cur, buf, (size_t)take);
        return take;
}

static ssize_t stream_read_view(struct kiln_blob_reader *r, size_t n, const void **ret,
                                struct kiln_error **err)
{
        struct stream_reader *sr = (struct stream_reader *)r;
        ssize_t take = stream_take(sr, n, true, err);
        if (take > 0) {
                *ret = (const uint8_t *)sr->cur.m->seg[sr->cur.seg].iov_base + sr->cur.seg_off;
                cursor_copy(&sr->cur, NULL, (size_t)take);
        }
        return take;
}

static int stream_seek(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err)
{
        struct stream_reader *sr = (struct stream_reader *)r;
        uint64_t msg_start = sr->received - sr->cur.m->len;
        if (pos < msg_start) {
                int rr = stream_open(sr, err);
                if (rr == 0)
                        return kiln_error_set(err, ENOENT, "blob %s from %s: gone while reading",
                                              KILN_DIGEST_B64(&sr->digest),
                                              rpc_channel_url(sr->svc->ch));
                if (rr < 0)
                        return rr;
        }
        for (;;) {
                msg_start = sr->received - sr->cur.m->len;
                if (pos <= sr->received) {
                        cursor_seek(&sr->cur, (size_t)(pos - msg_start));
                        return 0;
                }
                cursor_seek(&sr->cur, sr->cur.m->len);
                int rr = stream_next(sr, err);
                if (rr < 0)
                        return rr;
                if (rr == 0)
                        return kiln_error_set(err, EINVAL, "seeked beyond EOF");
        }
}

static void stream_free(struct kiln_blob_reader *r)
{
        struct stream_reader *sr = (struct stream_reader *)r;
        rpc_call_done(&sr->call);
        hash_stop(&sr->hw);
        pthread_mutex_destroy(&sr->hw.lock);
        pthread_cond_destroy(&sr->hw.cond);
        for (unsigned i = 0; i < RING; i++)
                msg_done(&sr->ring[i]);
        free(sr);
}

static const struct kiln_blob_reader_ops stream_reader_ops = {
        .read = stream_read,
        .read_view = stream_read_view,
        .seek = stream_seek,
        .free = stream_free,
};

/* --- chunked reader --- */

struct chunked_reader {
        struct kiln_blob_reader base;
        struct grpc_blob_service *svc;
        struct kiln_digest digest;
        struct kiln_chunk *chunks;
        uint64_t *offsets; /* n + 1 entries */
        size_t n;
        size_t cur; /* loaded chunk, or SIZE_MAX */
        struct kiln_buf data;
        struct kiln_buf msg;
        /* Whole-blob check while reading in order from the start. */
        struct kiln_blake3 hasher;
        uint64_t hashed;
        bool in_order;
        /* Reading in order, the chunks come from one Read of the whole blob
         * (one call instead of one per chunk); `carry` holds what the last
         * message brought beyond the chunk being assembled. */
        struct rpc_call stream;
        bool streaming;
        uint64_t stream_pos;
        struct kiln_buf carry;
        size_t carry_off;
        bool no_stream; /* the server reads only the chunks themselves */
};

static void stream_stop(struct chunked_reader *cr)
{
        if (cr->streaming)
                rpc_call_done(&cr->stream);
        cr->streaming = false;
        kiln_buf_clear(&cr->carry);
        cr->carry_off = 0;
}

/* Assembles chunk i (which starts where the stream is) from the whole-blob
 * stream into cr->data; 0, or < 0 with the stream stopped. */
static int stream_chunk(struct chunked_reader *cr, size_t i, struct kiln_error **err)
{
        const struct kiln_chunk *c = &cr->chunks[i];
        int r = 0;
        if (!cr->streaming) {
                r = start_read(cr->svc, &cr->digest, &cr->stream, err);
                if (r < 0) {
                        rpc_call_done(&cr->stream);
                        return r;
                }
                cr->streaming = true;
                cr->stream_pos = 0;
        }
        while (cr->data.len < c->size) {
                if (cr->carry_off == cr->carry.len) {
                        r = rpc_call_recv(&cr->stream, &cr->msg, err);
                        if (r == 0)
                                r = kiln_error_set(err, EBADMSG,
                                                   "the blob ended before its chunk list did");
                        if (r < 0)
                                break;
                        const uint8_t *p;
                        size_t len;
                        r = kiln_rpc_blob_chunk_decode(cr->msg.data, cr->msg.len, &p, &len, err);
                        if (r < 0)
                                break;
                        kiln_buf_clear(&cr->carry);
                        kiln_buf_append(&cr->carry, p, len);
                        cr->carry_off = 0;
                }
                size_t take = KILN_MIN(c->size - cr->data.len, cr->carry.len - cr->carry_off);
                kiln_buf_append(&cr->data, cr->carry.data + cr->carry_off, take);
                cr->carry_off += take;
        }
        if (r < 0) {
                stream_stop(cr);
                return r;
        }
        cr->stream_pos += c->size;
        return 0;
}

static int load_chunk(struct chunked_reader *cr, size_t i, struct kiln_error **err)
{
        struct grpc_blob_service *g = cr->svc;
        const struct kiln_chunk *c = &cr->chunks[i];
        cr->cur = SIZE_MAX;
        kiln_buf_clear(&cr->data);
        if (!cr->no_stream && ((cr->streaming && cr->stream_pos == cr->offsets[i]) ||
                               (!cr->streaming && i == 0))) {
                _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
                int r = stream_chunk(cr, i, &e);
                if (r == -ENOENT && i == 0) {
                        /* Some servers keep only the chunks: read those. */
                        cr->no_stream = true;
                        return load_chunk(cr, i, err);
                }
                if (r < 0) {
                        r = kiln_error_prefix(&e, r, "blob %s from %s",
                                              KILN_DIGEST_B64(&cr->digest),
                                              rpc_channel_url(g->ch));
                        return rpc_error_move(err, &e, r);
                }
                struct kiln_digest got;
                kiln_digest_of(cr->data.data, cr->data.len, &got);
                if (!kiln_digest_eq(&got, &c->digest))
                        return kiln_error_set(err, EBADMSG,
                                              "blob %s from %s: chunk %s does not match its "
                                              "digest",
                                              KILN_DIGEST_B64(&cr->digest),
                                              rpc_channel_url(g->ch), KILN_DIGEST_B64(&c->digest));
                cr->cur = i;
                return 0;
        }
        /* Out of order: this chunk on its own. */
        stream_stop(cr);
        struct rpc_call call;
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        int r = start_read(g, &c->digest, &call, &e);
        struct kiln_blake3 h;
        kiln_blake3_init(&h);
        while (r >= 0) {
                r = rpc_call_recv(&call, &cr->msg, &e);
                if (r <= 0)
                        break;
                const uint8_t *p;
                size_t len;
                r = kiln_rpc_blob_chunk_decode(cr->msg.data, cr->msg.len, &p, &len, &e);
                if (r < 0)
                        break;
                if (len > c->size - cr->data.len) {
                        r = kiln_error_set(&e, EBADMSG, "chunk longer than listed");
                        break;
                }
                kiln_blake3_update(&h, p, len);
                kiln_buf_append(&cr->data, p, len);
        }
        rpc_call_done(&call);
        if (r == -ENOENT)
                return kiln_error_set(err, ENOENT, "blob %s from %s: chunk %s not found",
                                      KILN_DIGEST_B64(&cr->digest), rpc_channel_url(g->ch),
                                      KILN_DIGEST_B64(&c->digest));
        if (r < 0) {
                r = kiln_error_prefix(&e, r, "blob %s: chunk %s", KILN_DIGEST_B64(&cr->digest),
                                      KILN_DIGEST_B64(&c->digest));
                return rpc_error_move(err, &e, r);
        }
        struct kiln_digest got;
        kiln_blake3_final(&h, got.b);
        if (cr->data.len != c->size || !kiln_digest_eq(&got, &c->digest))
                return kiln_error_set(err, EBADMSG,
                                      "blob %s from %s: chunk %s does not match its digest",
                                      KILN_DIGEST_B64(&cr->digest), rpc_channel_url(g->ch),
                                      KILN_DIGEST_B64(&c->digest));
        cr->cur = i;
        return 0;
}

/* The chunk holding pos (< size): the last with offset <= pos and a length. */
static size_t find_chunk(const struct chunked_reader *cr, uint64_t pos)
{
        size_t lo = 0, hi = cr->n; /* offsets[lo] <= pos < offsets[hi] */
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (cr->offsets[mid] <= pos)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

static ssize_t chunked_read(struct kiln_blob_reader *r, void *buf, size_t n,
                            struct kiln_error **err)
{
        struct chunked_reader *cr = (struct chunked_reader *)r;
        uint64_t pos = r->pos;
        size_t i = cr->cur != SIZE_MAX && pos >= cr->offsets[cr->cur] &&
                                   pos < cr->offsets[cr->cur + 1]
                           ? cr->cur
                           : find_chunk(cr, pos);
        if (i != cr->cur) {
                int rr = load_chunk(cr, i, err);
                if (rr < 0)
                        return rr;
        }
        size_t off = (size_t)(pos - cr->offsets[i]);
        size_t take = KILN_MIN(n, cr->data.len - off);
        const uint8_t *p = cr->data.data + off;
        if (cr->in_order && cr->hashed == pos) {
                kiln_blake3_update(&cr->hasher, p, take);
                cr->hashed += take;
                if (cr->hashed == r->size) {
                        struct kiln_digest got;
                        kiln_blake3_final(&cr->hasher, got.b);
                        if (!kiln_digest_eq(&got, &cr->digest))
                                return bad(cr->svc, EBADMSG, err,
                                           "its chunks do not add up to the digest",
                                           &cr->digest);
                }
        } else {
                cr->in_order = false;
        }
        memcpy(buf, p, take);
        return (ssize_t)take;
}

static int chunked_seek(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err)
{
        (void)r, (void)pos, (void)err;
        return 0; /* the chunk is found at the next read */
}

static void chunked_free(struct kiln_blob_reader *r)
{
        struct chunked_reader *cr = (struct chunked_reader *)r;
        stream_stop(cr);
        kiln_buf_done(&cr->carry);
        free(cr->chunks);
        free(cr->offsets);
        kiln_buf_done(&cr->data);
        kiln_buf_done(&cr->msg);
        free(cr);
}

static const struct kiln_blob_reader_ops chunked_reader_ops = {
        .read = chunked_read,
        .seek = chunked_seek,
        .free = chunked_free,
};

static int grpc_blob_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                               struct kiln_blob_reader **ret, struct kiln_error **err)
{
        struct grpc_blob_service *g = (struct grpc_blob_service *)s;
        struct kiln_chunk *chunks = NULL;
        size_t n = 0;
        int r = grpc_blob_chunks(s, d, &chunks, &n, err);
        if (r <= 0)
                return r;
        if (n >= 2) {
                struct chunked_reader *cr = kiln_calloc(1, sizeof(*cr));
                cr->base.ops = &chunked_reader_ops;
                cr->svc = g;
                cr->digest = *d;
                cr->chunks = chunks;
                cr->n = n;
                cr->cur = SIZE_MAX;
                cr->offsets = kiln_calloc(n + 1, sizeof(*cr->offsets));
                for (size_t i = 0; i < n; i++) {
                        if (chunks[i].size > MAX_CHUNK_SIZE) {
                                chunked_free(&cr->base);
                                return bad(g, EBADMSG, err, "a listed chunk is too large", d);
                        }
                        cr->offsets[i + 1] = cr->offsets[i] + chunks[i].size;
                }
                cr->base.size = cr->offsets[n];
                kiln_blake3_init(&cr->hasher);
                cr->in_order = true;
                *ret = &cr->base;
                return 1;
        }
        struct stream_reader *sr = kiln_calloc(1, sizeof(*sr));
        sr->base.ops = &stream_reader_ops;
        sr->svc = g;
        sr->hw.hasher = &sr->hasher;
        sr->cur.m = &no_msg;
        pthread_mutex_init(&sr->hw.lock, NULL);
        pthread_cond_init(&sr->hw.cond, NULL);
        sr->digest = *d;
        sr->base.size = KILN_BLOB_SIZE_UNKNOWN;
        if (n == 1) {
                sr->base.size = chunks[0].size;
                sr->size_known = true;
        } else if (kiln_digest_eq(d, &kiln_digest_empty)) {
                sr->base.size = 0;
                sr->size_known = true;
        }
        free(chunks);
        r = stream_open(sr, err);
        if (r <= 0) {
                stream_free(&sr->base);
                return r;
        }
        *ret = &sr->base;
        return 1;
}

/* --- writer --- */

struct grpc_blob_writer {
        struct kiln_blob_writer base;
        struct grpc_blob_service *svc;
        struct rpc_call call;
        struct kiln_blake3 hasher;
        /* Small writes are gathered into messages of KILN_RPC_CHUNK bytes:
         * each message waits for the previous one, so their count matters. */
        grpc_slice pending;
        size_t pending_len;
        bool has_pending;
};

static int writer_flush(struct grpc_blob_writer *gw, struct kiln_error **err)
{
        if (!gw->has_pending)
                return 0;
        grpc_slice s = grpc_slice_sub_no_ref(gw->pending, 0, gw->pending_len);
        gw->has_pending = false;
        gw->pending_len = 0;
        int r = rpc_call_send(&gw->call, kiln_rpc_blob_chunk_new(s), err);
        if (r < 0)
                return r;
        return 0;
}

static int writer_write(struct kiln_blob_writer *w, const void *p, size_t n,
                        struct kiln_error **err)
{
        struct grpc_blob_writer *gw = (struct grpc_blob_writer *)w;
        const uint8_t *b = p;
        while (n) {
                if (!gw->has_pending) {
                        gw->pending = grpc_slice_malloc(KILN_RPC_CHUNK);
                        gw->has_pending = true;
                }
                size_t take = KILN_MIN(n, (size_t)KILN_RPC_CHUNK - gw->pending_len);
                memcpy(GRPC_SLICE_START_PTR(gw->pending) + gw->pending_len, b, take);
                kiln_blake3_update(&gw->hasher, b, take);
                gw->pending_len += take;
                b += take;
                n -= take;
                if (gw->pending_len == KILN_RPC_CHUNK) {
                        int r = writer_flush(gw, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int writer_close(struct kiln_blob_writer *w, struct kiln_digest *ret,
                        struct kiln_error **err)
{
        struct grpc_blob_writer *gw = (struct grpc_blob_writer *)w;
        const char *url = rpc_channel_url(gw->svc->ch);
        int r = writer_flush(gw, err);
        if (r >= 0)
                r = rpc_call_close_send(&gw->call, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        r = rpc_call_recv(&gw->call, &resp, err);
        if (r < 0)
                return r;
        if (r == 0)
                return kiln_error_set(err, EIO, "BlobService/Put on %s: no response", url);
        _cleanup_(kiln_buf_done) struct kiln_buf extra = KILN_BUF_INIT;
        r = rpc_call_recv(&gw->call, &extra, err);
        if (r < 0)
                return r;
        if (r > 0)
                return kiln_error_set(err, EBADMSG, "BlobService/Put on %s: more than one response",
                                      url);
        Tvix__Castore__V1__PutBlobResponse *m =
                tvix__castore__v1__put_blob_response__unpack(NULL, resp.len, resp.data);
        if (!m)
                return kiln_error_set(err, EBADMSG,
                                      "BlobService/Put on %s: malformed PutBlobResponse", url);
        size_t len = m->digest.len;
        struct kiln_digest got = {0};
        if (len == KILN_DIGEST_LEN)
                memcpy(got.b, m->digest.data, len);
        tvix__castore__v1__put_blob_response__free_unpacked(m, NULL);
        if (len != KILN_DIGEST_LEN)
                return kiln_error_set(err, EBADMSG,
                                      "BlobService/Put on %s: invalid digest length %zu", url,
                                      len);
        struct kiln_digest mine;
        kiln_blake3_final(&gw->hasher, mine.b);
        if (!kiln_digest_eq(&got, &mine))
                return kiln_error_set(err, EBADMSG,
                                      "BlobService/Put on %s: server stored %s, but we sent %s",
                                      url, KILN_DIGEST_B64(&got), KILN_DIGEST_B64(&mine));
        *ret = mine;
        return 0;
}

static void writer_free(struct kiln_blob_writer *w)
{
        struct grpc_blob_writer *gw = (struct grpc_blob_writer *)w;
        if (gw->has_pending)
                grpc_slice_unref(gw->pending);
        rpc_call_done(&gw->call); /* cancels an unclosed upload: the server stores nothing */
        free(gw);
}

static const struct kiln_blob_writer_ops writer_ops = {
        .write = writer_write,
        .close = writer_close,
        .free = writer_free,
};

static int grpc_blob_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                                struct kiln_error **err)
{
        struct grpc_blob_writer *w = kiln_calloc(1, sizeof(*w));
        w->base.ops = &writer_ops;
        w->svc = (struct grpc_blob_service *)s;
        kiln_blake3_init(&w->hasher);
        int r = rpc_call_start(&w->call, w->svc->ch, M_PUT, 0, NULL, err);
        if (r < 0) {
                writer_free(&w->base);
                return r;
        }
        *ret = &w->base;
        return 0;
}

static void grpc_blob_free(struct kiln_blob_service *s)
{
        struct grpc_blob_service *g = (struct grpc_blob_service *)s;
        rpc_channel_unref(g->ch);
        free(g);
}

static const struct kiln_blob_service_ops grpc_blob_ops = {
        .name = "grpc",
        .has = grpc_blob_has,
        .open_read = grpc_blob_open_read,
        .open_write = grpc_blob_open_write,
        .chunks = grpc_blob_chunks,
        .free = grpc_blob_free,
};

int kiln_blob_grpc_new(const struct kiln_url *u, const char *url, struct kiln_blob_service **ret,
                       struct kiln_error **err)
{
        struct rpc_channel *ch;
        int r = rpc_channel_open(u, url, &ch, err);
        if (r < 0)
                return r;
        struct grpc_blob_service *g = kiln_calloc(1, sizeof(*g));
        g->base.ops = &grpc_blob_ops;
        g->ch = ch;
        *ret = &g->base;
        return 0;
}
