/* The read-through caches (cache+FAR?near=NEAR, blob_cache.c and
 * dir_cache.c) over memory:// stores, each wrapped in a counting store: a
 * second read does not touch the far store, a far store that sends wrong
 * bytes (or fails half-way) is refused and nothing is cached, concurrent
 * readers of one missing object fetch it once, writes reach both stores,
 * and the URL form. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <kiln/store/backend.h>
#include <kiln/store/store.h>

#include "backends.h"

/* --- a counting (and misbehaving on demand) blob store --- */

enum fault { FAULT_NONE, FAULT_FLIP, FAULT_FAIL };

struct count_blobs {
        struct kiln_blob_service base;
        struct kiln_blob_service *inner;
        atomic_int has, open_read, open_write;
        enum fault fault;
        unsigned delay_ms; /* in open_read, to make readers overlap */
};

struct count_reader {
        struct kiln_blob_reader base;
        struct kiln_blob_reader *inner;
        enum fault fault;
};

static ssize_t cr_read(struct kiln_blob_reader *r, void *buf, size_t n, struct kiln_error **err)
{
        struct count_reader *c = (struct count_reader *)r;
        if (c->fault == FAULT_FAIL && r->pos > 0)
                return kiln_error_set(err, EIO, "connection reset (test)");
        if (c->fault == FAULT_FAIL)
                n = KILN_MIN(n, 100);
        ssize_t got = kiln_blob_reader_read(c->inner, buf, n, err);
        if (got > 0 && c->fault == FAULT_FLIP && r->pos == 0)
                ((uint8_t *)buf)[0] ^= 1; /* a store that does not verify */
        return got;
}

static int cr_seek(struct kiln_blob_reader *r, uint64_t pos, struct kiln_error **err)
{
        struct count_reader *c = (struct count_reader *)r;
        return kiln_blob_reader_seek(c->inner, (int64_t)pos, SEEK_SET, NULL, err);
}

static void cr_free(struct kiln_blob_reader *r)
{
        struct count_reader *c = (struct count_reader *)r;
        kiln_blob_reader_free(c->inner);
        free(c);
}

static const struct kiln_blob_reader_ops cr_ops = {
        .read = cr_read, .seek = cr_seek, .free = cr_free,
};

static int cb_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                  struct kiln_error **err)
{
        struct count_blobs *c = (struct count_blobs *)s;
        c->has++;
        return kiln_blob_has(c->inner, d, err);
}

static int cb_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                        struct kiln_blob_reader **ret, struct kiln_error **err)
{
        struct count_blobs *c = (struct count_blobs *)s;
        c->open_read++;
        if (c->delay_ms)
                nanosleep(&(struct timespec){0, (long)c->delay_ms * 1000000L}, NULL);
        struct kiln_blob_reader *in = NULL;
        int r = kiln_blob_open_read(c->inner, d, &in, err);
        if (r <= 0)
                return r;
        struct count_reader *cr = calloc(1, sizeof(*cr));
        cr->base.ops = &cr_ops;
        cr->base.size = kiln_blob_reader_size(in);
        cr->inner = in;
        cr->fault = c->fault;
        *ret = &cr->base;
        return 1;
}

static int cb_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                         struct kiln_error **err)
{
        struct count_blobs *c = (struct count_blobs *)s;
        c->open_write++;
        /* the inner writer as it is: the front end resets its state */
        return c->inner->ops->open_write(c->inner, ret, err);
}

static void cb_free(struct kiln_blob_service *s)
{
        struct count_blobs *c = (struct count_blobs *)s;
        kiln_blob_service_free(c->inner);
        free(c);
}

static const struct kiln_blob_service_ops cb_ops = {
        .name = "counting",
        .has = cb_has,
        .open_read = cb_open_read,
        .open_write = cb_open_write,
        .free = cb_free,
};

static struct count_blobs *count_blobs_new(void)
{
        struct kiln_error *err = NULL;
        struct count_blobs *c = calloc(1, sizeof(*c));
        c->base.ops = &cb_ops;
        assert_ok(kiln_blob_service_open("memory://", &c->inner, &err), err);
        return c;
}

struct blob_fixture {
        struct count_blobs *near, *far;
        struct kiln_blob_service *cache;
};

