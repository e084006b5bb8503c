/* The action cache: request identity, the stores (memory://, lmdb://) and
 * their bound, and the caching build service over a fake backend that
 * counts its builds: hits only while every output is in the castore, one
 * build for identical requests in flight, the same error for all. */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include <kiln/build/action_cache.h>
#include <kiln/build/service.h>
#include <kiln/store/store.h>

/* --- requests --- */

static void add_input(struct kiln_build_request *r, const char *name, uint8_t fill)
{
        r->inputs = realloc(r->inputs, (r->n_inputs + 1) * sizeof(*r->inputs));
        struct kiln_node *n = &r->inputs[r->n_inputs++];
        *n = (struct kiln_node){.kind = KILN_NODE_FILE, .size = 3};
        memset(n->digest.b, fill, sizeof(n->digest.b));
        n->name.len = strlen(name);
        n->name.data = (uint8_t *)strdup(name);
}

static void add_env(struct kiln_build_request *r, const char *k, const char *v)
{
        r->env = realloc(r->env, (r->n_env + 1) * sizeof(*r->env));
        r->env[r->n_env++] = (struct kiln_env_var){
                .key = strdup(k), .value = (uint8_t *)strdup(v), .value_len = strlen(v)};
}

/* The same request; `reorder` lists its sets in another order (and repeats
 * an ro path), `cmd` changes the command. */
static void make_request(struct kiln_build_request *r, bool reorder, const char *cmd)
{
        *r = (struct kiln_build_request){0};
        if (reorder) {
                add_input(r, "b", 2);
                add_input(r, "a", 1);
        } else {
                add_input(r, "a", 1);
                add_input(r, "b", 2);
        }
        kiln_strv_push(&r->command_args, "/bin/sh");
        kiln_strv_push(&r->command_args, "-c");
        kiln_strv_push(&r->command_args, cmd);
        r->working_dir = strdup("build");
        kiln_strv_push(&r->scratch_paths, reorder ? "out" : "build");
        kiln_strv_push(&r->scratch_paths, reorder ? "build" : "out");
        r->inputs_dir = strdup("inputs");
        kiln_strv_push(&r->outputs, reorder ? "out/z" : "out/a");
        kiln_strv_push(&r->outputs, reorder ? "out/a" : "out/z");
        if (reorder) {
                add_env(r, "PATH", "/bin");
                add_env(r, "HOME", "/homeless");
        } else {
                add_env(r, "HOME", "/homeless");
                add_env(r, "PATH", "/bin");
        }
        r->constraints.present = true;
        r->constraints.system = strdup("x86_64-linux");
        kiln_strv_push(&r->constraints.ro_paths, reorder ? "/usr" : "/etc");
        kiln_strv_push(&r->constraints.ro_paths, reorder ? "/etc" : "/usr");
        if (reorder)
                kiln_strv_push(&r->constraints.ro_paths, "/usr");
        kiln_strv_push(&r->needles, "needle-one");
        kiln_strv_push(&r->needles, "needle-two");
}

