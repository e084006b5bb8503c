/* The objectstore blob index (blob_index.h): what the backend reads from
 * blobs/b3/… on disk, and the reads that go through it. Byte 0 bit 0 picks:
 *
 * raw: the rest is index bytes. A rejection is one line; an accepted index
 * has every chunk size in (0, KILN_BLOB_CHUNK_LIMIT] and a total within
 * INT64_MAX, re-encodes to bytes that parse to the same list and are a fixed
 * point, the same bytes a plain encoder written here gives; planted in a
 * store, kiln_blob_chunks() gives the same list (or the same rejection) and
 * reads fail with one line (its chunks are not there).
 *
 * built: up to 4 pieces, each stored as a chunk object in a way the input
 * picks (by the writer, zstd without a content size, two zstd frames,
 * garbage, zstd of other bytes, or not at all), and an index listing pieces
 * with right or wrong sizes, encoded here canonically or not (fields swapped,
 * a bao field), under the digest of the pieces' bytes or a wrong one. The
 * index parses to exactly the listed chunks (or is rejected for a size of 0
 * or above the limit). Reading from the start in input-chosen pieces returns
 * a prefix of the listed bytes made of whole verified chunks, and succeeds
 * exactly when every listed chunk is stored intact with its listed size and
 * the bytes hash to the blob's digest; a read after a seek returns the bytes
 * at that offset whenever its chunk is intact and the index is right. */
#include <zstd.h>

#include <kiln/blake3/blake3.h>
#include <kiln/store/store.h>

#include "backends.h"
#include "blob_index.h"
#include "fuzz.h"
#include "objstore.h"

#define PIECES_MAX  4
#define ENTRIES_MAX 8

struct cursor {
        const uint8_t *p;
        size_t n;
};

static uint8_t next(struct cursor *c)
{
        if (!c->n)
                return 0;
        c->n--;
        return *c->p++;
}

static void key_of(char *buf, size_t n, const char *ns, const struct kiln_digest *d)
{
        char hex[KILN_DIGEST_HEX_BUFSZ];
        kiln_digest_to_hex(d, hex);
        snprintf(buf, n, "%s/b3/%.4s/%s", ns, hex, hex);
}

static void put(struct kiln_objstore *o, const char *ns, const struct kiln_digest *d, const void *p,
                size_t n)
{
        struct kiln_error *err = NULL;
        char key[128];
        key_of(key, sizeof(key), ns, d);
        FUZZ_CHECK(o->ops->put(o, key, n ? p : "", n, &err) >= 0);
}

static bool chunks_eq(const struct kiln_chunk *a, size_t na, const struct kiln_chunk *b, size_t nb)
{
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!kiln_digest_eq(&a[i].digest, &b[i].digest) || a[i].size != b[i].size)
                        return false;
        return true;
}

/* --- a plain encoder of StatBlobResponse --- */

static void varint(struct kiln_buf *b, uint64_t v)
{
        while (v >= 0x80) {
                kiln_buf_append_byte(b, (uint8_t)(v | 0x80));
                v >>= 7;
        }
        kiln_buf_append_byte(b, (uint8_t)v);
}

/* swap: size before digest in each ChunkMeta; bao: a bao field (3) at the end. */
static void plain_encode(const struct kiln_chunk *c, size_t n, bool swap, bool bao,
                         struct kiln_buf *out)
{
        for (size_t i = 0; i < n; i++) {
                struct kiln_buf m = KILN_BUF_INIT, sz = KILN_BUF_INIT;
                if (c[i].size) {
                        kiln_buf_append_byte(&sz, 2 << 3);
                        varint(&sz, c[i].size);
                }
                if (swap)
                        kiln_buf_append(&m, sz.data, sz.len);
                kiln_buf_append_byte(&m, 1 << 3 | 2);
                varint(&m, KILN_DIGEST_LEN);
                kiln_buf_append(&m, c[i].digest.b, KILN_DIGEST_LEN);
                if (!swap)
                        kiln_buf_append(&m, sz.data, sz.len);
                kiln_buf_append_byte(out, 2 << 3 | 2);
                varint(out, m.len);
                kiln_buf_append(out, m.data, m.len);
                kiln_buf_done(&m);
                kiln_buf_done(&sz);
        }
        if (bao) {
                kiln_buf_append_byte(out, 3 << 3 | 2);
                varint(out, 3);
                kiln_buf_append(out, "bao", 3);
        }
}

