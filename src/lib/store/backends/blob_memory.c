/* memory://: blobs in process memory. A digest map under a rwlock; stored
 * bytes are immutable and live as long as the service. Content is hashed on
 * the way in, so reads need no second check. No finer chunking (chunks() is
 * has() plus an empty list).
 *
 * Small blobs live on the heap. Bigger ones live in one memfd, in extents of
 * EXTENT bytes written and read with pwrite/pread (no mapping to fault in
 * page by page). Extents of blobs that were already stored, or whose upload
 * failed, are reused by the next writer.
 *
 * On the VMs we run on, the first touch of a page the host has not backed
 * yet costs it a fault of about 11 µs (PLATFORM), shmem pages too: storing
 * 256 MiB of new blob can take 0.7 s of CPU, while the same pages cost
 * 0.1 s once backed. Those faults run in parallel on several CPUs, so when
 * a writer finds its extents dear, a warmer thread keeps up to WARM extents
 * faulted in ahead of it, and a writer that finds none warm faults a cold
 * one itself. When warming turns out cheap (the host backs the memory
 * already) it stops: it would only cost CPU. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kiln/blake3/blake3.h>
#include <kiln/castore/digest_map.h>

#include "backends.h"

#define STAGE ((size_t)256 << 10) /* blobs up to this size stay on the heap */
#define EXTENT ((uint64_t)1 << 20)  /* a multiple of STAGE */
#define WARM 16                       /* extents faulted in ahead of the writers */
#define GROW 64 /* extents the memfd grows by */
/* CPU time above which filling an extent counts as dear (cheap: ~0.4 ms). */
#define DEAR_NS 1500000

struct mem_blob {
        size_t len;
        uint8_t *data;     /* heap bytes, or NULL when in extents */
        uint64_t *extents; /* arena offsets of the len / EXTENT rounded up extents */
};

struct mem_blob_service {
        struct kiln_blob_service base;
        pthread_rwlock_t lock;
        struct kiln_digest_map blobs;

        pthread_mutex_t arena_lock;
        int arena_fd; /* -1 until the first big blob */
        uint64_t arena_end;  /* extents handed out so far */
        uint64_t arena_size; /* the memfd's size */
        uint64_t *free_ext;
        size_t n_free, cap_free;
        uint64_t warm[WARM]; /* extents whose pages are in place */
        size_t n_warm;
        bool dear;                /* fresh pages are dear: warm ahead */
        pthread_cond_t warm_cond; /* n_warm fell below WARM, dear, or stop */
        pthread_t warmer;
        bool warmer_running, stop;
};

struct mem_blob_reader {
        struct kiln_blob_reader base;
        struct mem_blob_service *svc;
        const struct mem_blob *blob;
};

struct mem_blob_writer {
        struct kiln_blob_writer base;
        struct mem_blob_service *svc;
        struct kiln_blake3 hasher;
        struct kiln_buf buf; /* bytes not yet hashed and stored */
        size_t len;          /* bytes in extents */
        uint64_t *extents;
        size_t n_ext, cap_ext;
        bool ext_cold;   /* the last extent was not warmed: time its filling */
        uint64_t ext_ns; /* CPU time spent filling it */
};

static uint64_t cpu_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool kiln_blob_memory_always_dear;

static const struct mem_blob *lookup(struct mem_blob_service *m, const struct kiln_digest *d)
{
        pthread_rwlock_rdlock(&m->lock);
        const struct mem_blob *b = kiln_digest_map_get(&m->blobs, d);
        pthread_rwlock_unlock(&m->lock);
        return b;
}

/* A cold extent (its pages possibly not in place): a free one, else a new
 * one at the end of the arena. The memfd is grown ahead (so the warmer can
 * map it), GROW extents at a time: ftruncate waits for the inode lock that
 * a writer's pwrite holds. Sizes only grow, under the lock. Under
 * arena_lock, arena_fd open. */
static int extent_cold(struct mem_blob_service *m, uint64_t *ret, struct kiln_error **err)
{
        if (m->n_free) {
                *ret = m->free_ext[--m->n_free];
                return 0;
        }
        if (m->arena_end + EXTENT > m->arena_size) {
                if (ftruncate(m->arena_fd, (off_t)(m->arena_size + GROW * EXTENT)) < 0)
                        return kiln_error_errno(err, errno,
                                                "memory:// store: growing the arena");
                m->arena_size += GROW * EXTENT;
        }
        *ret = m->arena_end;
        m->arena_end += EXTENT;
        return 0;
}