static void test_identity(void **state)
{
        (void)state;
        struct kiln_build_request a, b, c;
        make_request(&a, false, "echo hi");
        make_request(&b, true, "echo hi");
        make_request(&c, false, "echo ho");
        struct kiln_digest da, db, dc, dv;
        kiln_build_request_identity(&a, &da);
        kiln_build_request_identity(&b, &db);
        kiln_build_request_identity(&c, &dc);
        assert_true(kiln_digest_eq(&da, &db));
        assert_false(kiln_digest_eq(&da, &dc));

        /* A valid request's identity is BLAKE3 of its canonical encoding,
         * which decoding and re-encoding keeps. */
        struct kiln_error *err = NULL;
        assert_ok(kiln_build_request_validate(&a, &err), err);
        struct kiln_buf enc = KILN_BUF_INIT;
        kiln_build_request_encode(&a, &enc);
        kiln_digest_of(enc.data, enc.len, &dv);
        assert_true(kiln_digest_eq(&da, &dv));
        struct kiln_build_request back;
        assert_ok(kiln_build_request_decode(enc.data, enc.len, &back, &err), err);
        kiln_build_request_identity(&back, &dv);
        assert_true(kiln_digest_eq(&da, &dv));
        kiln_build_request_done(&back);
        kiln_buf_done(&enc);

        /* Each field takes part: the order of command arguments and
         * needles matters (they are lists, not sets). */
        struct kiln_build_request d;
        make_request(&d, false, "echo hi");
        char *t = d.needles.v[0];
        d.needles.v[0] = d.needles.v[1];
        d.needles.v[1] = t;
        kiln_build_request_identity(&d, &dv);
        assert_false(kiln_digest_eq(&da, &dv));
        kiln_build_request_done(&d);
        make_request(&d, false, "echo hi");
        d.env[0].value[0] = 'X';
        kiln_build_request_identity(&d, &dv);
        assert_false(kiln_digest_eq(&da, &dv));
        kiln_build_request_done(&d);
        make_request(&d, false, "echo hi");
        d.constraints.network_access = true;
        kiln_build_request_identity(&d, &dv);
        assert_false(kiln_digest_eq(&da, &dv));
        kiln_build_request_done(&d);
        make_request(&d, false, "echo hi");
        d.inputs[1].executable = true;
        kiln_build_request_identity(&d, &dv);
        assert_false(kiln_digest_eq(&da, &dv));
        kiln_build_request_done(&d);

        kiln_build_request_done(&a);
        kiln_build_request_done(&b);
        kiln_build_request_done(&c);
}

/* --- stores --- */

static char *scratch_dir(void)
{
        char tmpl[] = "/tmp/kiln-ac-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        return strdup(tmpl);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
        (void)st, (void)flag, (void)f;
        return remove(p);
}