/* Checks an accepted list: bounds, re-encoding, the plain encoder. */
static void check_list(const struct kiln_chunk *l, size_t n)
{
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++) {
                FUZZ_CHECK(l[i].size > 0 && l[i].size <= KILN_BLOB_CHUNK_LIMIT);
                total += l[i].size;
                FUZZ_CHECK(total <= INT64_MAX);
        }
        struct kiln_error *err = NULL;
        struct kiln_buf enc = KILN_BUF_INIT, enc2 = KILN_BUF_INIT, plain = KILN_BUF_INIT;
        kiln_blob_index_encode(l, n, &enc);
        plain_encode(l, n, false, false, &plain);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &plain));
        struct kiln_chunk *again;
        size_t n_again;
        FUZZ_CHECK(kiln_blob_index_parse(enc.data, enc.len, &again, &n_again, &err) == 0);
        FUZZ_CHECK(chunks_eq(l, n, again, n_again));
        kiln_blob_index_encode(again, n_again, &enc2);
        FUZZ_CHECK(fuzz_buf_eq(&enc, &enc2));
        free(again);
        kiln_buf_done(&enc);
        kiln_buf_done(&enc2);
        kiln_buf_done(&plain);
}

/* A read that must fail: one line, nothing returned. */
static void read_fails(struct kiln_blob_service *svc, const struct kiln_digest *d)
{
        struct kiln_error *err = NULL;
        struct kiln_blob_reader *r = NULL;
        int rr = kiln_blob_open_read(svc, d, &r, &err);
        if (rr == 0)
                return; /* absent */
        if (rr < 0) {
                fuzz_rejected(rr, &err);
                return;
        }
        uint8_t buf[256];
        ssize_t got = kiln_blob_reader_read(r, buf, sizeof(buf), &err);
        fuzz_rejected((int)got, &err);
        kiln_blob_reader_free(r);
}

static void raw(const uint8_t *data, size_t size)
{
        struct kiln_error *err = NULL;
        struct kiln_chunk *l = NULL;
        size_t n = 0;
        int r = kiln_blob_index_parse(data, size, &l, &n, &err);
        bool ok = r == 0;
        if (ok)
                check_list(l, n);
        else
                fuzz_rejected(r, &err);

        struct kiln_objstore *o;
        FUZZ_CHECK(kiln_objstore_memory_new(&o) == 0);
        struct kiln_blob_service *svc = kiln_blob_objectstore_over(o, KILN_FASTCDC_AVG_MIN);
        struct kiln_digest d;
        kiln_digest_of(data, size, &d);
        d.b[0] ^= 1; /* not the digest of any stored chunk */
        put(o, "blobs", &d, data, size);
        struct kiln_chunk *got = NULL;
        size_t n_got = 0;
        r = kiln_blob_chunks(svc, &d, &got, &n_got, &err);
        FUZZ_CHECK((r == 1) == ok);
        if (ok)
                FUZZ_CHECK(chunks_eq(l, n, got, n_got));
        else
                fuzz_rejected(r, &err);
        read_fails(svc, &d);
        free(got);
        free(l);
        kiln_blob_service_free(svc);
}

