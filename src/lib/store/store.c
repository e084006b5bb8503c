/* Front end of the blob and directory services: argument checks and the
 * state every backend would otherwise repeat (closed writers, seek
 * arithmetic), plus the generic traversal and putter. */
#include <stdio.h>

#include <kiln/store/backend.h>
#include <kiln/castore/digest_map.h>

/* --- blob service --- */

void kiln_blob_service_free(struct kiln_blob_service *s)
{
        if (s)
                s->ops->free(s);
}

const char *kiln_blob_service_name(const struct kiln_blob_service *s)
{
        return s->ops->name;
}

int kiln_blob_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                  struct kiln_error **err)
{
        return s->ops->has(s, d, err);
}

int kiln_blob_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                        struct kiln_blob_reader **ret, struct kiln_error **err)
{
        struct kiln_blob_reader *r = NULL;
        int found = s->ops->open_read(s, d, &r, err);
        if (found <= 0)
                return found;
        r->pos = 0;
        *ret = r;
        return 1;
}

int kiln_blob_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                         struct kiln_error **err)
{
        struct kiln_blob_writer *w = NULL;
        int r = s->ops->open_write(s, &w, err);
        if (r < 0)
                return r;
        w->closed = false;
        w->failed = false;
        *ret = w;
        return 0;
}

int kiln_blob_chunks(struct kiln_blob_service *s, const struct kiln_digest *d,
                     struct kiln_chunk **ret, size_t *ret_n, struct kiln_error **err)
{
        if (s->ops->chunks)
                return s->ops->chunks(s, d, ret, ret_n, err);
        int r = s->ops->has(s, d, err);
        if (r <= 0)
                return r;
        *ret = NULL;
        *ret_n = 0;
        return 1;
}

int kiln_blob_sync(struct kiln_blob_service *s, struct kiln_error **err)
{
        return s->ops->sync ? s->ops->sync(s, err) : 0;
}

ssize_t kiln_blob_reader_read(struct kiln_blob_reader *r, void *buf, size_t n,
                              struct kiln_error **err)
{
        if (n == 0 || r->pos >= r->size)
                return 0;
        ssize_t got = r->ops->read(r, buf, n, err);
        if (got > 0)
                r->pos += (uint64_t)got;
        return got;
}

ssize_t kiln_blob_reader_read_view(struct kiln_blob_reader *r, void *buf, size_t n,
                                   const void **ret, struct kiln_error **err)
{
        if (!r->ops->read_view) {
                *ret = buf;
                return kiln_blob_reader_read(r, buf, n, err);
        }
        if (n == 0 || r->pos >= r->size)
                return 0;
        ssize_t got = r->ops->read_view(r, n, ret, err);
        if (got > 0)
                r->pos += (uint64_t)got;
        return got;
}

int kiln_blob_reader_seek(struct kiln_blob_reader *r, int64_t offset, int whence,
                          uint64_t *ret_pos, struct kiln_error **err)
{
        int64_t base;
        switch (whence) {
        case SEEK_SET:
                base = 0;
                break;
        case SEEK_CUR:
                base = (int64_t)r->pos;
                break;
        case SEEK_END:
                if (r->size == KILN_BLOB_SIZE_UNKNOWN)
                        return kiln_error_set(err, ENOTSUP,
                                              "cannot seek from the end: blob length unknown");
                base = (int64_t)r->size;
                break;
        default:
                return kiln_error_set(err, EINVAL, "invalid seek origin %d", whence);
        }
        int64_t target;
        if (__builtin_add_overflow(base, offset, &target) || target < 0)
                return kiln_error_set(err, EINVAL, "over/underflow while seeking");
        if ((uint64_t)target > r->size)
                return kiln_error_set(err, EINVAL, "seeked beyond EOF");
        if ((uint64_t)target != r->pos) {
                int rr = r->ops->seek(r, (uint64_t)target, err);
                if (rr < 0)
                        return rr;
                r->pos = (uint64_t)target;
        }
        if (ret_pos)
                *ret_pos = r->pos;
        return 0;
}

uint64_t kiln_blob_reader_size(const struct kiln_blob_reader *r)
{
        return r->size;
}

void kiln_blob_reader_free(struct kiln_blob_reader *r)
{
        if (r)
                r->ops->free(r);
}

int kiln_blob_writer_write(struct kiln_blob_writer *w, const void *p, size_t n,
                           struct kiln_error **err)
{
        if (w->closed)
                return kiln_error_set(err, EINVAL, "blob writer already closed");
        if (w->failed)
                return kiln_error_set(err, EIO, "blob writer failed earlier");
        if (n == 0)
                return 0;
        int r = w->ops->write(w, p, n, err);
        if (r < 0)
                w->failed = true;
        return r;
}