/* Under arena_lock. */
static void free_push(struct mem_blob_service *m, const uint64_t *ext, size_t n)
{
        if (m->n_free + n > m->cap_free) {
                m->cap_free = KILN_MAX(m->n_free + n, 2 * m->cap_free);
                m->free_ext = kiln_reallocarray(m->free_ext, m->cap_free, sizeof(*m->free_ext));
        }
        memcpy(m->free_ext + m->n_free, ext, n * sizeof(*ext));
        m->n_free += n;
}

/* Faults the pages in through a mapping: a pwrite would hold the memfd's
 * inode lock, which the writers' pwrites need too. */
static bool warm_extent(struct mem_blob_service *m, uint64_t off)
{
        void *p = mmap(NULL, EXTENT, PROT_READ | PROT_WRITE, MAP_SHARED, m->arena_fd,
                       (off_t)off);
        if (p == MAP_FAILED)
                return false;
        bool ok = madvise(p, EXTENT, MADV_POPULATE_WRITE) == 0;
        munmap(p, EXTENT);
        return ok;
}

static void *warmer_main(void *arg)
{
        struct mem_blob_service *m = arg;
        pthread_mutex_lock(&m->arena_lock);
        for (;;) {
                while (!m->stop && (!m->dear || m->n_warm == WARM))
                        pthread_cond_wait(&m->warm_cond, &m->arena_lock);
                uint64_t off;
                if (m->stop || extent_cold(m, &off, NULL) < 0)
                        break;
                pthread_mutex_unlock(&m->arena_lock);
                uint64_t t0 = cpu_ns();
                bool ok = warm_extent(m, off);
                bool cheap = cpu_ns() - t0 < DEAR_NS;
                pthread_mutex_lock(&m->arena_lock);
                if (!ok) {
                        /* Out of memory, most likely: let the writers meet it. */
                        free_push(m, &off, 1);
                        break;
                }
                m->warm[m->n_warm++] = off;
                if (cheap && !kiln_blob_memory_always_dear)
                        m->dear = false;
        }
        pthread_mutex_unlock(&m->arena_lock);
        return NULL;
}

/* An extent for a writer; *ret_cold when it was not warmed ahead. */
static int extent_new(struct mem_blob_service *m, uint64_t *ret, bool *ret_cold,
                      struct kiln_error **err)
{
        int r = 0;
        pthread_mutex_lock(&m->arena_lock);
        if (m->arena_fd < 0) {
                m->arena_fd = memfd_create("kiln-memory-blobs", MFD_CLOEXEC);
                if (m->arena_fd < 0) {
                        r = kiln_error_errno(err, errno, "memory:// store: memfd_create");
                        goto out;
                }
                m->warmer_running = pthread_create(&m->warmer, NULL, warmer_main, m) == 0;
        }
        *ret_cold = m->n_warm == 0;
        if (m->n_warm) {
                *ret = m->warm[--m->n_warm];
                pthread_cond_signal(&m->warm_cond);
        } else {
                r = extent_cold(m, ret, err);
        }
out:
        pthread_mutex_unlock(&m->arena_lock);
        return r;
}

/* A writer filled a cold extent at a dear price: warm ahead from now on. */
static void extents_dear(struct mem_blob_service *m)
{
        pthread_mutex_lock(&m->arena_lock);
        m->dear = true;
        pthread_cond_signal(&m->warm_cond);
        pthread_mutex_unlock(&m->arena_lock);
}

static void extents_release(struct mem_blob_service *m, const uint64_t *ext, size_t n)
{
        if (!n)
                return;
        pthread_mutex_lock(&m->arena_lock);
        free_push(m, ext, n);
        /* Give the pages back; the extent keeps its place in the arena. */
        for (size_t i = 0; i < n; i++)
                (void)fallocate(m->arena_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)ext[i], (off_t)EXTENT);
        pthread_mutex_unlock(&m->arena_lock);
}