static void rm_rf(const char *dir)
{
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int unlink_files(const char *p, const struct stat *st, int flag, struct FTW *f)
{
        (void)st, (void)f;
        if (flag == FTW_F)
                unlink(p);
        return 0;
}

static struct kiln_digest key_of(unsigned i)
{
        struct kiln_digest d;
        kiln_digest_of(&i, sizeof(i), &d);
        return d;
}

static bool has_key(struct kiln_action_cache *c, unsigned i)
{
        struct kiln_digest k = key_of(i);
        struct kiln_buf b = KILN_BUF_INIT;
        struct kiln_error *err = NULL;
        int r = c->ops->get(c, &k, &b, &err);
        assert_ok(r, err);
        if (r == 1) {
                assert_int_equal(b.len, sizeof(i));
                assert_memory_equal(b.data, &i, sizeof(i));
        }
        kiln_buf_done(&b);
        return r == 1;
}

static void put_key(struct kiln_action_cache *c, unsigned i)
{
        struct kiln_digest k = key_of(i);
        struct kiln_error *err = NULL;
        assert_ok(c->ops->put(c, &k, &i, sizeof(i), &err), err);
}

static uint64_t count(struct kiln_action_cache *c)
{
        uint64_t n = 0;
        struct kiln_error *err = NULL;
        assert_ok(kiln_action_cache_count(c, &n, &err), err);
        return n;
}

static void test_urls(void **state)
{
        (void)state;
        struct kiln_action_cache *c = NULL;
        struct kiln_error *err = NULL;
        assert_error(kiln_action_cache_open("memory://x", &c, &err), err, EINVAL, "takes no host");
        assert_error(kiln_action_cache_open("lmdb://rel/dir", &c, &err), err, EINVAL,
                     "absolute path");
        assert_error(kiln_action_cache_open("memory://?max-entries=0", &c, &err), err, EINVAL,
                     "max-entries must be a positive number");
        assert_error(kiln_action_cache_open("memory://?max-entries=-1", &c, &err), err, EINVAL,
                     "max-entries must be a positive number");
        assert_error(kiln_action_cache_open("memory://?size=3", &c, &err), err, EINVAL,
                     "unknown parameter 'size'");
        assert_error(kiln_action_cache_open("redis://h", &c, &err), err, EINVAL,
                     "unknown scheme redis");
        assert_error(kiln_action_cache_open("nonsense", &c, &err), err, EINVAL,
                     "invalid action cache URL 'nonsense'");
        assert_ok(kiln_action_cache_open("memory://", &c, &err), err);
        assert_int_equal(c->max_entries, KILN_ACTION_CACHE_MAX_ENTRIES);
        kiln_action_cache_free(c);
        setenv("KILN_HOME", "/tmp/kiln home?", 1);
        char *u = kiln_default_action_cache_url();
        assert_string_equal(u, "lmdb:///tmp/kiln home%3F/action-cache");
        free(u);
        unsetenv("KILN_HOME");
}

/* memory:// evicts exactly the least recently used entry. */
static void test_evict_memory(void **state)
{
        (void)state;
        struct kiln_action_cache *c;
        struct kiln_error *err = NULL;
        assert_ok(kiln_action_cache_open("memory://?max-entries=3", &c, &err), err);
        for (unsigned i = 1; i <= 3; i++)
                put_key(c, i);
        assert_true(has_key(c, 1)); /* 1 is now the most recent, 2 the least */
        put_key(c, 4);
        assert_int_equal(count(c), 3);
        assert_true(has_key(c, 1));
        assert_false(has_key(c, 2));
        assert_true(has_key(c, 3));
        assert_true(has_key(c, 4));
        put_key(c, 3); /* a replacement is not a new entry */
        assert_int_equal(count(c), 3);
        struct kiln_digest k = key_of(3);
        assert_int_equal(kiln_action_cache_remove(c, &k, &err), 1);
        assert_int_equal(kiln_action_cache_remove(c, &k, &err), 0);
        assert_int_equal(count(c), 2);
        kiln_action_cache_free(c);
}

/* lmdb:// keeps the bound, persists, and refreshes an entry once it has
 * fallen into the older half. */
static void test_evict_lmdb(void **state)
{
        (void)state;
        char *dir = scratch_dir();
        char *url = kiln_asprintf("lmdb://%s/ac?max-entries=4", dir);
        struct kiln_action_cache *c;
        struct kiln_error *err = NULL;
        assert_ok(kiln_action_cache_open(url, &c, &err), err);
        for (unsigned i = 1; i <= 4; i++)
                put_key(c, i);
        assert_true(has_key(c, 1)); /* 3 younger ones: older half, refreshed */
        put_key(c, 5);
        assert_int_equal(count(c), 4);
        assert_true(has_key(c, 1));
        assert_false(has_key(c, 2));
        for (unsigned i = 6; i <= 40; i++)
                put_key(c, i);
        assert_int_equal(count(c), 4);
        kiln_action_cache_free(c);
        assert_ok(kiln_action_cache_open(url, &c, &err), err);
        assert_int_equal(count(c), 4);
        for (unsigned i = 37; i <= 40; i++)
                assert_true(has_key(c, i));
        assert_false(has_key(c, 36));
        kiln_action_cache_free(c);
        free(url);
        rm_rf(dir);
        free(dir);
}

/* --- the caching build service over a fake backend --- */

struct fake {
        struct kiln_build_service base;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        atomic_uint builds;
        int fail;     /* errno to fail with, 0: succeed */
        bool gate;    /* hold every build until released */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool released;
};

/* Output 0 ("a") is a file, output 1 ("z") a directory holding a file; the
 * contents depend on the command. */
static int fake_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                      const struct kiln_build_call *call, struct kiln_build *ret,
                      struct kiln_error **err)
{
        struct fake *f = (struct fake *)s;
        atomic_fetch_add(&f->builds, 1);
        if (f->gate && call->output) {
                /* output before the gate: more than the log keeps for waiters */
                call->output(call->userdata, 1, "early\n", 6);
                static char chunk[64 * 1024];
                memset(chunk, 'x', sizeof(chunk));
                for (int i = 0; i < 24; i++)
                        call->output(call->userdata, 2, chunk, sizeof(chunk));
        }
        if (f->gate) {
                /* Polls the call's cancellation, as a runner polls its fd. */
                pthread_mutex_lock(&f->lock);
                while (!f->released && !(call->cancel && kiln_cancel_is_set(call->cancel))) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        ts.tv_nsec += 5 * 1000 * 1000;
                        if (ts.tv_nsec >= 1000000000) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000;
                        }
                        pthread_cond_timedwait(&f->cond, &f->lock, &ts);
                }
                pthread_mutex_unlock(&f->lock);
                if (call->cancel && kiln_cancel_is_set(call->cancel))
                        return kiln_error_set(err, ECANCELED, "build cancelled and killed");
                if (call->output)
                        call->output(call->userdata, 1, "late\n", 5);
        }
        if (f->fail)
                return kiln_error_set_lines(err, f->fail, "command failed\nlast line: boom");
        const char *cmd = req->command_args.v[2];
        struct kiln_digest fd, inner, dd;
        int r = kiln_blob_put(f->blobs, cmd, strlen(cmd), &fd, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *in = kiln_asprintf("inner %s", cmd);
        r = kiln_blob_put(f->blobs, in, strlen(in), &inner, err);
        if (r < 0)
                return r;
        struct kiln_directory d = KILN_DIRECTORY_INIT;
        struct kiln_node n = {.kind = KILN_NODE_FILE, .digest = inner, .size = strlen(in)};
        kiln_node_set_name(&n, "f", 1);
        kiln_directory_add(&d, &n);
        assert_ok(kiln_directory_seal(&d, err), *err);
        r = kiln_directory_put(f->dirs, &d, &dd, err);
        uint64_t dsize = kiln_directory_size(&d);
        kiln_directory_done(&d);
        if (r < 0)
                return r;
        struct kiln_build b = {0};
        kiln_build_request_copy(&b.request, req);
        b.n_outputs = 2;
        b.outputs = kiln_calloc(2, sizeof(*b.outputs));
        b.outputs[0].node = (struct kiln_node){.kind = KILN_NODE_FILE, .digest = fd,
                                               .size = strlen(cmd)};
        kiln_node_set_name(&b.outputs[0].node, "a", 1);
        b.outputs[0].n_needles = 1;
        b.outputs[0].needles = kiln_calloc(1, sizeof(uint64_t));
        b.outputs[0].needles[0] = 1;
        b.outputs[1].node = (struct kiln_node){.kind = KILN_NODE_DIRECTORY, .digest = dd,
                                               .size = dsize};
        kiln_node_set_name(&b.outputs[1].node, "z", 1);
        *ret = b;
        return 0;
}

