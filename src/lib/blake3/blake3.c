/* BLAKE3 hasher: the tree on top of the compression kernels.
 *
 * The input is split into 1 KiB chunks; each chunk hashes to a chaining value (CV), and
 * pairs of CVs hash into parent CVs up a binary tree whose left subtrees are always complete
 * (power-of-two chunk counts). The root, whichever node it is, is compressed once more with
 * the ROOT flag. So nothing can be finalised while more input may follow: the last chunk
 * and the top of the tree stay open until kiln_blake3_final().
 *
 * The incremental state is the open chunk plus a stack of CVs of complete subtrees, one per
 * set bit of the number of chunks so far, largest at the bottom. Merging is lazy: a CV is
 * pushed unmerged and its merge with the neighbour happens only when more input arrives,
 * because until then it might be part of the root's own parent.
 *
 * Speed comes from update(): given a long run of input at a chunk boundary it takes the
 * largest complete subtree that fits and is aligned with the chunks already hashed, and hashes
 * it wide. hash_many runs `degree` chunks at once, then pairs of CVs (parents) at once, level
 * by level, so the SIMD lanes stay full; only the final two CVs of the subtree come back,
 * pushed as two stack entries (the subtree's own parent might be the root).
 *
 * Input that does not start at a multiple of `degree` chunks (network slices and other
 * pieces of odd sizes) would only allow subtrees of 1, 2, 4, ... chunks until it does, each
 * on a narrower kernel; instead the chunks up to the next multiple are hashed together as
 * independent chunks (hash_many does not care where they sit in the tree) and their CVs
 * pushed one by one. */
#include <assert.h>

#include "blake3_impl.h"

/* A compression not yet run: the caller decides whether it is a CV or the root. */
struct node {
        uint32_t cv[8];
        uint8_t block[KILN_BLAKE3_BLOCK_LEN];
        uint64_t counter;
        uint8_t block_len;
        uint8_t flags;
};

static void node_cv(const struct kiln_blake3_ops *ops, const struct node *n,
                    uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        uint32_t cv[8];

        memcpy(cv, n->cv, sizeof(cv));
        ops->compress(cv, n->block, n->block_len, n->counter, n->flags);
        kiln_blake3_store_cv(out, cv);
}

/* The root's 32-byte output is the first output block, whose counter is 0 whatever the
 * node's chunk counter was. */
static void node_root(const struct kiln_blake3_ops *ops, const struct node *n,
                      uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        uint32_t cv[8];

        memcpy(cv, n->cv, sizeof(cv));
        ops->compress(cv, n->block, n->block_len, 0, n->flags | KILN_BLAKE3_ROOT);
        kiln_blake3_store_cv(out, cv);
}

static void parent_node(const uint32_t key[8], const uint8_t left_right[2 * KILN_BLAKE3_OUT_LEN],
                        struct node *ret)
{
        memcpy(ret->cv, key, sizeof(ret->cv));
        memcpy(ret->block, left_right, KILN_BLAKE3_BLOCK_LEN);
        ret->counter = 0;
        ret->block_len = KILN_BLAKE3_BLOCK_LEN;
        ret->flags = KILN_BLAKE3_PARENT;
}

/* ---- the open chunk ---- */

static void chunk_init(struct kiln_blake3_chunk_state *cs, const uint32_t key[8],
                       uint64_t chunk_counter)
{
        memcpy(cs->cv, key, sizeof(cs->cv));
        cs->chunk_counter = chunk_counter;
        memset(cs->buf, 0, sizeof(cs->buf));
        cs->buf_len = 0;
        cs->blocks_compressed = 0;
        cs->flags = 0;
}

static size_t chunk_len(const struct kiln_blake3_chunk_state *cs)
{
        return (size_t)cs->blocks_compressed * KILN_BLAKE3_BLOCK_LEN + cs->buf_len;
}

static uint8_t chunk_start_flag(const struct kiln_blake3_chunk_state *cs)
{
        return cs->blocks_compressed == 0 ? KILN_BLAKE3_CHUNK_START : 0;
}

/* Adds at most the rest of the chunk. A full block is compressed only once a byte beyond it
 * arrives: the chunk's last block needs CHUNK_END, and must stay for chunk_output(). */