/* How a piece is stored. */
enum plant {
        PLANT_WRITER,
        PLANT_NO_SIZE,    /* zstd, no content size in the frame */
        PLANT_TWO_FRAMES, /* zstd, two frames */
        PLANT_GARBAGE,    /* the bytes themselves, no zstd frame */
        PLANT_OTHER,      /* zstd of other bytes */
        PLANT_ABSENT,
        PLANT_N,
};

struct piece {
        uint8_t data[512];
        size_t len;
        struct kiln_digest digest;
        enum plant plant;
        bool intact; /* what is stored under its digest decodes to it */
        bool stored;
};

static void zstd_put(struct kiln_objstore *o, const struct kiln_digest *d, const uint8_t *p,
                     size_t n, bool size_flag)
{
        uint8_t z[2048];
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        FUZZ_CHECK(cctx);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, size_flag);
        size_t zn = ZSTD_compress2(cctx, z, sizeof(z), p, n);
        FUZZ_CHECK(!ZSTD_isError(zn));
        ZSTD_freeCCtx(cctx);
        put(o, "chunks", d, z, zn);
}

static void plant(struct kiln_blob_service *svc, struct kiln_objstore *o, struct piece *pc)
{
        struct kiln_error *err = NULL;
        switch (pc->plant) {
        case PLANT_WRITER: {
                struct kiln_blob_writer *w;
                struct kiln_digest d;
                FUZZ_CHECK(kiln_blob_open_write(svc, &w, &err) == 0);
                FUZZ_CHECK(kiln_blob_writer_write(w, pc->data, pc->len, &err) == 0);
                FUZZ_CHECK(kiln_blob_writer_close(w, &d, &err) == 0);
                FUZZ_CHECK(kiln_digest_eq(&d, &pc->digest));
                kiln_blob_writer_free(w);
                break;
        }
        case PLANT_NO_SIZE:
                zstd_put(o, &pc->digest, pc->data, pc->len, false);
                break;
        case PLANT_TWO_FRAMES: {
                uint8_t z[4096];
                size_t half = pc->len / 2, zn = 0;
                for (int f = 0; f < 2; f++) {
                        size_t k = ZSTD_compress(z + zn, sizeof(z) - zn, pc->data + (f ? half : 0),
                                                 f ? pc->len - half : half, 1);
                        FUZZ_CHECK(!ZSTD_isError(k));
                        zn += k;
                }
                put(o, "chunks", &pc->digest, z, zn);
                break;
        }
        case PLANT_GARBAGE:
                put(o, "chunks", &pc->digest, pc->data, pc->len);
                break;
        case PLANT_OTHER: {
                uint8_t other[sizeof(pc->data)];
                memcpy(other, pc->data, pc->len);
                other[pc->len - 1] ^= 0x80;
                zstd_put(o, &pc->digest, other, pc->len, true);
                break;
        }
        default:
                break;
        }
}