static void blob_fixture_init(struct blob_fixture *f)
{
        f->near = count_blobs_new();
        f->far = count_blobs_new();
        f->cache = kiln_blob_cache_over(&f->near->base, &f->far->base);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
        uint8_t *p = malloc(n);
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)(i * 31 + seed + (i >> 9));
        return p;
}

static void test_blob_read_through(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct blob_fixture f;
        blob_fixture_init(&f);
        size_t n = 700 * 1024;
        uint8_t *data = pattern(n, 1);
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f.far->inner, data, n, &d, &err), err);

        /* has() answers from the far store without copying */
        assert_int_equal(kiln_blob_has(f.cache, &d, &err), 1);
        assert_int_equal(kiln_blob_has(f.near->inner, &d, &err), 0);

        struct kiln_buf b = KILN_BUF_INIT;
        assert_int_equal(kiln_blob_get(f.cache, &d, &b, &err), 1);
        assert_int_equal(b.len, n);
        assert_memory_equal(b.data, data, n);
        kiln_buf_done(&b);
        assert_int_equal(f.far->open_read, 1);
        assert_int_equal(kiln_blob_has(f.near->inner, &d, &err), 1);

        /* the second read (and a seek) is the near store's alone */
        struct kiln_blob_reader *rd = NULL;
        assert_int_equal(kiln_blob_open_read(f.cache, &d, &rd, &err), 1);
        assert_int_equal(kiln_blob_reader_size(rd), n);
        assert_ok(kiln_blob_reader_seek(rd, (int64_t)n - 10, SEEK_SET, NULL, &err), err);
        uint8_t tail[10];
        assert_int_equal(kiln_blob_reader_read(rd, tail, 10, &err), 10);
        assert_memory_equal(tail, data + n - 10, 10);
        kiln_blob_reader_free(rd);
        assert_int_equal(f.far->open_read, 1);

        /* the chunk list of a far-only blob: copied, then the near store's */
        uint8_t *data2 = pattern(1000, 2);
        struct kiln_digest d2;
        assert_ok(kiln_blob_put(f.far->inner, data2, 1000, &d2, &err), err);
        struct kiln_chunk *chunks = NULL;
        size_t n_chunks = 9;
        assert_int_equal(kiln_blob_chunks(f.cache, &d2, &chunks, &n_chunks, &err), 1);
        free(chunks);
        assert_int_equal(f.far->open_read, 2);
        assert_int_equal(kiln_blob_has(f.near->inner, &d2, &err), 1);

        /* absent from both */
        struct kiln_digest none;
        kiln_digest_of("nothing", 7, &none);
        assert_int_equal(kiln_blob_open_read(f.cache, &none, &rd, &err), 0);
        assert_int_equal(kiln_blob_has(f.cache, &none, &err), 0);
        assert_null(err);

        free(data);
        free(data2);
        kiln_blob_service_free(f.cache);
}

static void test_blob_bad_far(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct blob_fixture f;
        blob_fixture_init(&f);
        size_t n = 300 * 1024;
        uint8_t *data = pattern(n, 3);
        struct kiln_digest d, flipped;
        assert_ok(kiln_blob_put(f.far->inner, data, n, &d, &err), err);
        data[0] ^= 1;
        kiln_digest_of(data, n, &flipped);

        /* wrong bytes: refused, nothing in the near store under either digest */
        f.far->fault = FAULT_FLIP;
        struct kiln_buf b = KILN_BUF_INIT;
        assert_error(kiln_blob_get(f.cache, &d, &b, &err), err, EBADMSG, "not cached");
        assert_int_equal(kiln_blob_has(f.near->inner, &d, &err), 0);
        assert_int_equal(kiln_blob_has(f.near->inner, &flipped, &err), 0);

        /* a failure half-way: the same */
        f.far->fault = FAULT_FAIL;
        assert_error(kiln_blob_get(f.cache, &d, &b, &err), err, EIO, "connection reset");
        assert_int_equal(kiln_blob_has(f.near->inner, &d, &err), 0);

        /* a healthy far store again: read through */
        f.far->fault = FAULT_NONE;
        assert_int_equal(kiln_blob_get(f.cache, &d, &b, &err), 1);
        assert_int_equal(b.len, n);
        kiln_buf_done(&b);
        assert_int_equal(kiln_blob_has(f.near->inner, &d, &err), 1);
        free(data);
        kiln_blob_service_free(f.cache);
}

struct reader_arg {
        struct kiln_blob_service *cache;
        const struct kiln_digest *d;
        const uint8_t *data;
        size_t n;
        int ok;
};