static int mem_blob_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                        struct kiln_error **err)
{
        (void)err;
        return lookup((struct mem_blob_service *)s, d) ? 1 : 0;
}

static ssize_t mem_reader_read(struct kiln_blob_reader *r, void *buf, size_t n,
                               struct kiln_error **err)
{
        struct mem_blob_reader *mr = (struct mem_blob_reader *)r;
        const struct mem_blob *b = mr->blob;
        size_t take = KILN_MIN(n, b->len - (size_t)r->pos);
        if (b->data) {
                memcpy(buf, b->data + r->pos, take);
                return (ssize_t)take;
        }
        for (size_t done = 0; done < take;) {
                uint64_t pos = r->pos + done;
                size_t k = (size_t)KILN_MIN((uint64_t)(take - done), EXTENT - pos % EXTENT);
                ssize_t got = pread(mr->svc->arena_fd, (uint8_t *)buf + done, k,
                                    (off_t)(b->extents[pos / EXTENT] + pos % EXTENT));
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        return kiln_error_errno(err, got < 0 ? errno : EIO,
                                                "memory:// store: reading a blob");
                done += (size_t)got;
        }
        return (ssize_t)take;
}

static int mem_reader_seek(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err)
{
        (void)r, (void)pos, (void)err;
        return 0; /* the front end keeps the position */
}

static void mem_reader_free(struct kiln_blob_reader *r)
{
        free(r);
}

static const struct kiln_blob_reader_ops mem_reader_ops = {
        .read = mem_reader_read,
        .seek = mem_reader_seek,
        .free = mem_reader_free,
};

static int mem_blob_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                              struct kiln_blob_reader **ret, struct kiln_error **err)
{
        (void)err;
        const struct mem_blob *b = lookup((struct mem_blob_service *)s, d);
        if (!b)
                return 0;
        struct mem_blob_reader *r = kiln_calloc(1, sizeof(*r));
        r->base.ops = &mem_reader_ops;
        r->base.size = b->len;
        r->svc = (struct mem_blob_service *)s;
        r->blob = b;
        *ret = &r->base;
        return 1;
}

/* Appends to the extents, taking new ones at each EXTENT boundary. */
static int extents_write(struct mem_blob_writer *mw, const uint8_t *p, size_t n,
                         struct kiln_error **err)
{
        while (n) {
                if (mw->len % EXTENT == 0) {
                        if (mw->n_ext == mw->cap_ext) {
                                mw->cap_ext = mw->cap_ext ? 2 * mw->cap_ext : 16;
                                mw->extents = kiln_reallocarray(mw->extents, mw->cap_ext,
                                                                sizeof(*mw->extents));
                        }
                        int r = extent_new(mw->svc, &mw->extents[mw->n_ext], &mw->ext_cold,
                                           err);
                        if (r < 0)
                                return r;
                        mw->n_ext++;
                        mw->ext_ns = 0;
                }
                uint64_t in = mw->len % EXTENT;
                size_t k = (size_t)KILN_MIN((uint64_t)n, EXTENT - in);
                uint64_t t0 = mw->ext_cold ? cpu_ns() : 0;
                ssize_t put = pwrite(mw->svc->arena_fd, p, k,
                                     (off_t)(mw->extents[mw->n_ext - 1] + in));
                if (mw->ext_cold) {
                        mw->ext_ns += cpu_ns() - t0;
                        if (mw->ext_ns >= DEAR_NS) {
                                extents_dear(mw->svc);
                                mw->ext_cold = false;
                        }
                }
                if (put < 0 && errno == EINTR)
                        continue;
                if (put <= 0)
                        return kiln_error_errno(err, put < 0 ? errno : EIO,
                                                "memory:// store: storing a blob");
                p += put;
                n -= (size_t)put;
                mw->len += (size_t)put;
        }
        return 0;
}

/* Input is gathered into STAGE-sized, chunk-aligned runs before it is hashed
 * and stored: network slices are small and unaligned, which would keep the
 * hasher off its widest path and cost a syscall each. */
static int flush_stage(struct mem_blob_writer *mw, struct kiln_error **err)
{
        kiln_blake3_update(&mw->hasher, mw->buf.data, mw->buf.len);
        int r = extents_write(mw, mw->buf.data, mw->buf.len, err);
        kiln_buf_clear(&mw->buf);
        return r;
}