static void chunk_update(const struct kiln_blake3_ops *ops, struct kiln_blake3_chunk_state *cs,
                         const uint8_t *in, size_t len)
{
        assert(len <= KILN_BLAKE3_CHUNK_LEN - chunk_len(cs));
        while (len > 0) {
                size_t take;

                if (cs->buf_len == KILN_BLAKE3_BLOCK_LEN) {
                        ops->compress(cs->cv, cs->buf, KILN_BLAKE3_BLOCK_LEN, cs->chunk_counter,
                                      cs->flags | chunk_start_flag(cs));
                        cs->blocks_compressed++;
                        cs->buf_len = 0;
                        memset(cs->buf, 0, sizeof(cs->buf));
                }
                /* Whole blocks with more input behind them skip the buffer. */
                while (cs->buf_len == 0 && len > KILN_BLAKE3_BLOCK_LEN) {
                        ops->compress(cs->cv, in, KILN_BLAKE3_BLOCK_LEN, cs->chunk_counter,
                                      cs->flags | chunk_start_flag(cs));
                        cs->blocks_compressed++;
                        in += KILN_BLAKE3_BLOCK_LEN;
                        len -= KILN_BLAKE3_BLOCK_LEN;
                }
                take = KILN_MIN(len, (size_t)(KILN_BLAKE3_BLOCK_LEN - cs->buf_len));
                memcpy(cs->buf + cs->buf_len, in, take);
                cs->buf_len += (uint8_t)take;
                in += take;
                len -= take;
        }
}

/* The chunk's last block (zero padded: buf beyond buf_len is always zero). */
static void chunk_output(const struct kiln_blake3_chunk_state *cs, struct node *ret)
{
        memcpy(ret->cv, cs->cv, sizeof(ret->cv));
        memcpy(ret->block, cs->buf, sizeof(ret->block));
        ret->counter = cs->chunk_counter;
        ret->block_len = cs->buf_len;
        ret->flags = cs->flags | chunk_start_flag(cs) | KILN_BLAKE3_CHUNK_END;
}

/* ---- wide subtree hashing ---- */

/* CVs of `n` whole chunks, `degree` at a time. */
static void hash_chunks(const struct kiln_blake3_ops *ops, const uint8_t *in, size_t n,
                        const uint32_t key[8], uint64_t chunk_counter, uint8_t flags, uint8_t *out)
{
        const uint8_t *inputs[KILN_BLAKE3_MAX_DEGREE];

        assert(n <= KILN_BLAKE3_MAX_DEGREE);
        for (size_t i = 0; i < n; i++)
                inputs[i] = in + i * KILN_BLAKE3_CHUNK_LEN;
        ops->hash_many(inputs, n, KILN_BLAKE3_CHUNK_LEN / KILN_BLAKE3_BLOCK_LEN, key, chunk_counter,
                       true, flags, KILN_BLAKE3_CHUNK_START, KILN_BLAKE3_CHUNK_END, out);
}

/* Parent CVs of `n` adjacent pairs of CVs (2n CVs in, n out). */
static void hash_parents(const struct kiln_blake3_ops *ops, const uint8_t *cvs, size_t n,
                         const uint32_t key[8], uint8_t flags, uint8_t *out)
{
        const uint8_t *inputs[KILN_BLAKE3_MAX_DEGREE];

        assert(n <= KILN_BLAKE3_MAX_DEGREE);
        for (size_t i = 0; i < n; i++)
                inputs[i] = cvs + i * 2 * KILN_BLAKE3_OUT_LEN;
        ops->hash_many(inputs, n, 1, key, 0, false, flags | KILN_BLAKE3_PARENT, 0, 0, out);
}

/* Hashes a complete subtree of `chunks` chunks (a power of two, at least 2) down to the
 * level of its tree that has `width` = min(chunks, max(degree, 2)) nodes, and writes their
 * CVs to `out` (room for KILN_BLAKE3_MAX_DEGREE). Recursing on halves keeps every hash_many
 * call full: the leaves are `degree` chunks, and each step merges 2 * width CVs into width.
 * It stops at width >= 2 so that the subtree's top parent is left to the caller (it may be
 * the root). Returns width. */