static void *reader_thread(void *p)
{
        struct reader_arg *a = p;
        struct kiln_error *err = NULL;
        struct kiln_buf b = KILN_BUF_INIT;
        int r = kiln_blob_get(a->cache, a->d, &b, &err);
        a->ok = r == 1 && b.len == a->n && !memcmp(b.data, a->data, a->n);
        kiln_buf_done(&b);
        kiln_error_free(err);
        return NULL;
}

static void test_blob_concurrent_readers(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct blob_fixture f;
        blob_fixture_init(&f);
        size_t n = 1024 * 1024;
        uint8_t *data = pattern(n, 4);
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f.far->inner, data, n, &d, &err), err);
        f.far->delay_ms = 100;

        enum { N = 8 };
        pthread_t t[N];
        struct reader_arg a[N];
        for (int i = 0; i < N; i++) {
                a[i] = (struct reader_arg){f.cache, &d, data, n, 0};
                pthread_create(&t[i], NULL, reader_thread, &a[i]);
        }
        for (int i = 0; i < N; i++) {
                pthread_join(t[i], NULL);
                assert_true(a[i].ok);
        }
        assert_int_equal(f.far->open_read, 1);
        assert_int_equal(f.near->open_write, 1);
        free(data);
        kiln_blob_service_free(f.cache);
}

static void test_blob_writes(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct blob_fixture f;
        blob_fixture_init(&f);
        struct kiln_digest d;
        assert_ok(kiln_blob_put(f.cache, "hello\n", 6, &d, &err), err);
        assert_int_equal(kiln_blob_has(f.far->inner, &d, &err), 1);
        assert_int_equal(kiln_blob_has(f.near->inner, &d, &err), 1);
        assert_ok(kiln_blob_sync(f.cache, &err), err);

        /* an unclosed writer leaves nothing in either */
        struct kiln_blob_writer *w = NULL;
        assert_ok(kiln_blob_open_write(f.cache, &w, &err), err);
        assert_ok(kiln_blob_writer_write(w, "abandoned", 9, &err), err);
        kiln_blob_writer_free(w);
        struct kiln_digest da;
        kiln_digest_of("abandoned", 9, &da);
        assert_int_equal(kiln_blob_has(f.far->inner, &da, &err), 0);
        assert_int_equal(kiln_blob_has(f.near->inner, &da, &err), 0);
        kiln_blob_service_free(f.cache);
}

/* --- directories --- */

enum dfault { DFAULT_NONE, DFAULT_SWAP };

struct count_dirs {
        struct kiln_directory_service base;
        struct kiln_directory_service *inner;
        atomic_int get, get_recursive, put;
        enum dfault fault;
        unsigned delay_ms;
};

struct swap_stream {
        struct kiln_directory_stream base;
        struct kiln_directory_stream *inner;
        int i;
};

static int ss_next(struct kiln_directory_stream *st, struct kiln_directory *ret,
                   struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct swap_stream *s = (struct swap_stream *)st;
        int r = kiln_directory_stream_next(s->inner, ret, ret_digest, err);
        if (r > 0 && s->i++ == 1) {
                /* the second Directory: another one, under the same digest */
                struct kiln_node n = {.kind = KILN_NODE_SYMLINK};
                kiln_node_set_name(&n, "zz-evil", 7);
                n.target.data = (uint8_t *)strdup("/etc/passwd");
                n.target.len = 11;
                kiln_directory_add(ret, &n);
        }
        return r;
}

static void ss_free(struct kiln_directory_stream *st)
{
        struct swap_stream *s = (struct swap_stream *)st;
        kiln_directory_stream_free(s->inner);
        free(s);
}

static const struct kiln_directory_stream_ops ss_ops = {.next = ss_next, .free = ss_free};

static int cd_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                  struct kiln_directory *ret, struct kiln_error **err)
{
        struct count_dirs *c = (struct count_dirs *)s;
        c->get++;
        return kiln_directory_get(c->inner, d, ret, err);
}

