/* The caching build service (action_cache.h): the action cache in front of
 * any backend, and the deduplication of identical requests in flight.
 *
 * Locking: one mutex guards the table of builds in flight and their
 * entries; waiters sleep on one condition variable, broadcast when any build
 * ends, and wake every 50 ms to notice their own cancellation. The cache
 * store locks for itself, and is consulted outside the mutex. A finished
 * build is remembered before its entry leaves the table, so a request
 * arriving at any moment finds either the entry or the record.
 *
 * A waiter sees the output of the build it joined: the builder's output
 * goes to its own caller and into its entry's log (the last LOG_KEEP bytes,
 * under the mutex), which each waiter forwards to its own caller from its
 * own thread, so a slow waiter never holds the build up. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <kiln/build/action_cache.h>
#include <kiln/castore/digest_map.h>

/* Output kept for waiters: from the end, whole records. */
#define LOG_KEEP (1024 * 1024)

struct inflight {
        struct kiln_digest key;
        unsigned refs; /* the builder and its waiters */
        bool done;
        bool retry;    /* the build was cancelled by its own caller: start over */
        int code;      /* 0: success, result holds the outputs */
        char *msg;
        struct kiln_build result;
        /* The build's output: records of a stream byte, a 4-byte length
         * (host order) and the bytes; log_base is the offset of log.data
         * in the whole output so far. */
        struct kiln_buf log;
        uint64_t log_base;
};

struct cached_service {
        struct kiln_build_service base;
        struct kiln_build_service *backend;
        struct kiln_action_cache *cache; /* NULL: deduplication only */
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* CLOCK_MONOTONIC */
        struct kiln_digest_map inflight; /* key -> struct inflight * */
        atomic_uint_least64_t hits, stale, builds, joined;
};

static void outputs_copy(struct kiln_build *dst, const struct kiln_build *src)
{
        dst->outputs = kiln_calloc(src->n_outputs, sizeof(*dst->outputs));
        dst->n_outputs = src->n_outputs;
        for (size_t i = 0; i < src->n_outputs; i++) {
                kiln_node_copy(&dst->outputs[i].node, &src->outputs[i].node);
                dst->outputs[i].needles = kiln_memdup(src->outputs[i].needles,
                                                      src->outputs[i].n_needles *
                                                              sizeof(uint64_t));
                dst->outputs[i].n_needles = src->outputs[i].n_needles;
        }
}

static void inflight_unref(struct inflight *f)
{
        if (--f->refs)
                return;
        free(f->msg);
        kiln_build_done(&f->result);
        kiln_buf_done(&f->log);
        free(f);
}

#define LOG_HEAD 5

static void log_append(struct inflight *f, int stream, const uint8_t *p, size_t n)
{
        if (n > LOG_KEEP / 2) { /* its tail is all that can be kept */
                p += n - LOG_KEEP / 2;
                n = LOG_KEEP / 2;
        }
        uint8_t head[LOG_HEAD] = {(uint8_t)stream};
        uint32_t len = (uint32_t)n;
        memcpy(head + 1, &len, sizeof(len));
        kiln_buf_append(&f->log, head, sizeof(head));
        kiln_buf_append(&f->log, p, n);
        if (f->log.len <= LOG_KEEP)
                return;
        size_t drop = 0; /* whole records, until half is left */
        while (f->log.len - drop > LOG_KEEP / 2) {
                memcpy(&len, f->log.data + drop + 1, sizeof(len));
                drop += LOG_HEAD + len;
        }
        memmove(f->log.data, f->log.data + drop, f->log.len - drop);
        f->log.len -= drop;
        f->log_base += drop;
}

/* Hands a waiter the output it has not seen (from *pos on) with the mutex
 * let go meanwhile. */
static void log_forward(struct cached_service *c, struct inflight *f,
                        const struct kiln_build_call *call, uint64_t *pos)
{
        if (!call->output)
                return;
        if (*pos < f->log_base)
                *pos = f->log_base; /* what it missed is gone */
        size_t from = (size_t)(*pos - f->log_base);
        if (from == f->log.len)
                return;
        size_t n = f->log.len - from;
        _cleanup_free_ uint8_t *copy = kiln_memdup(f->log.data + from, n);
        *pos += n;
        pthread_mutex_unlock(&c->lock);
        for (size_t at = 0; at < n;) {
                uint32_t len;
                memcpy(&len, copy + at + 1, sizeof(len));
                call->output(call->userdata, copy[at], copy + at + LOG_HEAD, len);
                at += LOG_HEAD + len;
        }
        pthread_mutex_lock(&c->lock);
}

/* The builder's calls: its caller's callbacks, and its output into the log. */
struct tee {
        struct cached_service *c;
        struct inflight *f;
        const struct kiln_build_call *call;
};

static void tee_output(void *ud, int stream, const void *p, size_t n)
{
        struct tee *t = ud;
        if (t->call->output)
                t->call->output(t->call->userdata, stream, p, n);
        pthread_mutex_lock(&t->c->lock);
        log_append(t->f, stream, p, n);
        if (t->f->refs > 1) /* someone joined: wake the waiters to forward it */
                pthread_cond_broadcast(&t->c->cond);
        pthread_mutex_unlock(&t->c->lock);
}