static int mem_writer_write(struct kiln_blob_writer *w, const void *p, size_t n,
                            struct kiln_error **err)
{
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        const uint8_t *in = p;
        while (n) {
                size_t k = KILN_MIN(n, STAGE - mw->buf.len);
                kiln_buf_append(&mw->buf, in, k);
                in += k;
                n -= k;
                if (mw->buf.len == STAGE) {
                        int r = flush_stage(mw, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int mem_writer_close(struct kiln_blob_writer *w, struct kiln_digest *ret,
                            struct kiln_error **err)
{
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        if (mw->n_ext && mw->buf.len) {
                int r = flush_stage(mw, err);
                if (r < 0)
                        return r;
        } else {
                kiln_blake3_update(&mw->hasher, mw->buf.data, mw->buf.len);
        }
        kiln_blake3_final(&mw->hasher, ret->b);
        struct mem_blob_service *m = mw->svc;
        pthread_rwlock_wrlock(&m->lock);
        if (!kiln_digest_map_get(&m->blobs, ret)) {
                struct mem_blob *b = kiln_calloc(1, sizeof(*b));
                b->len = mw->len + mw->buf.len;
                if (mw->n_ext) {
                        b->extents = TAKE_PTR(mw->extents);
                        mw->n_ext = 0;
                } else {
                        b->data = kiln_buf_steal(&mw->buf, NULL);
                }
                kiln_digest_map_put(&m->blobs, ret, b);
        }
        pthread_rwlock_unlock(&m->lock);
        return 0;
}

static void mem_writer_free(struct kiln_blob_writer *w)
{
        struct mem_blob_writer *mw = (struct mem_blob_writer *)w;
        extents_release(mw->svc, mw->extents, mw->n_ext); /* not stored: reuse them */
        free(mw->extents);
        kiln_buf_done(&mw->buf);
        free(mw);
}

static const struct kiln_blob_writer_ops mem_writer_ops = {
        .write = mem_writer_write,
        .close = mem_writer_close,
        .free = mem_writer_free,
};

static int mem_blob_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                               struct kiln_error **err)
{
        (void)err;
        struct mem_blob_writer *w = kiln_calloc(1, sizeof(*w));
        w->base.ops = &mem_writer_ops;
        w->svc = (struct mem_blob_service *)s;
        kiln_blake3_init(&w->hasher);
        *ret = &w->base;
        return 0;
}

static void free_blob(void *p)
{
        struct mem_blob *b = p;
        free(b->data);
        free(b->extents);
        free(b);
}

static void mem_blob_free(struct kiln_blob_service *s)
{
        struct mem_blob_service *m = (struct mem_blob_service *)s;
        kiln_digest_map_done(&m->blobs, free_blob);
        pthread_rwlock_destroy(&m->lock);
        if (m->warmer_running) {
                pthread_mutex_lock(&m->arena_lock);
                m->stop = true;
                pthread_cond_signal(&m->warm_cond);
                pthread_mutex_unlock(&m->arena_lock);
                pthread_join(m->warmer, NULL);
        }
        pthread_cond_destroy(&m->warm_cond);
        pthread_mutex_destroy(&m->arena_lock);
        if (m->arena_fd >= 0)
                close(m->arena_fd);
        free(m->free_ext);
        free(m);
}

static const struct kiln_blob_service_ops mem_blob_ops = {
        .name = "memory",
        .has = mem_blob_has,
        .open_read = mem_blob_open_read,
        .open_write = mem_blob_open_write,
        .free = mem_blob_free,
};

int kiln_blob_memory_new(const struct kiln_url *u, struct kiln_blob_service **ret,
                         struct kiln_error **err)
{
        (void)u, (void)err;
        struct mem_blob_service *m = kiln_calloc(1, sizeof(*m));
        m->base.ops = &mem_blob_ops;
        pthread_rwlock_init(&m->lock, NULL);
        pthread_mutex_init(&m->arena_lock, NULL);
        pthread_cond_init(&m->warm_cond, NULL);
        m->arena_fd = -1;
        m->dear = kiln_blob_memory_always_dear;
        *ret = &m->base;
        return 0;
}