static int cd_get_recursive(struct kiln_directory_service *s, const struct kiln_digest *root,
                            struct kiln_directory_stream **ret, struct kiln_error **err)
{
        struct count_dirs *c = (struct count_dirs *)s;
        c->get_recursive++;
        if (c->delay_ms)
                nanosleep(&(struct timespec){0, (long)c->delay_ms * 1000000L}, NULL);
        int r = kiln_directory_get_recursive(c->inner, root, ret, err);
        if (r < 0 || c->fault == DFAULT_NONE)
                return r;
        struct swap_stream *ss = calloc(1, sizeof(*ss));
        ss->base.ops = &ss_ops;
        ss->inner = *ret;
        *ret = &ss->base;
        return 0;
}

static int cd_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                  struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct count_dirs *c = (struct count_dirs *)s;
        c->put++;
        return kiln_directory_put(c->inner, dir, ret_digest, err);
}

static void cd_free(struct kiln_directory_service *s)
{
        struct count_dirs *c = (struct count_dirs *)s;
        kiln_directory_service_free(c->inner);
        free(c);
}

static const struct kiln_directory_service_ops cd_ops = {
        .name = "counting",
        .get = cd_get,
        .put = cd_put,
        .get_recursive = cd_get_recursive,
        .free = cd_free,
};

static struct count_dirs *count_dirs_new(void)
{
        struct kiln_error *err = NULL;
        struct count_dirs *c = calloc(1, sizeof(*c));
        c->base.ops = &cd_ops;
        assert_ok(kiln_directory_service_open("memory://", &c->inner, &err), err);
        return c;
}

static struct kiln_node dir_node(const char *name, const struct kiln_digest *d, uint64_t size)
{
        struct kiln_node n = {.kind = KILN_NODE_DIRECTORY, .digest = *d, .size = size};
        kiln_node_set_name(&n, name, strlen(name));
        return n;
}

static struct kiln_node file_node(const char *name, const struct kiln_digest *d, uint64_t size)
{
        struct kiln_node n = {.kind = KILN_NODE_FILE, .digest = *d, .size = size};
        kiln_node_set_name(&n, name, strlen(name));
        return n;
}

/* leaf {f}, mid {leaf, g}, root {a: leaf, m: mid} (leaf is shared) */
struct tree {
        struct kiln_directory leaf, mid, root;
        struct kiln_digest dl, dm, dr;
};

static void tree_build(struct tree *t)
{
        struct kiln_error *err = NULL;
        t->leaf = (struct kiln_directory)KILN_DIRECTORY_INIT;
        t->mid = (struct kiln_directory)KILN_DIRECTORY_INIT;
        t->root = (struct kiln_directory)KILN_DIRECTORY_INIT;
        struct kiln_node n = file_node("f", &kiln_digest_empty, 0);
        kiln_directory_add(&t->leaf, &n);
        assert_ok(kiln_directory_seal(&t->leaf, &err), err);
        kiln_directory_digest(&t->leaf, NULL, &t->dl);
        n = dir_node("leaf", &t->dl, kiln_directory_size(&t->leaf));
        kiln_directory_add(&t->mid, &n);
        n = file_node("g", &kiln_digest_empty, 0);
        kiln_directory_add(&t->mid, &n);
        assert_ok(kiln_directory_seal(&t->mid, &err), err);
        kiln_directory_digest(&t->mid, NULL, &t->dm);
        n = dir_node("a", &t->dl, kiln_directory_size(&t->leaf));
        kiln_directory_add(&t->root, &n);
        n = dir_node("m", &t->dm, kiln_directory_size(&t->mid));
        kiln_directory_add(&t->root, &n);
        assert_ok(kiln_directory_seal(&t->root, &err), err);
        kiln_directory_digest(&t->root, NULL, &t->dr);
}

static void tree_done(struct tree *t)
{
        kiln_directory_done(&t->leaf);
        kiln_directory_done(&t->mid);
        kiln_directory_done(&t->root);
}

static void tree_put(struct kiln_directory_service *s, struct tree *t)
{
        struct kiln_error *err = NULL;
        struct kiln_directory_putter *p = NULL;
        assert_ok(kiln_directory_put_multiple_start(s, &p, &err), err);
        assert_ok(kiln_directory_putter_put(p, &t->leaf, &err), err);
        assert_ok(kiln_directory_putter_put(p, &t->mid, &err), err);
        assert_ok(kiln_directory_putter_put(p, &t->root, &err), err);
        struct kiln_digest got;
        assert_ok(kiln_directory_putter_close(p, &got, &err), err);
        assert_true(kiln_digest_eq(&got, &t->dr));
        kiln_directory_putter_free(p);
}