static void tee_progress(void *ud, const char *phase)
{
        struct tee *t = ud;
        if (t->call->progress)
                t->call->progress(t->call->userdata, phase);
}

static void tee_position(void *ud, size_t ahead)
{
        struct tee *t = ud;
        if (t->call->queue_position)
                t->call->queue_position(t->call->userdata, ahead);
}

static void tee_retrying(void *ud, const struct kiln_error *why, unsigned attempt,
                         unsigned attempts)
{
        struct tee *t = ud;
        if (t->call->retrying)
                t->call->retrying(t->call->userdata, why, attempt, attempts);
}

/* --- is a remembered Build still whole? --- */

struct presence {
        struct kiln_digest_map seen; /* blobs found present -> (void *)1 */
};

static bool blob_present(struct cached_service *c, struct presence *p,
                         const struct kiln_digest *d)
{
        if (kiln_digest_map_get(&p->seen, d))
                return true;
        if (kiln_blob_has(c->blobs, d, NULL) != 1)
                return false;
        kiln_digest_map_put(&p->seen, d, (void *)1);
        return true;
}

/* Every Directory of root's closure (each verified by the store) and every
 * blob they name. */
static bool closure_present(struct cached_service *c, struct presence *p,
                            const struct kiln_digest *root)
{
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        if (kiln_directory_get_recursive(c->dirs, root, &st, NULL) < 0)
                return false;
        bool ok = true, first = true;
        for (;;) {
                struct kiln_directory d = KILN_DIRECTORY_INIT;
                struct kiln_digest dd;
                int r = kiln_directory_stream_next(st, &d, &dd, NULL);
                if (r <= 0) {
                        ok = ok && r == 0 && !first;
                        break;
                }
                if (first && !kiln_digest_eq(&dd, root))
                        ok = false;
                first = false;
                for (size_t i = 0; ok && i < d.n; i++)
                        if (d.nodes[i].kind == KILN_NODE_FILE)
                                ok = blob_present(c, p, &d.nodes[i].digest);
                kiln_directory_done(&d);
                if (!ok)
                        break;
        }
        return ok;
}

static bool basename_is(const struct kiln_node *n, const char *path)
{
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        return n->name.len == strlen(base) && !memcmp(n->name.data, base, n->name.len);
}

/* Whether a record fits the request and all its outputs are in the stores. */
static bool usable(struct cached_service *c, const struct kiln_build_request *req,
                   const struct kiln_build *b)
{
        if (b->n_outputs != req->outputs.n)
                return false;
        struct presence p = {.seen = KILN_DIGEST_MAP_INIT};
        bool ok = true;
        for (size_t i = 0; ok && i < b->n_outputs; i++) {
                const struct kiln_node *n = &b->outputs[i].node;
                if (!basename_is(n, req->outputs.v[i]))
                        ok = false;
                else if (n->kind == KILN_NODE_FILE)
                        ok = blob_present(c, &p, &n->digest);
                else if (n->kind == KILN_NODE_DIRECTORY)
                        ok = closure_present(c, &p, &n->digest);
        }
        kiln_digest_map_done(&p.seen, NULL);
        return ok;
}

/* 1 with *ret filled from the cache, 0 to build. */
static int from_cache(struct cached_service *c, const struct kiln_digest *key,
                      const struct kiln_build_request *req, struct kiln_build *ret)
{
        if (!c->cache)
                return 0;
        struct kiln_build b = {0};
        int r = kiln_action_cache_lookup(c->cache, key, &b, NULL);
        if (r == 0)
                return 0;
        if (r < 0 || !usable(c, req, &b)) {
                /* Gone from the store (or unreadable): forget it and build. */
                if (r > 0)
                        kiln_build_done(&b);
                kiln_action_cache_remove(c->cache, key, NULL);
                atomic_fetch_add(&c->stale, 1);
                return 0;
        }
        kiln_build_request_copy(&b.request, req);
        *ret = b;
        atomic_fetch_add(&c->hits, 1);
        return 1;
}

/* Waits for f (locked), forwarding its output; false when the caller's own
 * call was cancelled. */
static bool wait_done(struct cached_service *c, struct inflight *f,
                      const struct kiln_build_call *call)
{
        uint64_t pos = 0;
        for (;;) {
                /* done is set after the build's last output went in */
                bool done = f->done;
                log_forward(c, f, call, &pos);
                if (done)
                        return true;
                if (call->cancel && kiln_cancel_is_set(call->cancel))
                        return false;
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += 50 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        }
}