static size_t hash_subtree_wide(const struct kiln_blake3_ops *ops, const uint8_t *in, size_t chunks,
                                const uint32_t key[8], uint64_t chunk_counter, uint8_t flags,
                                uint8_t *out)
{
        size_t width = KILN_MAX(ops->degree, (size_t)2);
        uint8_t cvs[2 * KILN_BLAKE3_MAX_DEGREE * KILN_BLAKE3_OUT_LEN];
        size_t half = chunks / 2, n;

        if (chunks <= ops->degree) {
                hash_chunks(ops, in, chunks, key, chunk_counter, flags, out);
                return chunks;
        }
        if (chunks <= width) {
                /* Only with degree 1: two single chunks. */
                hash_chunks(ops, in, 1, key, chunk_counter, flags, out);
                hash_chunks(ops, in + KILN_BLAKE3_CHUNK_LEN, 1, key, chunk_counter + 1, flags,
                            out + KILN_BLAKE3_OUT_LEN);
                return 2;
        }
        n = hash_subtree_wide(ops, in, half, key, chunk_counter, flags, cvs);
        n += hash_subtree_wide(ops, in + half * KILN_BLAKE3_CHUNK_LEN, half, key,
                               chunk_counter + half, flags, cvs + n * KILN_BLAKE3_OUT_LEN);
        assert(n == 2 * width);
        hash_parents(ops, cvs, width, key, flags, out);
        return width;
}

/* The two CVs of a complete subtree's top parent block (left, right). */
static void hash_subtree(const struct kiln_blake3_ops *ops, const uint8_t *in, size_t chunks,
                         const uint32_t key[8], uint64_t chunk_counter, uint8_t flags,
                         uint8_t out[2 * KILN_BLAKE3_OUT_LEN])
{
        uint8_t cvs[KILN_BLAKE3_MAX_DEGREE * KILN_BLAKE3_OUT_LEN];
        uint8_t merged[KILN_BLAKE3_MAX_DEGREE / 2 * KILN_BLAKE3_OUT_LEN];
        size_t n = hash_subtree_wide(ops, in, chunks, key, chunk_counter, flags, cvs);

        for (; n > 2; n /= 2) {
                hash_parents(ops, cvs, n / 2, key, flags, merged);
                memcpy(cvs, merged, n / 2 * KILN_BLAKE3_OUT_LEN);
        }
        memcpy(out, cvs, 2 * KILN_BLAKE3_OUT_LEN);
}

/* ---- the CV stack ---- */

/* Merges completed pairs until the stack holds one CV per set bit of `total_chunks`: run
 * just before pushing more, once it is known the pending top pair is not the root's. */
static void merge_stack(const struct kiln_blake3_ops *ops, struct kiln_blake3 *h,
                        uint64_t total_chunks)
{
        size_t keep = (size_t)__builtin_popcountll(total_chunks);

        while (h->cv_stack_len > keep) {
                uint8_t *pair = h->cv_stack + (h->cv_stack_len - 2) * KILN_BLAKE3_OUT_LEN;
                struct node parent;

                parent_node(h->key, pair, &parent);
                node_cv(ops, &parent, pair);
                h->cv_stack_len--;
        }
}

/* Pushes the CV of the subtree that starts at chunk `chunk_counter`. */
static void push_cv(const struct kiln_blake3_ops *ops, struct kiln_blake3 *h,
                    const uint8_t cv[KILN_BLAKE3_OUT_LEN], uint64_t chunk_counter)
{
        merge_stack(ops, h, chunk_counter);
        assert(h->cv_stack_len <= KILN_BLAKE3_MAX_DEPTH);
        memcpy(h->cv_stack + h->cv_stack_len * KILN_BLAKE3_OUT_LEN, cv, KILN_BLAKE3_OUT_LEN);
        h->cv_stack_len++;
}

/* ---- public API ---- */

void kiln_blake3_init(struct kiln_blake3 *h)
{
        memcpy(h->key, kiln_blake3_iv, sizeof(h->key));
        chunk_init(&h->chunk, h->key, 0);
        h->cv_stack_len = 0;
}