int kiln_blob_writer_close(struct kiln_blob_writer *w, struct kiln_digest *ret,
                           struct kiln_error **err)
{
        if (w->failed)
                return kiln_error_set(err, EIO, "blob writer failed earlier");
        if (!w->closed) {
                int r = w->ops->close(w, &w->digest, err);
                if (r < 0) {
                        w->failed = true;
                        return r;
                }
                w->closed = true;
        }
        if (ret)
                *ret = w->digest;
        return 0;
}

void kiln_blob_writer_free(struct kiln_blob_writer *w)
{
        if (w)
                w->ops->free(w);
}

int kiln_blob_put(struct kiln_blob_service *s, const void *p, size_t n, struct kiln_digest *ret,
                  struct kiln_error **err)
{
        _cleanup_(kiln_blob_writer_freep) struct kiln_blob_writer *w = NULL;
        int r = kiln_blob_open_write(s, &w, err);
        if (r < 0)
                return r;
        r = kiln_blob_writer_write(w, p, n, err);
        if (r < 0)
                return r;
        return kiln_blob_writer_close(w, ret, err);
}

int kiln_blob_get(struct kiln_blob_service *s, const struct kiln_digest *d, struct kiln_buf *ret,
                  struct kiln_error **err)
{
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *rd = NULL;
        int r = kiln_blob_open_read(s, d, &rd, err);
        if (r <= 0)
                return r;
        struct kiln_buf b = KILN_BUF_INIT;
        if (rd->size != KILN_BLOB_SIZE_UNKNOWN)
                kiln_buf_reserve(&b, (size_t)rd->size);
        for (;;) {
                kiln_buf_reserve(&b, 64 * 1024);
                ssize_t n = kiln_blob_reader_read(rd, b.data + b.len, b.cap - b.len, err);
                if (n < 0) {
                        kiln_buf_done(&b);
                        return (int)n;
                }
                if (n == 0)
                        break;
                b.len += (size_t)n;
        }
        *ret = b;
        return 1;
}

/* --- directory service --- */

void kiln_directory_service_free(struct kiln_directory_service *s)
{
        if (s)
                s->ops->free(s);
}

const char *kiln_directory_service_name(const struct kiln_directory_service *s)
{
        return s->ops->name;
}

int kiln_directory_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                       struct kiln_directory *ret, struct kiln_error **err)
{
        return s->ops->get(s, d, ret, err);
}

int kiln_directory_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                       struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct kiln_digest d;
        int r = s->ops->put(s, dir, &d, err);
        if (r < 0)
                return r;
        if (ret_digest)
                *ret_digest = d;
        return 0;
}

int kiln_directory_get_recursive(struct kiln_directory_service *s,
                                 const struct kiln_digest *root,
                                 struct kiln_directory_stream **ret, struct kiln_error **err)
{
        if (s->ops->get_recursive)
                return s->ops->get_recursive(s, root, ret, err);
        return kiln_directory_stream_bfs(s, root, ret, err);
}

int kiln_directory_stream_next(struct kiln_directory_stream *st, struct kiln_directory *ret,
                               struct kiln_digest *ret_digest, struct kiln_error **err)
{
        return st->ops->next(st, ret, ret_digest, err);
}

void kiln_directory_stream_free(struct kiln_directory_stream *st)
{
        if (st)
                st->ops->free(st);
}

/* Breadth-first traversal: a queue of digests, each enqueued once. */
struct bfs_stream {
        struct kiln_directory_stream base;
        struct kiln_directory_service *svc;
        struct kiln_digest *queue;
        size_t head, n, cap;
        struct kiln_digest_map seen;
};

static void bfs_enqueue(struct bfs_stream *b, const struct kiln_digest *d)
{
        if (kiln_digest_map_get(&b->seen, d))
                return;
        kiln_digest_map_put(&b->seen, d, (void *)1);
        if (b->n == b->cap) {
                b->cap = b->cap ? b->cap * 2 : 16;
                b->queue = kiln_reallocarray(b->queue, b->cap, sizeof(*b->queue));
        }
        b->queue[b->n++] = *d;
}

static int bfs_next(struct kiln_directory_stream *st, struct kiln_directory *ret,
                    struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct bfs_stream *b = (struct bfs_stream *)st;
        if (b->head == b->n)
                return 0;
        struct kiln_digest d = b->queue[b->head];
        struct kiln_directory dir;
        int r = b->svc->ops->get(b->svc, &d, &dir, err);
        if (r < 0)
                return r;
        if (r == 0) {
                if (b->head == 0) {
                        b->n = 0; /* missing root: empty stream */
                        return 0;
                }
                return kiln_error_set(err, ENOENT, "directory %s does not exist",
                                      KILN_DIGEST_B64(&d));
        }
        b->head++;
        for (size_t i = 0; i < dir.n; i++)
                if (dir.nodes[i].kind == KILN_NODE_DIRECTORY)
                        bfs_enqueue(b, &dir.nodes[i].digest);
        *ret = dir;
        if (ret_digest)
                *ret_digest = d;
        return 1;
}