static int cached_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                        const struct kiln_build_call *call, struct kiln_build *ret,
                        struct kiln_error **err)
{
        struct cached_service *c = (struct cached_service *)s;
        if (call->no_cache)
                return kiln_build_service_build(c->backend, req, call, ret, err);
        struct kiln_digest key;
        kiln_build_request_identity(req, &key);
        for (;;) {
                /* The first of identical requests looks in the cache and
                 * builds; the others wait for it, so a crowd costs one
                 * lookup (a call, with a daemon's cache) and one build. */
                pthread_mutex_lock(&c->lock);
                struct inflight *f = kiln_digest_map_get(&c->inflight, &key);
                if (f) {
                        f->refs++; /* keeps f while the lock is let go */
                        if (call->progress) {
                                pthread_mutex_unlock(&c->lock);
                                call->progress(call->userdata, "joined");
                                pthread_mutex_lock(&c->lock);
                        }
                        if (!wait_done(c, f, call)) {
                                inflight_unref(f);
                                pthread_mutex_unlock(&c->lock);
                                return kiln_error_set(err, ECANCELED,
                                                      "build cancelled while waiting for an "
                                                      "identical build");
                        }
                        if (f->retry) {
                                inflight_unref(f);
                                pthread_mutex_unlock(&c->lock);
                                continue;
                        }
                        int r = 0;
                        if (f->code) {
                                r = kiln_error_set_lines(err, f->code, "%s", f->msg);
                        } else {
                                struct kiln_build b = {0};
                                outputs_copy(&b, &f->result);
                                kiln_build_request_copy(&b.request, req);
                                *ret = b;
                        }
                        inflight_unref(f);
                        pthread_mutex_unlock(&c->lock);
                        atomic_fetch_add(&c->joined, 1);
                        return r;
                }
                f = kiln_calloc(1, sizeof(*f));
                f->key = key;
                f->refs = 1;
                kiln_digest_map_put(&c->inflight, &key, f);
                pthread_mutex_unlock(&c->lock);

                _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
                struct kiln_build b = {0};
                int r = 0;
                if (from_cache(c, &key, req, &b)) {
                        if (call->progress)
                                call->progress(call->userdata, "cache-hit");
                } else {
                        struct tee t = {.c = c, .f = f, .call = call};
                        struct kiln_build_call tc = *call;
                        tc.userdata = &t;
                        tc.output = tee_output;
                        tc.progress = call->progress ? tee_progress : NULL;
                        tc.queue_position = call->queue_position ? tee_position : NULL;
                        tc.retrying = call->retrying ? tee_retrying : NULL;
                        atomic_fetch_add(&c->builds, 1);
                        r = kiln_build_service_build(c->backend, req, &tc, &b, &e);
                        if (r == 0 && c->cache)
                                kiln_action_cache_store(c->cache, &key, &b, NULL);
                }

                pthread_mutex_lock(&c->lock);
                kiln_digest_map_remove(&c->inflight, &key);
                f->done = true;
                if (r == -ECANCELED && call->cancel && kiln_cancel_is_set(call->cancel)) {
                        f->retry = true;
                } else if (r < 0) {
                        f->code = e ? e->code : -r;
                        f->msg = kiln_strdup(kiln_error_msg(e));
                } else {
                        outputs_copy(&f->result, &b);
                }
                pthread_cond_broadcast(&c->cond);
                inflight_unref(f);
                pthread_mutex_unlock(&c->lock);
                if (r < 0) {
                        if (err) {
                                kiln_error_free(*err);
                                *err = TAKE_PTR(e);
                        }
                        return r;
                }
                *ret = b;
                return 0;
        }
}

static const char *cached_notice(struct kiln_build_service *s)
{
        struct cached_service *c = (struct cached_service *)s;
        return kiln_build_service_notice(c->backend);
}

static void cached_free(struct kiln_build_service *s)
{
        struct cached_service *c = (struct cached_service *)s;
        kiln_build_service_free(c->backend);
        kiln_action_cache_free(c->cache);
        kiln_digest_map_done(&c->inflight, NULL);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static const struct kiln_build_service_ops cached_ops = {
        .name = "cache",
        .build = cached_build,
        .free = cached_free,
        .notice = cached_notice,
};

struct kiln_build_service *kiln_build_service_cached_new(struct kiln_build_service *backend,
                                                         struct kiln_action_cache *cache,
                                                         struct kiln_blob_service *blobs,
                                                         struct kiln_directory_service *dirs)
{
        struct cached_service *c = kiln_calloc(1, sizeof(*c));
        c->base.ops = &cached_ops;
        c->backend = backend;
        c->cache = cache;
        c->blobs = blobs;
        c->dirs = dirs;
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cond, &ca);
        pthread_condattr_destroy(&ca);
        c->inflight = (struct kiln_digest_map)KILN_DIGEST_MAP_INIT;
        return &c->base;
}

void kiln_build_service_cache_stats(struct kiln_build_service *s,
                                    struct kiln_build_cache_stats *ret)
{
        *ret = (struct kiln_build_cache_stats){0};
        if (s->ops != &cached_ops)
                return;
        struct cached_service *c = (struct cached_service *)s;
        ret->hits = atomic_load(&c->hits);
        ret->stale = atomic_load(&c->stale);
        ret->builds = atomic_load(&c->builds);
        ret->joined = atomic_load(&c->joined);
}

struct kiln_action_cache *kiln_build_service_action_cache(struct kiln_build_service *s)
{
        return s->ops == &cached_ops ? ((struct cached_service *)s)->cache : NULL;
}