void kiln_blake3_update(struct kiln_blake3 *h, const void *data, size_t len)
{
        const struct kiln_blake3_ops *ops;
        const uint8_t *in = data;

        if (len == 0)
                return; /* data may be NULL */
        ops = kiln_blake3_ops_current();

        /* Finish a chunk left open by an earlier call; push it only if input follows. */
        if (chunk_len(&h->chunk) > 0) {
                size_t take = KILN_MIN(len, KILN_BLAKE3_CHUNK_LEN - chunk_len(&h->chunk));
                uint8_t cv[KILN_BLAKE3_OUT_LEN];
                struct node out;

                chunk_update(ops, &h->chunk, in, take);
                in += take;
                len -= take;
                if (len == 0)
                        return;
                chunk_output(&h->chunk, &out);
                node_cv(ops, &out, cv);
                push_cv(ops, h, cv, h->chunk.chunk_counter);
                chunk_init(&h->chunk, h->key, h->chunk.chunk_counter + 1);
        }

        /* Whole subtrees, while more than a chunk remains (the last chunk stays open). */
        while (len > KILN_BLAKE3_CHUNK_LEN) {
                uint64_t counter = h->chunk.chunk_counter;
                /* Largest power of two of whole chunks that fits... */
                size_t chunks = (size_t)1 << (63 - __builtin_clzll(len / KILN_BLAKE3_CHUNK_LEN));
                uint8_t cv[2 * KILN_BLAKE3_OUT_LEN];

                /* ...and starts at a multiple of its own size, so it is a node of the tree. */
                while ((counter & (chunks - 1)) != 0)
                        chunks /= 2;
                /* Misaligned: the chunks up to the next multiple of degree, side by side. */
                size_t lead = KILN_MIN(ops->degree - (size_t)(counter & (ops->degree - 1)),
                                       (len - 1) / KILN_BLAKE3_CHUNK_LEN);
                if (chunks < ops->degree && lead > chunks) {
                        uint8_t cvs[KILN_BLAKE3_MAX_DEGREE * KILN_BLAKE3_OUT_LEN];

                        hash_chunks(ops, in, lead, h->key, counter, h->chunk.flags, cvs);
                        for (size_t i = 0; i < lead; i++)
                                push_cv(ops, h, cvs + i * KILN_BLAKE3_OUT_LEN, counter + i);
                        chunks = lead;
                } else if (chunks == 1) {
                        struct node out;

                        chunk_update(ops, &h->chunk, in, KILN_BLAKE3_CHUNK_LEN);
                        chunk_output(&h->chunk, &out);
                        node_cv(ops, &out, cv);
                        push_cv(ops, h, cv, counter);
                } else {
                        hash_subtree(ops, in, chunks, h->key, counter, h->chunk.flags, cv);
                        push_cv(ops, h, cv, counter);
                        push_cv(ops, h, cv + KILN_BLAKE3_OUT_LEN, counter + chunks / 2);
                }
                chunk_init(&h->chunk, h->key, counter + chunks);
                in += chunks * KILN_BLAKE3_CHUNK_LEN;
                len -= chunks * KILN_BLAKE3_CHUNK_LEN;
        }

        if (len > 0) {
                chunk_update(ops, &h->chunk, in, len);
                /* The open chunk is now the rightmost leaf: final() must find everything to
                 * its left already merged into complete subtrees. */
                merge_stack(ops, h, h->chunk.chunk_counter);
        }
}

void kiln_blake3_final(const struct kiln_blake3 *h, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        const struct kiln_blake3_ops *ops = kiln_blake3_ops_current();
        struct node node;
        size_t below;

        if (h->cv_stack_len == 0) {
                /* At most one chunk: it is the root. */
                chunk_output(&h->chunk, &node);
                node_root(ops, &node, out);
                return;
        }
        /* Otherwise fold the right edge of the tree: the open chunk (or, at a chunk
         * boundary, the pending top pair) joined with each stacked subtree in turn. */
        if (chunk_len(&h->chunk) > 0) {
                chunk_output(&h->chunk, &node);
                below = h->cv_stack_len;
        } else {
                assert(h->cv_stack_len >= 2);
                below = h->cv_stack_len - 2;
                parent_node(h->key, h->cv_stack + below * KILN_BLAKE3_OUT_LEN, &node);
        }
        while (below > 0) {
                uint8_t pair[2 * KILN_BLAKE3_OUT_LEN];

                below--;
                memcpy(pair, h->cv_stack + below * KILN_BLAKE3_OUT_LEN, KILN_BLAKE3_OUT_LEN);
                node_cv(ops, &node, pair + KILN_BLAKE3_OUT_LEN);
                parent_node(h->key, pair, &node);
        }
        node_root(ops, &node, out);
}

void kiln_blake3(const void *data, size_t len, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        struct kiln_blake3 h;

        kiln_blake3_init(&h);
        kiln_blake3_update(&h, data, len);
        kiln_blake3_final(&h, out);
}

void kiln_blake3_hash_subtree(const struct kiln_blake3_ops *ops, const uint8_t *in, size_t chunks,
                              const uint32_t key[8], uint64_t chunk_counter, uint8_t flags,
                              uint8_t out[2 * KILN_BLAKE3_OUT_LEN])
{
        hash_subtree(ops, in, chunks, key, chunk_counter, flags, out);
}