static void fake_free(struct kiln_build_service *s)
{
        struct fake *f = (struct fake *)s;
        pthread_mutex_destroy(&f->lock);
        pthread_cond_destroy(&f->cond);
        free(f);
}

static const struct kiln_build_service_ops fake_ops = {
        .name = "fake", .build = fake_build, .free = fake_free};

static struct fake *fake_new(struct kiln_blob_service *blobs, struct kiln_directory_service *dirs)
{
        struct fake *f = kiln_calloc(1, sizeof(*f));
        f->base.ops = &fake_ops;
        f->blobs = blobs;
        f->dirs = dirs;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        return f;
}

static void fake_release(struct fake *f)
{
        pthread_mutex_lock(&f->lock);
        f->released = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
}

static void assert_builds_equal(const struct kiln_build *a, const struct kiln_build *b)
{
        assert_int_equal(a->n_outputs, b->n_outputs);
        for (size_t i = 0; i < a->n_outputs; i++) {
                assert_true(kiln_node_eq(&a->outputs[i].node, &b->outputs[i].node));
                assert_int_equal(a->outputs[i].n_needles, b->outputs[i].n_needles);
                for (size_t k = 0; k < a->outputs[i].n_needles; k++)
                        assert_int_equal(a->outputs[i].needles[k], b->outputs[i].needles[k]);
        }
        struct kiln_buf ea = KILN_BUF_INIT, eb = KILN_BUF_INIT;
        kiln_build_encode(a, &ea);
        kiln_build_encode(b, &eb);
        assert_int_equal(ea.len, eb.len);
        assert_memory_equal(ea.data, eb.data, ea.len);
        kiln_buf_done(&ea);
        kiln_buf_done(&eb);
}