static int near_has(struct count_dirs *near, const struct kiln_digest *d)
{
        struct kiln_error *err = NULL;
        struct kiln_directory dir;
        int r = kiln_directory_get(near->inner, d, &dir, &err);
        if (r > 0)
                kiln_directory_done(&dir);
        kiln_error_free(err);
        return r;
}

static void test_dir_read_through(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct tree t;
        tree_build(&t);
        struct count_dirs *near = count_dirs_new(), *far = count_dirs_new();
        struct kiln_directory_service *cache = kiln_directory_cache_over(&near->base, &far->base);
        tree_put(far->inner, &t);

        /* Get of the root: the whole closure comes along */
        struct kiln_directory got;
        assert_int_equal(kiln_directory_get(cache, &t.dr, &got, &err), 1);
        kiln_directory_done(&got);
        assert_int_equal(far->get_recursive, 1);
        assert_int_equal(near_has(near, &t.dr), 1);
        assert_int_equal(near_has(near, &t.dm), 1);
        assert_int_equal(near_has(near, &t.dl), 1);

        /* everything below is local now: Get and recursive Get */
        assert_int_equal(kiln_directory_get(cache, &t.dm, &got, &err), 1);
        kiln_directory_done(&got);
        struct kiln_directory_stream *st = NULL;
        assert_ok(kiln_directory_get_recursive(cache, &t.dr, &st, &err), err);
        int n = 0;
        struct kiln_digest d;
        while (kiln_directory_stream_next(st, &got, &d, &err) == 1) {
                kiln_directory_done(&got);
                n++;
        }
        assert_null(err);
        kiln_directory_stream_free(st);
        assert_int_equal(n, 3);
        assert_int_equal(far->get_recursive, 1);
        assert_int_equal(far->get, 0);

        /* absent from both: 0 and an empty stream */
        struct kiln_digest none;
        kiln_digest_of("nothing", 7, &none);
        assert_int_equal(kiln_directory_get(cache, &none, &got, &err), 0);
        assert_ok(kiln_directory_get_recursive(cache, &none, &st, &err), err);
        assert_int_equal(kiln_directory_stream_next(st, &got, &d, &err), 0);
        kiln_directory_stream_free(st);

        kiln_directory_service_free(cache);
        tree_done(&t);
}

static void test_dir_recursive_first(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct tree t;
        tree_build(&t);
        struct count_dirs *near = count_dirs_new(), *far = count_dirs_new();
        struct kiln_directory_service *cache = kiln_directory_cache_over(&near->base, &far->base);
        tree_put(far->inner, &t);
        /* a subtree first, then the root: two fetches, the shared leaf once locally */
        struct kiln_directory_stream *st = NULL;
        struct kiln_directory got;
        struct kiln_digest d;
        for (int round = 0; round < 2; round++) {
                assert_ok(kiln_directory_get_recursive(cache, round ? &t.dr : &t.dm, &st, &err),
                          err);
                int n = 0;
                while (kiln_directory_stream_next(st, &got, &d, &err) == 1) {
                        kiln_directory_done(&got);
                        n++;
                }
                assert_null(err);
                kiln_directory_stream_free(st);
                assert_int_equal(n, round ? 3 : 2);
        }
        assert_int_equal(far->get_recursive, 2);
        kiln_directory_service_free(cache);
        tree_done(&t);
}

static void test_dir_bad_far(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct tree t;
        tree_build(&t);
        struct count_dirs *near = count_dirs_new(), *far = count_dirs_new();
        struct kiln_directory_service *cache = kiln_directory_cache_over(&near->base, &far->base);
        tree_put(far->inner, &t);
        far->fault = DFAULT_SWAP;
        struct kiln_directory got;
        int r = kiln_directory_get(cache, &t.dr, &got, &err);
        assert_true(r < 0);
        assert_non_null(strstr(kiln_error_msg(err), "from the far store"));
        kiln_error_clear(&err);
        assert_int_equal(near_has(near, &t.dr), 0);
        assert_int_equal(near_has(near, &t.dm), 0);
        assert_int_equal(near_has(near, &t.dl), 0);
        assert_int_equal(near->put, 0);
        far->fault = DFAULT_NONE;
        assert_int_equal(kiln_directory_get(cache, &t.dr, &got, &err), 1);
        kiln_directory_done(&got);
        kiln_directory_service_free(cache);
        tree_done(&t);
}