static void built(struct cursor *c, uint8_t flags)
{
        struct kiln_error *err = NULL;
        struct piece pieces[PIECES_MAX];
        size_t n_pieces = 1 + next(c) % PIECES_MAX;
        for (size_t i = 0; i < n_pieces; i++) {
                struct piece *pc = &pieces[i];
                pc->len = 1 + next(c) * 2 % sizeof(pc->data);
                pc->plant = (enum plant)(next(c) % PLANT_N);
                for (size_t k = 0; k < pc->len; k++)
                        pc->data[k] = c->n ? next(c) : (uint8_t)(k * 7 + i);
                kiln_digest_of(pc->data, pc->len, &pc->digest);
        }
        /* A put over an existing object changes nothing: the first piece
         * with these bytes that is stored at all decides. */
        for (size_t i = 0; i < n_pieces; i++) {
                pieces[i].stored = pieces[i].intact = false;
                for (size_t j = 0; j < n_pieces; j++)
                        if (kiln_digest_eq(&pieces[j].digest, &pieces[i].digest) &&
                            pieces[j].plant != PLANT_ABSENT) {
                                pieces[i].stored = true;
                                pieces[i].intact = pieces[j].plant <= PLANT_TWO_FRAMES;
                                break;
                        }
        }

        struct kiln_chunk list[ENTRIES_MAX];
        size_t piece_of[ENTRIES_MAX];
        size_t n = next(c) % (ENTRIES_MAX + 1);
        bool sizes_ok = true;
        for (size_t i = 0; i < n; i++) {
                uint8_t e = next(c);
                piece_of[i] = e % n_pieces;
                const struct piece *pc = &pieces[piece_of[i]];
                list[i] = (struct kiln_chunk){pc->digest, pc->len};
                if (e & 0x40) { /* a chunk nobody stored */
                        list[i].digest.b[0] ^= 0x55;
                        piece_of[i] = SIZE_MAX;
                }
                if (e & 0x80) { /* a wrong size */
                        uint8_t s = next(c);
                        list[i].size = s == 0xff   ? (uint64_t)KILN_BLOB_CHUNK_LIMIT + 1
                                       : s == 0xfe ? 0
                                                   : list[i].size + s % 8 - 3;
                }
                if (list[i].size == 0 || list[i].size > KILN_BLOB_CHUNK_LIMIT)
                        sizes_ok = false;
        }
        struct kiln_buf idx = KILN_BUF_INIT;
        plain_encode(list, n, flags & 2, flags & 4, &idx);

        struct kiln_chunk *l = NULL;
        size_t n_l = 0;
        int r = kiln_blob_index_parse(idx.data, idx.len, &l, &n_l, &err);
        FUZZ_CHECK((r == 0) == sizes_ok);
        if (r < 0) {
                fuzz_rejected(r, &err);
        } else {
                FUZZ_CHECK(chunks_eq(list, n, l, n_l));
                check_list(l, n_l);
        }
        free(l);

        /* The bytes the index lists, as stored, and the blob's digest. */
        uint8_t bytes[ENTRIES_MAX * sizeof(pieces[0].data)];
        uint64_t offsets[ENTRIES_MAX + 1] = {0};
        size_t n_bytes = 0;
        bool intact = sizes_ok && n > 0; /* every listed chunk readable as listed */
        size_t first_bad = n;
        for (size_t i = 0; i < n; i++) {
                const struct piece *pc = piece_of[i] == SIZE_MAX ? NULL : &pieces[piece_of[i]];
                bool good = pc && pc->stored && pc->intact && list[i].size == pc->len;
                if (!good && first_bad == n)
                        first_bad = i;
                intact = intact && good;
                if (pc) {
                        memcpy(bytes + n_bytes, pc->data, pc->len);
                        n_bytes += pc->len;
                }
                offsets[i + 1] = offsets[i] + list[i].size;
        }
        struct kiln_digest whole, d;
        kiln_digest_of(bytes, n_bytes, &whole);
        switch ((flags >> 3) & 3) {
        case 0:
        case 1:
                d = whole;
                break;
        case 2:
                d = pieces[0].digest; /* maybe a stored chunk of its own */
                break;
        default:
                kiln_digest_of(&flags, 1, &d);
                break;
        }

        struct kiln_objstore *o;
        FUZZ_CHECK(kiln_objstore_memory_new(&o) == 0);
        struct kiln_blob_service *svc = kiln_blob_objectstore_over(o, KILN_FASTCDC_AVG_MIN);
        for (size_t i = 0; i < n_pieces; i++)
                plant(svc, o, &pieces[i]);
        put(o, "blobs", &d, idx.data, idx.len);
        kiln_buf_done(&idx);

        /* What a read of d must give: the empty blob; a chunk stored under
         * d itself; or the index's chunks. */
        const struct piece *own = NULL;
        for (size_t i = 0; i < n_pieces && !own; i++)
                if (kiln_digest_eq(&pieces[i].digest, &d) && pieces[i].stored)
                        own = &pieces[i];
        bool by_index = !own && !kiln_digest_eq(&d, &kiln_digest_empty);
        bool hash_ok = kiln_digest_eq(&whole, &d);
        bool want_ok = kiln_digest_eq(&d, &kiln_digest_empty) || (own && own->intact) ||
                       (by_index && intact && hash_ok);

        struct kiln_blob_reader *rd = NULL;
        r = kiln_blob_open_read(svc, &d, &rd, &err);
        FUZZ_CHECK(r != 0);
        if (r < 0) {
                FUZZ_CHECK(!want_ok);
                FUZZ_CHECK(!by_index || !sizes_ok || n == 0);
                fuzz_rejected(r, &err);
                goto out;
        }
        FUZZ_CHECK(!by_index || (sizes_ok && n > 0));
        const uint8_t *want = own ? own->data : bytes;
        uint64_t want_size = kiln_digest_eq(&d, &kiln_digest_empty) ? 0
                             : own                                  ? own->len
                                                                    : offsets[n];
        FUZZ_CHECK(kiln_blob_reader_size(rd) == want_size);
        uint8_t buf[sizeof(bytes) + 64];
        size_t pos = 0;
        ssize_t got = 0;
        for (;;) {
                size_t ask = 1 + next(c) * 3;
                got = kiln_blob_reader_read(rd, buf + pos, KILN_MIN(ask, sizeof(buf) - pos), &err);
                if (got <= 0)
                        break;
                pos += (size_t)got;
                FUZZ_CHECK(pos <= want_size);
        }
        if (got == 0) {
                FUZZ_CHECK(want_ok);
                FUZZ_CHECK(pos == want_size);
        } else {
                FUZZ_CHECK(!want_ok);
                fuzz_rejected((int)got, &err);
        }
        FUZZ_CHECK(pos == 0 || !memcmp(buf, want, pos));
        if (by_index && got < 0) {
                /* Whole verified chunks only, none past a bad one, and not the
                 * last one unless the bytes hash right. */
                size_t k = 0;
                while (k < n && offsets[k] < pos)
                        k++;
                FUZZ_CHECK(offsets[k] == pos && k <= first_bad && (hash_ok || k < n));
        }
        kiln_blob_reader_free(rd);

        /* Reads after a seek. */
        if (!by_index || !want_size)
                goto out;
        for (int s = 0; s < 3 && c->n; s++) {
                FUZZ_CHECK(kiln_blob_open_read(svc, &d, &rd, &err) == 1);
                uint64_t at = ((uint64_t)next(c) << 8 | next(c)) % want_size;
                uint64_t new_pos;
                FUZZ_CHECK(kiln_blob_reader_seek(rd, (int64_t)at, SEEK_SET, &new_pos, &err) == 0);
                FUZZ_CHECK(new_pos == at);
                size_t k = 0;
                while (offsets[k + 1] <= at)
                        k++;
                const struct piece *pc = piece_of[k] == SIZE_MAX ? NULL : &pieces[piece_of[k]];
                bool good = pc && pc->stored && pc->intact && list[k].size == pc->len;
                got = kiln_blob_reader_read(rd, buf, sizeof(buf), &err);
                if (got > 0) {
                        FUZZ_CHECK(good);
                        FUZZ_CHECK(at + (uint64_t)got <= offsets[k + 1]);
                        FUZZ_CHECK(!memcmp(buf, pc->data + (at - offsets[k]), (size_t)got));
                } else {
                        FUZZ_CHECK(got < 0);
                        FUZZ_CHECK(!good || !intact || !hash_ok);
                        fuzz_rejected((int)got, &err);
                }
                kiln_blob_reader_free(rd);
        }
out:
        kiln_blob_service_free(svc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        if (data[0] & 1) {
                struct cursor c = {data + 1, size - 1};
                built(&c, data[0]);
        } else {
                raw(data + 1, size - 1);
        }
        return 0;
}