struct env {
        char *dir;
        char *blob_url, *cache_url;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
};

static void env_open(struct env *e)
{
        struct kiln_error *err = NULL;
        e->dir = scratch_dir();
        e->blob_url = kiln_asprintf("objectstore+file://%s/blobs", e->dir);
        e->cache_url = kiln_asprintf("lmdb://%s/ac", e->dir);
        assert_ok(kiln_blob_service_open(e->blob_url, &e->blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &e->dirs, &err), err);
}

static void env_close(struct env *e)
{
        kiln_blob_service_free(e->blobs);
        kiln_directory_service_free(e->dirs);
        rm_rf(e->dir);
        free(e->dir);
        free(e->blob_url);
        free(e->cache_url);
}

static struct kiln_build_service *cached_over(struct env *e, struct fake *f)
{
        struct kiln_action_cache *c;
        struct kiln_error *err = NULL;
        assert_ok(kiln_action_cache_open(e->cache_url, &c, &err), err);
        return kiln_build_service_cached_new(&f->base, c, e->blobs, e->dirs);
}

static void build_ok(struct kiln_build_service *s, const struct kiln_build_request *req,
                     struct kiln_build *ret)
{
        struct kiln_error *err = NULL;
        assert_ok(kiln_build_service_build(s, req, NULL, ret, &err), err);
}

static void test_hit_and_stale(void **state)
{
        (void)state;
        struct env e;
        env_open(&e);
        struct fake *f = fake_new(e.blobs, e.dirs);
        struct kiln_build_service *s = cached_over(&e, f);
        struct kiln_build_request req, same, other;
        make_request(&req, false, "echo hi");
        make_request(&same, false, "echo hi"); /* a second, equal request */
        make_request(&other, false, "echo ho");
        struct kiln_error *err = NULL;
        assert_ok(kiln_build_request_validate(&req, &err), err);
        assert_ok(kiln_build_request_validate(&same, &err), err);
        assert_ok(kiln_build_request_validate(&other, &err), err);
        struct kiln_build b1, b2, b3;
        build_ok(s, &req, &b1);
        build_ok(s, &same, &b2);
        assert_int_equal(f->builds, 1);
        assert_builds_equal(&b1, &b2);
        struct kiln_build_cache_stats st;
        kiln_build_service_cache_stats(s, &st);
        assert_int_equal(st.hits, 1);
        assert_int_equal(st.builds, 1);
        build_ok(s, &other, &b3);
        assert_int_equal(f->builds, 2);
        kiln_build_done(&b2);
        kiln_build_done(&b3);

        /* The cache outlives the service (lmdb): a new one answers too. */
        kiln_build_service_free(s);
        f = fake_new(e.blobs, e.dirs);
        s = cached_over(&e, f);
        build_ok(s, &req, &b2);
        assert_int_equal(f->builds, 0);
        assert_builds_equal(&b1, &b2);
        kiln_build_done(&b2);

        /* Every blob gone from the castore: built again, then a hit again. */
        char *blobdir = kiln_asprintf("%s/blobs", e.dir);
        nftw(blobdir, unlink_files, 16, FTW_PHYS);
        free(blobdir);
        assert_int_equal(kiln_blob_has(e.blobs, &b1.outputs[0].node.digest, &err), 0);
        build_ok(s, &req, &b2);
        assert_int_equal(f->builds, 1);
        kiln_build_service_cache_stats(s, &st);
        assert_int_equal(st.stale, 1);
        assert_builds_equal(&b1, &b2);
        kiln_build_done(&b2);
        build_ok(s, &req, &b2);
        assert_int_equal(f->builds, 1);
        kiln_build_done(&b2);
        kiln_build_service_free(s);

        kiln_build_done(&b1);
        kiln_build_request_done(&req);
        kiln_build_request_done(&same);
        kiln_build_request_done(&other);
        env_close(&e);
}

/* A directory output whose root is stored but one of whose blobs is not,
 * and a file output whose blob is not: both make the record stale. Uses
 * separate blob stores over one cache rather than deleting files. */