static void bfs_free(struct kiln_directory_stream *st)
{
        struct bfs_stream *b = (struct bfs_stream *)st;
        free(b->queue);
        kiln_digest_map_done(&b->seen, NULL);
        free(b);
}

static const struct kiln_directory_stream_ops bfs_ops = {
        .next = bfs_next,
        .free = bfs_free,
};

int kiln_directory_stream_bfs(struct kiln_directory_service *s, const struct kiln_digest *root,
                              struct kiln_directory_stream **ret, struct kiln_error **err)
{
        (void)err;
        struct bfs_stream *b = kiln_calloc(1, sizeof(*b));
        b->base.ops = &bfs_ops;
        b->svc = s;
        bfs_enqueue(b, root);
        *ret = &b->base;
        return 0;
}

/* The generic putter: validate the whole closure, then store it in one go
 * (put_closure) or put() it leaves to root. */
struct simple_putter {
        struct kiln_directory_putter base;
        struct kiln_directory_service *svc;
        struct kiln_closure *closure;
};

static int simple_putter_put(struct kiln_directory_putter *p, const struct kiln_directory *dir,
                             struct kiln_error **err)
{
        struct simple_putter *sp = (struct simple_putter *)p;
        return kiln_closure_add(sp->closure, dir, NULL, err);
}

static int simple_putter_close(struct kiln_directory_putter *p, struct kiln_digest *ret_root,
                               struct kiln_error **err)
{
        struct simple_putter *sp = (struct simple_putter *)p;
        struct kiln_digest root;
        int r = kiln_closure_finish(sp->closure, &root, err);
        if (r < 0)
                return r;
        const struct kiln_directory **dirs;
        const struct kiln_digest *digests;
        const struct kiln_directory_service_ops *ops = sp->svc->ops;
        if (ops->put_closure) {
                size_t n = kiln_closure_drain(sp->closure, ops->put_closure_order, &dirs, &digests);
                r = ops->put_closure(sp->svc, dirs, digests, n, err);
                if (r < 0)
                        return r;
                *ret_root = root;
                return 0;
        }
        size_t n = kiln_closure_drain(sp->closure, KILN_CLOSURE_LEAVES_TO_ROOT, &dirs, &digests);
        for (size_t i = 0; i < n; i++) {
                struct kiln_digest got;
                r = sp->svc->ops->put(sp->svc, dirs[i], &got, err);
                if (r < 0)
                        return r;
                if (!kiln_digest_eq(&got, &digests[i]))
                        return kiln_error_set(err, EIO,
                                              "store returned digest %s for directory %s",
                                              KILN_DIGEST_B64(&got), KILN_DIGEST_B64(&digests[i]));
        }
        *ret_root = root;
        return 0;
}

static void simple_putter_free(struct kiln_directory_putter *p)
{
        struct simple_putter *sp = (struct simple_putter *)p;
        kiln_closure_free(sp->closure);
        free(sp);
}

static const struct kiln_directory_putter_ops simple_putter_ops = {
        .put = simple_putter_put,
        .close = simple_putter_close,
        .free = simple_putter_free,
};

int kiln_directory_put_multiple_start(struct kiln_directory_service *s,
                                      struct kiln_directory_putter **ret, struct kiln_error **err)
{
        struct kiln_directory_putter *p;
        if (s->ops->put_multiple_start) {
                int r = s->ops->put_multiple_start(s, &p, err);
                if (r < 0)
                        return r;
        } else {
                struct simple_putter *sp = kiln_calloc(1, sizeof(*sp));
                sp->base.ops = &simple_putter_ops;
                sp->svc = s;
                sp->closure = kiln_closure_new(KILN_CLOSURE_LEAVES_TO_ROOT, NULL);
                p = &sp->base;
        }
        p->closed = false;
        *ret = p;
        return 0;
}

int kiln_directory_putter_put(struct kiln_directory_putter *p, const struct kiln_directory *dir,
                              struct kiln_error **err)
{
        if (p->closed)
                return kiln_error_set(err, EINVAL, "directory putter already closed");
        return p->ops->put(p, dir, err);
}

int kiln_directory_putter_close(struct kiln_directory_putter *p, struct kiln_digest *ret_root,
                                struct kiln_error **err)
{
        if (!p->closed) {
                int r = p->ops->close(p, &p->root, err);
                if (r < 0)
                        return r;
                p->closed = true;
        }
        if (ret_root)
                *ret_root = p->root;
        return 0;
}

void kiln_directory_putter_free(struct kiln_directory_putter *p)
{
        if (p)
                p->ops->free(p);
}