struct dir_reader_arg {
        struct kiln_directory_service *cache;
        const struct kiln_digest *d;
        int ok;
};

static void *dir_reader_thread(void *p)
{
        struct dir_reader_arg *a = p;
        struct kiln_error *err = NULL;
        struct kiln_directory got;
        a->ok = kiln_directory_get(a->cache, a->d, &got, &err) == 1;
        if (a->ok)
                kiln_directory_done(&got);
        kiln_error_free(err);
        return NULL;
}

static void test_dir_concurrent_and_writes(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct tree t;
        tree_build(&t);
        struct count_dirs *near = count_dirs_new(), *far = count_dirs_new();
        struct kiln_directory_service *cache = kiln_directory_cache_over(&near->base, &far->base);
        tree_put(far->inner, &t);
        far->delay_ms = 100;
        enum { N = 6 };
        pthread_t th[N];
        struct dir_reader_arg a[N];
        for (int i = 0; i < N; i++) {
                a[i] = (struct dir_reader_arg){cache, &t.dr, 0};
                pthread_create(&th[i], NULL, dir_reader_thread, &a[i]);
        }
        for (int i = 0; i < N; i++) {
                pthread_join(th[i], NULL);
                assert_true(a[i].ok);
        }
        assert_int_equal(far->get_recursive, 1);
        kiln_directory_service_free(cache);

        /* writes: a multi-put and a single put reach both stores */
        near = count_dirs_new();
        far = count_dirs_new();
        cache = kiln_directory_cache_over(&near->base, &far->base);
        tree_put(cache, &t);
        assert_int_equal(near_has(near, &t.dr), 1);
        assert_int_equal(near_has(far, &t.dr), 1);
        assert_int_equal(near_has(far, &t.dl), 1);
        struct kiln_directory empty = KILN_DIRECTORY_INIT;
        assert_ok(kiln_directory_seal(&empty, &err), err);
        struct kiln_digest de;
        assert_ok(kiln_directory_put(cache, &empty, &de, &err), err);
        assert_int_equal(near_has(near, &de), 1);
        assert_int_equal(near_has(far, &de), 1);
        kiln_directory_done(&empty);
        kiln_directory_service_free(cache);
        tree_done(&t);
}

/* --- URLs --- */

static void test_urls(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_blob_service *b = NULL;
        struct kiln_directory_service *d = NULL;
        assert_ok(kiln_blob_service_open("cache+memory://?near=memory://", &b, &err), err);
        assert_string_equal(kiln_blob_service_name(b), "cache");
        kiln_blob_service_free(b);
        assert_ok(kiln_blob_service_open("cache+objectstore+memory://?near=memory://", &b, &err),
                  err);
        kiln_blob_service_free(b);
        assert_ok(kiln_directory_service_open("cache+memory://?near=objectstore%2Bmemory://", &d,
                                              &err),
                  err);
        assert_string_equal(kiln_directory_service_name(d), "cache");
        kiln_directory_service_free(d);

        assert_error(kiln_blob_service_open("cache+memory://", &b, &err), err, EINVAL,
                     "cache+ needs near=URL");
        assert_error(kiln_directory_service_open("cache+memory://?near=", &d, &err), err, EINVAL,
                     "cache+ needs near=URL");
        /* the far URL is the rest without the near pair, other keys kept */
        assert_error(kiln_blob_service_open("cache+bogus://x?a=1&near=memory://&b=2", &b, &err),
                     err, EINVAL, "'bogus://x?a=1&b=2'");
        assert_error(kiln_blob_service_open("cache+memory://?near=bogus://", &b, &err), err,
                     EINVAL, "'bogus://'");
        assert_error(kiln_blob_service_open("cache+cache+memory://?near=memory://", &b, &err),
                     err, EINVAL, "caches do not nest");
        assert_error(kiln_directory_service_open("cache://?near=memory://", &d, &err), err,
                     EINVAL, "unknown type: cache");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_blob_read_through),
                cmocka_unit_test(test_blob_bad_far),
                cmocka_unit_test(test_blob_concurrent_readers),
                cmocka_unit_test(test_blob_writes),
                cmocka_unit_test(test_dir_read_through),
                cmocka_unit_test(test_dir_recursive_first),
                cmocka_unit_test(test_dir_bad_far),
                cmocka_unit_test(test_dir_concurrent_and_writes),
                cmocka_unit_test(test_urls),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