static void test_stale_outputs(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_blob_service *full, *partial;
        struct kiln_directory_service *dirs;
        assert_ok(kiln_blob_service_open("memory://", &full, &err), err);
        assert_ok(kiln_blob_service_open("memory://", &partial, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &dirs, &err), err);
        char *dir = scratch_dir();
        char *url = kiln_asprintf("lmdb://%s/ac", dir);
        struct kiln_build_request req;
        make_request(&req, false, "echo hi");
        struct kiln_build b;

        struct kiln_action_cache *c;
        struct fake *f = fake_new(full, dirs);
        assert_ok(kiln_action_cache_open(url, &c, &err), err);
        struct kiln_build_service *s = kiln_build_service_cached_new(&f->base, c, full, dirs);
        build_ok(s, &req, &b);
        kiln_build_done(&b);
        kiln_build_service_free(s);

        /* `partial` holds only the file output's blob. */
        struct kiln_digest d;
        assert_ok(kiln_blob_put(partial, "echo hi", 7, &d, &err), err);
        f = fake_new(full, dirs); /* builds into `full` */
        assert_ok(kiln_action_cache_open(url, &c, &err), err);
        s = kiln_build_service_cached_new(&f->base, c, partial, dirs);
        build_ok(s, &req, &b);
        kiln_build_done(&b);
        assert_int_equal(f->builds, 1);
        struct kiln_build_cache_stats st;
        kiln_build_service_cache_stats(s, &st);
        assert_int_equal(st.stale, 1);
        assert_int_equal(st.hits, 0);
        kiln_build_service_free(s);

        /* Now `partial` holds only the inner blob: the file output is gone. */
        kiln_blob_service_free(partial);
        assert_ok(kiln_blob_service_open("memory://", &partial, &err), err);
        assert_ok(kiln_blob_put(partial, "inner echo hi", 13, &d, &err), err);
        f = fake_new(full, dirs);
        assert_ok(kiln_action_cache_open(url, &c, &err), err);
        s = kiln_build_service_cached_new(&f->base, c, partial, dirs);
        build_ok(s, &req, &b);
        kiln_build_done(&b);
        assert_int_equal(f->builds, 1);
        kiln_build_service_free(s);

        /* With both blobs present: a hit. */
        f = fake_new(full, dirs);
        assert_ok(kiln_action_cache_open(url, &c, &err), err);
        s = kiln_build_service_cached_new(&f->base, c, full, dirs);
        build_ok(s, &req, &b);
        kiln_build_done(&b);
        assert_int_equal(f->builds, 0);
        kiln_build_service_free(s);

        /* The directory output's root gone from the directory store. */
        struct kiln_directory_service *empty;
        assert_ok(kiln_directory_service_open("memory://", &empty, &err), err);
        f = fake_new(full, dirs);
        assert_ok(kiln_action_cache_open(url, &c, &err), err);
        s = kiln_build_service_cached_new(&f->base, c, full, empty);
        build_ok(s, &req, &b);
        kiln_build_done(&b);
        assert_int_equal(f->builds, 1);
        kiln_build_service_free(s);

        kiln_directory_service_free(empty);
        kiln_build_request_done(&req);
        kiln_blob_service_free(full);
        kiln_blob_service_free(partial);
        kiln_directory_service_free(dirs);
        rm_rf(dir);
        free(dir);
        free(url);
}

/* A record that does not decode, or does not fit the request, is a miss
 * (and is replaced by the new build's). */
