/* BLAKE3 of a whole buffer on several threads.
 *
 * The buffer is cut into units of `unit_chunks` chunks (a power of two), each starting at a
 * multiple of its own size: every full unit is then a complete subtree of the BLAKE3 tree,
 * and the last (possibly partial) unit is the rightmost subtree of that size. Units are
 * independent, so worker threads take them one at a time from a shared counter and write
 * each unit's chaining value to its slot. The tree above the units has exactly BLAKE3's
 * shape over the unit CVs: with T chunks in all, the left subtree has the largest power of
 * two of chunks below T, which is at least one unit and so a whole number of units. The
 * caller folds that upper tree, the top parent getting the ROOT flag.
 *
 * Every unit is hashed with the kernel table current when the call started, so a level
 * change by another thread meanwhile cannot mix kernels (all compute the same digests
 * anyway). */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "blake3_impl.h"

/* Largest power of two strictly less than n (n >= 2). */
static uint64_t pow2_below(uint64_t n)
{
        return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

static void parent_cv(const struct kiln_blake3_ops *ops, const uint8_t left[KILN_BLAKE3_OUT_LEN],
                      const uint8_t right[KILN_BLAKE3_OUT_LEN], uint8_t flags,
                      uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        uint8_t block[KILN_BLAKE3_BLOCK_LEN];
        uint32_t cv[8];

        memcpy(block, left, KILN_BLAKE3_OUT_LEN);
        memcpy(block + KILN_BLAKE3_OUT_LEN, right, KILN_BLAKE3_OUT_LEN);
        memcpy(cv, kiln_blake3_iv, sizeof(cv));
        ops->compress(cv, block, KILN_BLAKE3_BLOCK_LEN, 0, KILN_BLAKE3_PARENT | flags);
        kiln_blake3_store_cv(out, cv);
}

/* CV (never the root) of the subtree of `len` bytes (1 <= len) starting at chunk `counter`:
 * a node of the tree, so len is a power of two of chunks or it is the rightmost subtree. */
static void subtree_cv(const struct kiln_blake3_ops *ops, const uint8_t *in, size_t len,
                       uint64_t counter, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        uint64_t chunks = (len + KILN_BLAKE3_CHUNK_LEN - 1) / KILN_BLAKE3_CHUNK_LEN;

        if (chunks <= 1) {
                /* One chunk, possibly short: whole blocks, then its last block with
                 * CHUNK_END (zero padded). */
                uint8_t last[KILN_BLAKE3_BLOCK_LEN] = {0};
                size_t blocks = len ? (len - 1) / KILN_BLAKE3_BLOCK_LEN : 0;
                uint8_t flags = KILN_BLAKE3_CHUNK_START;
                uint32_t cv[8];

                memcpy(cv, kiln_blake3_iv, sizeof(cv));
                for (size_t b = 0; b < blocks; b++) {
                        ops->compress(cv, in + b * KILN_BLAKE3_BLOCK_LEN, KILN_BLAKE3_BLOCK_LEN,
                                      counter, flags);
                        flags = 0;
                }
                memcpy(last, in + blocks * KILN_BLAKE3_BLOCK_LEN,
                       len - blocks * KILN_BLAKE3_BLOCK_LEN);
                ops->compress(cv, last, (uint8_t)(len - blocks * KILN_BLAKE3_BLOCK_LEN), counter,
                              flags | KILN_BLAKE3_CHUNK_END);
                kiln_blake3_store_cv(out, cv);
        } else if ((chunks & (chunks - 1)) == 0 && len == chunks * KILN_BLAKE3_CHUNK_LEN) {
                /* A complete subtree: the wide kernel path of the streaming hasher. */
                uint8_t pair[2 * KILN_BLAKE3_OUT_LEN];

                kiln_blake3_hash_subtree(ops, in, (size_t)chunks, kiln_blake3_iv, counter, 0, pair);
                parent_cv(ops, pair, pair + KILN_BLAKE3_OUT_LEN, 0, out);
        } else {
                uint64_t left = pow2_below(chunks);
                size_t left_len = (size_t)left * KILN_BLAKE3_CHUNK_LEN;
                uint8_t l[KILN_BLAKE3_OUT_LEN], r[KILN_BLAKE3_OUT_LEN];

                subtree_cv(ops, in, left_len, counter, l);
                subtree_cv(ops, in + left_len, len - left_len, counter + left, r);
                parent_cv(ops, l, r, 0, out);
        }
}

/* The node over CVs [0, n) of the upper tree: its CV, or with `root`, the digest. */
static void fold(const struct kiln_blake3_ops *ops, const uint8_t *cvs, size_t n, bool root,
                 uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        uint8_t l[KILN_BLAKE3_OUT_LEN], r[KILN_BLAKE3_OUT_LEN];
        size_t left;

        assert(n >= 2 || !root);
        if (n == 1) {
                memcpy(out, cvs, KILN_BLAKE3_OUT_LEN);
                return;
        }
        left = (size_t)pow2_below(n);
        fold(ops, cvs, left, false, l);
        fold(ops, cvs + left * KILN_BLAKE3_OUT_LEN, n - left, false, r);
        parent_cv(ops, l, r, root ? KILN_BLAKE3_ROOT : 0, out);
}

struct job {
        const struct kiln_blake3_ops *ops;
        const uint8_t *data; /* the input in memory, or NULL to pread() it from fd */
        int fd;
        atomic_int err; /* first pread() failure, -errno; the rest then stop */
        size_t len;
        size_t unit_len;
        size_t n_units;
        uint64_t unit_chunks;
        atomic_size_t next;
        uint8_t *cvs;
};

/* Reads exactly len bytes at off: 0, or -errno (-EIO when the file ended early). */
static int pread_full(int fd, uint8_t *p, size_t len, size_t off)
{
        while (len > 0) {
                ssize_t n = pread(fd, p, len, (off_t)off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO;
                p += n;
                off += (size_t)n;
                len -= (size_t)n;
        }
        return 0;
}

static void *worker(void *arg)
{
        struct job *j = arg;
        uint8_t *buf = j->data ? NULL : kiln_malloc(j->unit_len); /* reused for every unit */

        for (;;) {
                size_t u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
                const uint8_t *in;
                size_t off, len;

                if (u >= j->n_units || atomic_load_explicit(&j->err, memory_order_relaxed))
                        break;
                off = u * j->unit_len;
                len = KILN_MIN(j->unit_len, j->len - off);
                if (buf) {
                        int r = pread_full(j->fd, buf, len, off);

                        if (r < 0) {
                                int none = 0;

                                atomic_compare_exchange_strong(&j->err, &none, r);
                                break;
                        }
                        in = buf;
                } else {
                        in = j->data + off;
                }
                subtree_cv(j->ops, in, len, (uint64_t)u * j->unit_chunks,
                           j->cvs + u * KILN_BLAKE3_OUT_LEN);
        }
        free(buf);
        return NULL;
}

/* Runs the job on up to `threads` threads and folds the digest: 0, or the job's error. */
static int run(struct job *j, unsigned threads, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        pthread_t tids[KILN_BLAKE3_MAX_THREADS];
        unsigned started = 0;
        int r;

        atomic_init(&j->next, 0);
        atomic_init(&j->err, 0);
        threads = KILN_MAX(threads, 1u);
        threads = KILN_MIN(threads, (unsigned)KILN_MIN(j->n_units, (size_t)KILN_BLAKE3_MAX_THREADS));
        j->cvs = kiln_malloc(j->n_units * KILN_BLAKE3_OUT_LEN);
        /* The caller is one of the workers; a thread that cannot start leaves its share to
         * the others. */
        for (unsigned t = 1; t < threads; t++)
                if (pthread_create(&tids[started], NULL, worker, j) == 0)
                        started++;
        worker(j);
        for (unsigned t = 0; t < started; t++)
                pthread_join(tids[t], NULL);
        r = atomic_load(&j->err);
        if (r == 0)
                fold(j->ops, j->cvs, j->n_units, true, out);
        free(j->cvs);
        return r;
}

/* Sizes j's units from its unit_chunks (a power of two) and len; returns their number. */
static size_t job_units(struct job *j)
{
        assert(j->unit_chunks > 0 && (j->unit_chunks & (j->unit_chunks - 1)) == 0);
        j->unit_len = j->unit_chunks * KILN_BLAKE3_CHUNK_LEN;
        j->n_units = (j->len + j->unit_len - 1) / j->unit_len;
        return j->n_units;
}

void kiln_blake3_parallel_units(const void *data, size_t len, unsigned threads,
                                size_t unit_chunks, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        struct job j = {
                .ops = kiln_blake3_ops_current(),
                .data = data,
                .fd = -1,
                .len = len,
                .unit_chunks = unit_chunks,
        };

        if (job_units(&j) < 2) {
                kiln_blake3(data, len, out);
                return;
        }
        /* Only the fd form can fail. */
        (void)run(&j, threads, out);
}

int kiln_blake3_parallel_fd_units(int fd, size_t len, unsigned threads, size_t unit_chunks,
                                  uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        struct job j = {
                .ops = kiln_blake3_ops_current(),
                .fd = fd,
                .len = len,
                .unit_chunks = unit_chunks,
        };

        if (job_units(&j) < 2) {
                /* One unit at most: read it whole, hash it here. */
                uint8_t *buf = kiln_malloc(KILN_MAX(len, (size_t)1));
                int r = pread_full(fd, buf, len, 0);

                if (r == 0)
                        kiln_blake3(buf, len, out);
                free(buf);
                return r;
        }
        return run(&j, threads, out);
}

int kiln_blake3_parallel_fd(int fd, size_t len, unsigned threads, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        return kiln_blake3_parallel_fd_units(fd, len, threads, KILN_BLAKE3_PARALLEL_FD_UNIT_CHUNKS,
                                             out);
}

void kiln_blake3_parallel(const void *data, size_t len, unsigned threads,
                          uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        kiln_blake3_parallel_units(data, len, threads, KILN_BLAKE3_PARALLEL_UNIT_CHUNKS, out);
}