static void test_bad_record(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_action_cache *c;
        assert_ok(kiln_blob_service_open("memory://", &blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &dirs, &err), err);
        assert_ok(kiln_action_cache_open("memory://", &c, &err), err);
        struct kiln_build_request req;
        make_request(&req, false, "echo hi");
        struct kiln_digest id;
        kiln_build_request_identity(&req, &id);
        assert_ok(c->ops->put(c, &id, "\xff\xff", 2, &err), err);
        struct kiln_build b;
        assert_error(kiln_action_cache_lookup(c, &id, &b, &err), err, EBADMSG, "record");
        struct fake *f = fake_new(blobs, dirs);
        struct kiln_build_service *s = kiln_build_service_cached_new(&f->base, c, blobs, dirs);
        build_ok(s, &req, &b);
        assert_int_equal(f->builds, 1);
        struct kiln_build_cache_stats st;
        kiln_build_service_cache_stats(s, &st);
        assert_int_equal(st.stale, 1);
        /* A record of one output for a request of two. */
        struct kiln_build one = {.outputs = b.outputs, .n_outputs = 1};
        assert_ok(kiln_action_cache_store(c, &id, &one, &err), err);
        kiln_build_done(&b);
        build_ok(s, &req, &b);
        assert_int_equal(f->builds, 2);
        kiln_build_done(&b);
        build_ok(s, &req, &b); /* the new record: a hit */
        assert_int_equal(f->builds, 2);
        kiln_build_done(&b);
        kiln_build_service_free(s);
        kiln_build_request_done(&req);
        kiln_blob_service_free(blobs);
        kiln_directory_service_free(dirs);
}

/* --- in flight --- */

#define N_THREADS 8

struct submitter {
        struct kiln_build_service *s;
        const struct kiln_build_request *req;
        struct kiln_cancel *cancel;
        atomic_uint *joined;
        int r;
        struct kiln_build b;
        struct kiln_error *err;
        struct kiln_buf out; /* what its call's output got, all streams */
};

static void on_output(void *userdata, int stream, const void *p, size_t n)
{
        (void)stream;
        struct submitter *t = userdata;
        kiln_buf_append(&t->out, p, n);
}

static void on_progress(void *userdata, const char *phase)
{
        struct submitter *t = userdata;
        if (!strcmp(phase, "joined"))
                atomic_fetch_add(t->joined, 1);
}

static void *submit(void *arg)
{
        struct submitter *t = arg;
        struct kiln_build_call call = {.cancel = t->cancel, .progress = on_progress,
                                       .output = on_output, .userdata = t};
        t->r = kiln_build_service_build(t->s, t->req, &call, &t->b, &t->err);
        return NULL;
}

static void wait_for(atomic_uint *v, unsigned n)
{
        while (atomic_load(v) < n)
                usleep(1000);
}

/* N identical requests at once, the backend held until all are in: one
 * build; every submitter gets the same Build (or the same error). */
static void run_concurrent(int fail)
{
        struct kiln_error *err = NULL;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_action_cache *c;
        assert_ok(kiln_blob_service_open("memory://", &blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &dirs, &err), err);
        assert_ok(kiln_action_cache_open("memory://", &c, &err), err);
        struct fake *f = fake_new(blobs, dirs);
        f->gate = true;
        f->fail = fail;
        struct kiln_build_service *s = kiln_build_service_cached_new(&f->base, c, blobs, dirs);
        struct kiln_build_request req;
        make_request(&req, false, "echo hi");
        atomic_uint joined = 0;
        struct submitter t[N_THREADS];
        pthread_t th[N_THREADS];
        for (int i = 0; i < N_THREADS; i++) {
                t[i] = (struct submitter){.s = s, .req = &req, .joined = &joined};
                assert_int_equal(pthread_create(&th[i], NULL, submit, &t[i]), 0);
        }
        wait_for(&joined, N_THREADS - 1);
        assert_int_equal(f->builds, 1);
        fake_release(f);
        for (int i = 0; i < N_THREADS; i++)
                pthread_join(th[i], NULL);
        assert_int_equal(f->builds, 1);
        for (int i = 0; i < N_THREADS; i++) {
                if (fail) {
                        assert_int_equal(t[i].r, -fail);
                        assert_int_equal(t[i].err->code, fail);
                        assert_string_equal(t[i].err->msg, "command failed\nlast line: boom");
                        kiln_error_free(t[i].err);
                } else {
                        assert_int_equal(t[i].r, 0);
                        assert_builds_equal(&t[0].b, &t[i].b);
                }
                /* every caller saw the build's output: its end, and all of
                 * it up to what the log keeps for those who joined */
                struct kiln_buf *o = &t[i].out;
                assert_true(o->len >= 5 + 512 * 1024);
                assert_memory_equal(o->data + o->len - 5, "late\n", 5);
                assert_true(o->len <= 6 + 24 * 64 * 1024 + 5);
                kiln_buf_done(o);
        }
        struct kiln_build_cache_stats st;
        kiln_build_service_cache_stats(s, &st);
        assert_int_equal(st.builds, 1);
        assert_int_equal(st.joined, N_THREADS - 1);
        if (!fail)
                for (int i = N_THREADS - 1; i >= 0; i--)
                        kiln_build_done(&t[i].b);

        /* A failure is not remembered: the next identical request builds. */
        f->gate = false;
        struct kiln_build b;
        struct kiln_error *e2 = NULL;
        int r = kiln_build_service_build(s, &req, NULL, &b, &e2);
        assert_int_equal(f->builds, fail ? 2 : 1);
        if (fail) {
                assert_int_equal(r, -fail);
                kiln_error_free(e2);
        } else {
                assert_int_equal(r, 0);
                kiln_build_done(&b);
        }
        kiln_build_service_free(s);
        kiln_build_request_done(&req);
        kiln_blob_service_free(blobs);
        kiln_directory_service_free(dirs);
}

static void test_inflight_once(void **state)
{
        (void)state;
        run_concurrent(0);
}

static void test_inflight_error(void **state)
{
        (void)state;
        run_concurrent(EIO);
}

/* A waiter cancelled while waiting stops alone; the builder's own
 * cancellation makes the waiters start over, and one of them builds. */
static void test_inflight_cancel(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        assert_ok(kiln_blob_service_open("memory://", &blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &dirs, &err), err);
        struct fake *f = fake_new(blobs, dirs);
        f->gate = true;
        struct kiln_build_service *s = kiln_build_service_cached_new(&f->base, NULL, blobs, dirs);
        struct kiln_build_request req;
        make_request(&req, false, "echo hi");
        atomic_uint joined = 0;
        struct submitter t[3];
        pthread_t th[3];
        for (int i = 0; i < 3; i++)
                t[i] = (struct submitter){
                        .s = s, .req = &req, .joined = &joined, .cancel = kiln_cancel_new()};
        assert_int_equal(pthread_create(&th[0], NULL, submit, &t[0]), 0);
        wait_for(&f->builds, 1);
        for (int i = 1; i < 3; i++)
                assert_int_equal(pthread_create(&th[i], NULL, submit, &t[i]), 0);
        wait_for(&joined, 2);
        kiln_cancel_trigger(t[2].cancel); /* a waiter */
        pthread_join(th[2], NULL);
        assert_int_equal(t[2].r, -ECANCELED);
        assert_non_null(strstr(t[2].err->msg, "waiting for an identical build"));
        kiln_error_free(t[2].err);
        kiln_cancel_trigger(t[0].cancel); /* the builder */
        pthread_join(th[0], NULL);
        assert_int_equal(t[0].r, -ECANCELED);
        kiln_error_free(t[0].err);
        wait_for(&f->builds, 2); /* the remaining waiter builds */
        fake_release(f);
        pthread_join(th[1], NULL);
        assert_int_equal(t[1].r, 0);
        assert_int_equal(t[1].b.n_outputs, 2);
        kiln_build_done(&t[1].b);
        for (int i = 0; i < 3; i++) {
                kiln_cancel_free(t[i].cancel);
                kiln_buf_done(&t[i].out);
        }
        kiln_build_service_free(s);
        kiln_build_request_done(&req);
        kiln_blob_service_free(blobs);
        kiln_directory_service_free(dirs);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_identity),       cmocka_unit_test(test_urls),
                cmocka_unit_test(test_evict_memory),   cmocka_unit_test(test_evict_lmdb),
                cmocka_unit_test(test_hit_and_stale),  cmocka_unit_test(test_stale_outputs),
                cmocka_unit_test(test_bad_record),
                cmocka_unit_test(test_inflight_once),  cmocka_unit_test(test_inflight_error),
                cmocka_unit_test(test_inflight_cancel),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
