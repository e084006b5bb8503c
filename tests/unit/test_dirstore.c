/* Directory closure validation and the directory stores. */
#include "testutil.h"

#include <assert.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zstd.h>

#include <kiln/store/backend.h>
#include <kiln/castore/digest_map.h>
#include <kiln/castore/castore.h>
#include <kiln/store/store.h>

/* --- fixtures --- */

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

static struct kiln_node link_node(const char *name, const char *target)
{
        struct kiln_node n = {.kind = KILN_NODE_SYMLINK};
        kiln_node_set_name(&n, name, strlen(name));
        n.target.data = (uint8_t *)strdup(target);
        n.target.len = strlen(target);
        return n;
}

static void add(struct kiln_directory *d, struct kiln_node n)
{
        kiln_directory_add(d, &n);
}

static void seal(struct kiln_directory *d)
{
        struct kiln_error *err = NULL;
        assert_ok(kiln_directory_seal(d, &err), err);
}

static struct kiln_digest digest_of(const struct kiln_directory *d)
{
        struct kiln_digest r;
        kiln_directory_digest(d, NULL, &r);
        return r;
}

enum { FX_A, FX_WITH_KEEP, FX_B, FX_C, FX_D, FX_COMPLICATED, FX_BROKEN, FX_N };

static struct kiln_directory fx[FX_N];
static struct kiln_digest fxd[FX_N];

static const char *const fx_hex[FX_N] = {
    [FX_A] = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    [FX_WITH_KEEP] = "8b5b5d642b646bb8ed504b0862c39413e87e57491497de7bd075953f7b83810e",
    [FX_B] = "8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc",
    [FX_C] = "78eb200ae0cc95d4ea954655fbcf91e285013a261310e161927f2401d2bca803",
    [FX_D] = "76cd8b55b37333961c1778ba997e57df92e219926ae5a66c414b810331a77603",
    [FX_COMPLICATED] = "424a7f6ce08d805d15b428062faae96299a1675d708c3a39261afe38cdd04feb",
};

static void build_fixtures(void)
{
        for (int i = 0; i < FX_N; i++)
                fx[i] = (struct kiln_directory)KILN_DIRECTORY_INIT;
        seal(&fx[FX_A]);
        fxd[FX_A] = digest_of(&fx[FX_A]);
        uint64_t sa = kiln_directory_size(&fx[FX_A]);

        add(&fx[FX_WITH_KEEP], file_node(".keep", &kiln_digest_empty, 0));
        seal(&fx[FX_WITH_KEEP]);
        fxd[FX_WITH_KEEP] = digest_of(&fx[FX_WITH_KEEP]);

        add(&fx[FX_B], dir_node("a", &fxd[FX_A], sa));
        seal(&fx[FX_B]);
        fxd[FX_B] = digest_of(&fx[FX_B]);

        add(&fx[FX_C], dir_node("a", &fxd[FX_A], sa));
        add(&fx[FX_C], dir_node("a'", &fxd[FX_A], sa));
        seal(&fx[FX_C]);
        fxd[FX_C] = digest_of(&fx[FX_C]);

        add(&fx[FX_D], dir_node("a", &fxd[FX_A], sa));
        add(&fx[FX_D], dir_node("b", &fxd[FX_B], kiln_directory_size(&fx[FX_B])));
        seal(&fx[FX_D]);
        fxd[FX_D] = digest_of(&fx[FX_D]);

        add(&fx[FX_COMPLICATED],
            dir_node("keep", &fxd[FX_WITH_KEEP], kiln_directory_size(&fx[FX_WITH_KEEP])));
        add(&fx[FX_COMPLICATED], file_node(".keep", &kiln_digest_empty, 0));
        add(&fx[FX_COMPLICATED], link_node("aa", "/nix/store/somewhereelse"));
        seal(&fx[FX_COMPLICATED]);
        fxd[FX_COMPLICATED] = digest_of(&fx[FX_COMPLICATED]);

        add(&fx[FX_BROKEN], dir_node("foo", &fxd[FX_A], sa + 42));
        seal(&fx[FX_BROKEN]);
        fxd[FX_BROKEN] = digest_of(&fx[FX_BROKEN]);
}

static int setup_fixtures(void **state)
{
        (void)state;
        build_fixtures();
        return 0;
}

static int teardown_fixtures(void **state)
{
        (void)state;
        for (int i = 0; i < FX_N; i++)
                kiln_directory_done(&fx[i]);
        return 0;
}

static void test_fixture_digests(void **state)
{
        (void)state;
        if (kiln_size_formula_default() != KILN_SIZE_REF)
                skip(); /* the upstream fixture digests of D and COMPLICATED assume size_ref */
        for (int i = 0; i < FX_N; i++)
                if (fx_hex[i])
                        assert_string_equal(KILN_DIGEST_HEX(&fxd[i]), fx_hex[i]);
}

/* --- closure validation: upstream's cases --- */

#define END -1

/* Adds fixtures in order; `fail_last` expects the last add to fail. Then,
 * unless an add failed, finishes and compares the leaves-to-root drain with
 * `want` (END-terminated), or expects finish to fail when want is NULL. */
static void run_closure(enum kiln_closure_order order, int root, const int *seq, bool fail_last,
                        const int *want, const char *want_msg)
{
        struct kiln_error *err = NULL;
        _cleanup_(kiln_closure_freep) struct kiln_closure *c =
            kiln_closure_new(order, root >= 0 ? &fxd[root] : NULL);
        size_t n = 0;
        while (seq[n] != END)
                n++;
        for (size_t i = 0; i < n; i++) {
                struct kiln_digest got;
                int r = kiln_closure_add(c, &fx[seq[i]], &got, &err);
                if (i == n - 1 && fail_last) {
                        assert_int_equal(r, -EINVAL);
                        if (!strstr(kiln_error_msg(err), want_msg))
                                fail_msg("message \"%s\" lacks \"%s\"", kiln_error_msg(err),
                                         want_msg);
                        kiln_error_clear(&err);
                        return;
                }
                if (r < 0)
                        fail_msg("add #%zu failed: %s", i, kiln_error_msg(err));
                assert_true(kiln_digest_eq(&got, &fxd[seq[i]]));
        }
        struct kiln_digest root_digest;
        if (!want) {
                assert_error(kiln_closure_finish(c, &root_digest, &err), err, EINVAL, want_msg);
                return;
        }
        assert_ok(kiln_closure_finish(c, &root_digest, &err), err);
        const struct kiln_directory **dirs;
        const struct kiln_digest *digests;
        size_t got_n = kiln_closure_drain(c, KILN_CLOSURE_LEAVES_TO_ROOT, &dirs, &digests);
        size_t want_n = 0;
        while (want[want_n] != END)
                want_n++;
        assert_int_equal(got_n, want_n);
        for (size_t i = 0; i < want_n; i++) {
                assert_true(kiln_digest_eq(&digests[i], &fxd[want[i]]));
                struct kiln_digest dd = digest_of(dirs[i]);
                assert_true(kiln_digest_eq(&dd, &fxd[want[i]]));
        }
        assert_true(kiln_digest_eq(&root_digest, &fxd[want[want_n - 1]]));
}

#define SEQ(...) ((const int[]){__VA_ARGS__, END})

static void test_closure_uploads(void **state)
{
        (void)state;
        enum kiln_closure_order o = KILN_CLOSURE_LEAVES_TO_ROOT;
        run_closure(o, -1, SEQ(FX_A), false, SEQ(FX_A), NULL);
        run_closure(o, -1, SEQ(FX_A, FX_B), false, SEQ(FX_A, FX_B), NULL);
        run_closure(o, -1, SEQ(FX_A, FX_A, FX_C), false, SEQ(FX_A, FX_C), NULL);
        run_closure(o, -1, SEQ(FX_A, FX_C), false, SEQ(FX_A, FX_C), NULL);
        run_closure(o, -1, SEQ(FX_A, FX_C, FX_B), false, NULL, "graph has disconnected roots");
        run_closure(o, -1, SEQ(FX_B), true, NULL, "unknown directory was referenced");
        run_closure(o, -1, SEQ(FX_A, FX_BROKEN), true, NULL,
                    "'foo' has wrong size, specified 42, recorded 0");
}

static void test_closure_downloads(void **state)
{
        (void)state;
        enum kiln_closure_order o = KILN_CLOSURE_ROOT_TO_LEAVES;
        run_closure(o, FX_A, SEQ(FX_A), false, SEQ(FX_A), NULL);
        run_closure(o, FX_B, SEQ(FX_B, FX_A), false, SEQ(FX_A, FX_B), NULL);
        run_closure(o, FX_C, SEQ(FX_C, FX_A), false, SEQ(FX_A, FX_C), NULL);
        run_closure(o, FX_C, SEQ(FX_C, FX_B), true, NULL, "unexpected digest");
        run_closure(o, FX_B, SEQ(FX_A), true, NULL, "unexpected digest");
        run_closure(o, FX_BROKEN, SEQ(FX_BROKEN, FX_A), true, NULL,
                    "'foo' has wrong size, specified 42, recorded 0");
        /* close checks */
        run_closure(o, FX_B, SEQ(FX_B), false, NULL, "graph is incomplete");
        run_closure(o, FX_D, SEQ(FX_D, FX_A, FX_A, FX_B), false, SEQ(FX_A, FX_B, FX_D), NULL);
}

static void test_closure_edges(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_digest root;

        /* empty closures */
        _cleanup_(kiln_closure_freep) struct kiln_closure *e =
            kiln_closure_new(KILN_CLOSURE_LEAVES_TO_ROOT, NULL);
        assert_error(kiln_closure_finish(e, &root, &err), err, EINVAL, "got no directories");
        const struct kiln_directory **dirs;
        const struct kiln_digest *digests;
        assert_int_equal(kiln_closure_drain(e, KILN_CLOSURE_LEAVES_TO_ROOT, &dirs, NULL), 0);
        _cleanup_(kiln_closure_freep) struct kiln_closure *e2 =
            kiln_closure_new(KILN_CLOSURE_ROOT_TO_LEAVES, &fxd[FX_B]);
        assert_error(kiln_closure_finish(e2, &root, &err), err, EINVAL, "got no directories");

        /* a failed add changes nothing; finish is final */
        _cleanup_(kiln_closure_freep) struct kiln_closure *c =
            kiln_closure_new(KILN_CLOSURE_LEAVES_TO_ROOT, NULL);
        assert_ok(kiln_closure_add(c, &fx[FX_A], NULL, &err), err);
        assert_error(kiln_closure_add(c, &fx[FX_BROKEN], NULL, &err), err, EINVAL, "wrong size");
        assert_ok(kiln_closure_add(c, &fx[FX_B], NULL, &err), err);
        assert_ok(kiln_closure_add(c, &fx[FX_D], NULL, &err), err);
        assert_ok(kiln_closure_finish(c, &root, &err), err);
        assert_true(kiln_digest_eq(&root, &fxd[FX_D]));
        assert_ok(kiln_closure_finish(c, &root, &err), err);
        assert_error(kiln_closure_add(c, &fx[FX_A], NULL, &err), err, EINVAL, "finished");

        /* both drain orders, repeatable */
        size_t n = kiln_closure_drain(c, KILN_CLOSURE_LEAVES_TO_ROOT, &dirs, &digests);
        assert_int_equal(n, 3);
        assert_true(kiln_digest_eq(&digests[0], &fxd[FX_A]));
        assert_true(kiln_digest_eq(&digests[1], &fxd[FX_B]));
        assert_true(kiln_digest_eq(&digests[2], &fxd[FX_D]));
        n = kiln_closure_drain(c, KILN_CLOSURE_ROOT_TO_LEAVES, &dirs, &digests);
        assert_int_equal(n, 3);
        assert_true(kiln_digest_eq(&digests[0], &fxd[FX_D]));
        assert_true(kiln_digest_eq(&digests[1], &fxd[FX_A]));
        assert_true(kiln_digest_eq(&digests[2], &fxd[FX_B]));
        struct kiln_digest d2 = digest_of(dirs[2]);
        assert_true(kiln_digest_eq(&d2, &fxd[FX_B]));

        /* names in messages stay on one line */
        struct kiln_directory odd = KILN_DIRECTORY_INIT;
        add(&odd, dir_node("a\nb", &fxd[FX_A], 7));
        seal(&odd);
        _cleanup_(kiln_closure_freep) struct kiln_closure *o =
                kiln_closure_new(KILN_CLOSURE_LEAVES_TO_ROOT, NULL);
        assert_ok(kiln_closure_add(o, &fx[FX_A], NULL, &err), err);
        assert_error(kiln_closure_add(o, &odd, NULL, &err), err, EINVAL,
                     "'a\\x0ab' has wrong size, specified 7, recorded 0");
        kiln_directory_done(&odd);

        /* want(): the digest check before decoding */
        _cleanup_(kiln_closure_freep) struct kiln_closure *d =
            kiln_closure_new(KILN_CLOSURE_ROOT_TO_LEAVES, &fxd[FX_D]);
        assert_int_equal(kiln_closure_want(d, &fxd[FX_D], &err), 1);
        assert_error(kiln_closure_want(d, &fxd[FX_A], &err), err, EINVAL, "unexpected digest");
        assert_ok(kiln_closure_add(d, &fx[FX_D], NULL, &err), err);
        assert_int_equal(kiln_closure_want(d, &fxd[FX_D], &err), 0);
        assert_int_equal(kiln_closure_want(d, &fxd[FX_A], &err), 1);
        assert_int_equal(kiln_closure_want(d, &fxd[FX_B], &err), 1);
        assert_error(kiln_closure_want(d, &fxd[FX_C], &err), err, EINVAL, "unexpected digest");
        assert_int_equal(kiln_closure_want(c, &fxd[FX_C], &err), 1);
        assert_int_equal(kiln_closure_want(c, &fxd[FX_B], &err), 0);

        /* root-to-leaves, a child reached after a sibling that also points at
         * it: D → {a: A, b: B}, B → {a: A}; the order D, B, A checks two
         * pending edges into A, D, A, B checks B → A immediately. */
        run_closure(KILN_CLOSURE_ROOT_TO_LEAVES, FX_D, SEQ(FX_D, FX_B, FX_A), false,
                    SEQ(FX_A, FX_B, FX_D), NULL);
        run_closure(KILN_CLOSURE_ROOT_TO_LEAVES, FX_D, SEQ(FX_D, FX_A, FX_B), false,
                    SEQ(FX_A, FX_B, FX_D), NULL);
}

/* Closures of 100k Directories: a chain (depth 100k, so traversals must not
 * recurse) and a wide fan; both orders, in linear time. */
#define BIG 100000

static struct kiln_directory *big_chain(struct kiln_digest *digests)
{
        struct kiln_directory *dirs = kiln_calloc(BIG, sizeof(*dirs));
        for (size_t i = 0; i < BIG; i++) {
                char name[32];
                snprintf(name, sizeof(name), "f%zu", i);
                add(&dirs[i], file_node(name, &kiln_digest_empty, 0));
                if (i > 0)
                        add(&dirs[i],
                            dir_node("sub", &digests[i - 1], kiln_directory_size(&dirs[i - 1])));
                seal(&dirs[i]);
                digests[i] = digest_of(&dirs[i]);
        }
        return dirs;
}

static void test_closure_big(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_digest *dg = kiln_calloc(BIG, sizeof(*dg));
        struct kiln_directory *chain = big_chain(dg);

        struct kiln_closure *c = kiln_closure_new(KILN_CLOSURE_LEAVES_TO_ROOT, NULL);
        for (size_t i = 0; i < BIG; i++)
                assert_ok(kiln_closure_add(c, &chain[i], NULL, &err), err);
        struct kiln_digest root;
        assert_ok(kiln_closure_finish(c, &root, &err), err);
        assert_true(kiln_digest_eq(&root, &dg[BIG - 1]));
        const struct kiln_directory **dirs;
        const struct kiln_digest *out;
        assert_int_equal(kiln_closure_drain(c, KILN_CLOSURE_LEAVES_TO_ROOT, &dirs, &out), BIG);
        for (size_t i = 0; i < BIG; i++)
                assert_true(kiln_digest_eq(&out[i], &dg[i]));
        kiln_closure_free(c);

        c = kiln_closure_new(KILN_CLOSURE_ROOT_TO_LEAVES, &dg[BIG - 1]);
        for (size_t i = BIG; i-- > 0;)
                assert_ok(kiln_closure_add(c, &chain[i], NULL, &err), err);
        assert_ok(kiln_closure_finish(c, &root, &err), err);
        assert_int_equal(kiln_closure_drain(c, KILN_CLOSURE_ROOT_TO_LEAVES, &dirs, &out), BIG);
        for (size_t i = 0; i < BIG; i++)
                assert_true(kiln_digest_eq(&out[i], &dg[BIG - 1 - i]));
        kiln_closure_free(c);

        /* fan: the root holds BIG leaves, added in leaves-to-root order */
        struct kiln_directory top = KILN_DIRECTORY_INIT;
        c = kiln_closure_new(KILN_CLOSURE_LEAVES_TO_ROOT, NULL);
        for (size_t i = 0; i < BIG; i++) {
                struct kiln_directory leaf = KILN_DIRECTORY_INIT;
                char name[32];
                snprintf(name, sizeof(name), "%zu", i);
                add(&leaf, file_node(name, &kiln_digest_empty, 0));
                seal(&leaf);
                struct kiln_digest ld;
                assert_ok(kiln_closure_add(c, &leaf, &ld, &err), err);
                add(&top, dir_node(name, &ld, kiln_directory_size(&leaf)));
                kiln_directory_done(&leaf);
        }
        seal(&top);
        assert_ok(kiln_closure_add(c, &top, NULL, &err), err);
        assert_ok(kiln_closure_finish(c, &root, &err), err);
        assert_int_equal(kiln_closure_drain(c, KILN_CLOSURE_ROOT_TO_LEAVES, &dirs, &out), BIG + 1);
        assert_true(kiln_digest_eq(&out[0], &root));
        kiln_closure_free(c);
        kiln_directory_done(&top);

        for (size_t i = 0; i < BIG; i++)
                kiln_directory_done(&chain[i]);
        free(chain);
        free(dg);
}

/* --- scratch directories --- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st, (void)flag, (void)ftw;
        return remove(path);
}

static char *scratch_dir(void)
{
        const char *tmp = getenv("TMPDIR");
        char *p = kiln_asprintf("%s/kiln-dirstore-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(p));
        return p;
}

static void scratch_remove(char *p)
{
        if (p)
                nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(p);
}

/* --- the stores under test --- */

struct store_kind {
        const char *name;
        const char *url_fmt; /* %s: a fresh scratch directory, if it has one */
        bool needs_dir;
        bool only_roots; /* get() finds only roots of put closures */
};

static const struct store_kind kinds[] = {
    {"memory", "memory://", false, false},
    {"lmdb", "lmdb://%s/dirs", true, false},
    {"objectstore+memory", "objectstore+memory://", false, true},
    {"objectstore+file", "objectstore+file://%s/os", true, true},
};

struct store {
        const struct store_kind *kind;
        char *dir, *url;
        struct kiln_directory_service *svc;
};

static void store_open(struct store *s)
{
        struct kiln_error *err = NULL;
        assert_ok(kiln_directory_service_open(s->url, &s->svc, &err), err);
}

static void store_close(struct store *s)
{
        kiln_directory_service_free(s->svc);
        s->svc = NULL;
}

static int store_setup(void **state)
{
        struct store *s = kiln_calloc(1, sizeof(*s));
        s->kind = *state;
        if (s->kind->needs_dir) {
                s->dir = scratch_dir();
                s->url = kiln_asprintf(s->kind->url_fmt, s->dir);
        } else {
                s->url = kiln_strdup(s->kind->url_fmt);
        }
        store_open(s);
        *state = s;
        return 0;
}

static int store_teardown(void **state)
{
        struct store *s = *state;
        store_close(s);
        scratch_remove(s->dir);
        free(s->url);
        free(s);
        return 0;
}

/* Closures of the fixtures, leaves to root. */
static const int *fixture_closure(int f)
{
        static const int closures[FX_BROKEN][4] = {
            [FX_A] = {FX_A, END},
            [FX_WITH_KEEP] = {FX_WITH_KEEP, END},
            [FX_B] = {FX_A, FX_B, END},
            [FX_C] = {FX_A, FX_C, END},
            [FX_D] = {FX_A, FX_B, FX_D, END},
            [FX_COMPLICATED] = {FX_WITH_KEEP, FX_COMPLICATED, END},
        };
        assert_true(f >= 0 && f < FX_BROKEN);
        return closures[f];
}

static void put_closure(struct kiln_directory_service *svc, const int *seq, int want_root)
{
        struct kiln_error *err = NULL;
        _cleanup_(kiln_directory_putter_freep) struct kiln_directory_putter *p = NULL;
        assert_ok(kiln_directory_put_multiple_start(svc, &p, &err), err);
        for (; *seq != END; seq++)
                assert_ok(kiln_directory_putter_put(p, &fx[*seq], &err), err);
        struct kiln_digest root;
        assert_ok(kiln_directory_putter_close(p, &root, &err), err);
        assert_true(kiln_digest_eq(&root, &fxd[want_root]));
}

/* Fetches d and compares it with the expected Directory. */
static void expect_get(struct kiln_directory_service *svc, const struct kiln_digest *d,
                       const struct kiln_directory *want)
{
        struct kiln_error *err = NULL;
        struct kiln_directory got;
        int r = kiln_directory_get(svc, d, &got, &err);
        if (r < 0)
                fail_msg("get %s: %s", KILN_DIGEST_B64(d), kiln_error_msg(err));
        if (r == 0)
                fail_msg("get %s: absent", KILN_DIGEST_B64(d));
        struct kiln_digest gd = digest_of(&got);
        assert_true(kiln_digest_eq(&gd, d));
        struct kiln_buf a = KILN_BUF_INIT, b = KILN_BUF_INIT;
        kiln_directory_encode(&got, &a);
        kiln_directory_encode(want, &b);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data ? a.data : (uint8_t *)"", b.data ? b.data : (uint8_t *)"",
                            a.len);
        kiln_buf_done(&a);
        kiln_buf_done(&b);
        kiln_directory_done(&got);
}

static void expect_absent(struct kiln_directory_service *svc, const struct kiln_digest *d)
{
        struct kiln_error *err = NULL;
        struct kiln_directory got;
        int r = kiln_directory_get(svc, d, &got, &err);
        if (r < 0)
                fail_msg("get %s: %s", KILN_DIGEST_B64(d), kiln_error_msg(err));
        if (r > 0) {
                kiln_directory_done(&got);
                fail_msg("get %s: unexpectedly present", KILN_DIGEST_B64(d));
        }
}

/* Reads a whole get_recursive stream and checks the order of a recursive Get:
 * root first, each digest once, each after a Directory referring to it.
 * Returns the count; the digests go to *ret (caller frees). */
static size_t collect_recursive(struct kiln_directory_service *svc, const struct kiln_digest *root,
                                struct kiln_digest **ret)
{
        struct kiln_error *err = NULL;
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        assert_ok(kiln_directory_get_recursive(svc, root, &st, &err), err);
        struct kiln_digest_map seen = KILN_DIGEST_MAP_INIT;     /* yielded */
        struct kiln_digest_map referred = KILN_DIGEST_MAP_INIT; /* referred to by yielded */
        struct kiln_digest *out = NULL;
        size_t n = 0;
        for (;;) {
                struct kiln_directory dir;
                struct kiln_digest d;
                int r = kiln_directory_stream_next(st, &dir, &d, &err);
                if (r < 0)
                        fail_msg("stream after %zu: %s", n, kiln_error_msg(err));
                if (r == 0)
                        break;
                struct kiln_digest dd = digest_of(&dir);
                assert_true(kiln_digest_eq(&dd, &d));
                if (n == 0)
                        assert_true(kiln_digest_eq(&d, root));
                else if (!kiln_digest_map_get(&referred, &d))
                        fail_msg("%s yielded before a referrer", KILN_DIGEST_B64(&d));
                if (kiln_digest_map_get(&seen, &d))
                        fail_msg("%s yielded twice", KILN_DIGEST_B64(&d));
                kiln_digest_map_put(&seen, &d, (void *)1);
                for (size_t i = 0; i < dir.n; i++)
                        if (dir.nodes[i].kind == KILN_NODE_DIRECTORY)
                                kiln_digest_map_put(&referred, &dir.nodes[i].digest, (void *)1);
                out = kiln_reallocarray(out, n + 1, sizeof(*out));
                out[n++] = d;
                kiln_directory_done(&dir);
        }
        /* the end is sticky */
        struct kiln_directory dir;
        assert_int_equal(kiln_directory_stream_next(st, &dir, NULL, &err), 0);
        kiln_digest_map_done(&seen, NULL);
        kiln_digest_map_done(&referred, NULL);
        if (ret)
                *ret = out;
        else
                free(out);
        return n;
}

static bool digest_in(const struct kiln_digest *list, size_t n, const struct kiln_digest *d)
{
        for (size_t i = 0; i < n; i++)
                if (kiln_digest_eq(&list[i], d))
                        return true;
        return false;
}

/* --- the conformance suite, run against every store --- */

static void conf_get_absent(void **state)
{
        struct store *s = *state;
        for (int f = 0; f < FX_BROKEN; f++)
                expect_absent(s->svc, &fxd[f]);
        struct kiln_digest zero = {{0}};
        expect_absent(s->svc, &zero);
        assert_int_equal(collect_recursive(s->svc, &fxd[FX_D], NULL), 0);
}

static void conf_put_get_fixtures(void **state)
{
        struct store *s = *state;
        for (int f = 0; f < FX_BROKEN; f++) {
                put_closure(s->svc, fixture_closure(f), f);
                expect_get(s->svc, &fxd[f], &fx[f]);
                if (fx_hex[f] && kiln_size_formula_default() == KILN_SIZE_REF)
                        assert_string_equal(KILN_DIGEST_HEX(&fxd[f]), fx_hex[f]);
        }
        /* putting again is fine */
        put_closure(s->svc, fixture_closure(FX_D), FX_D);
        expect_get(s->svc, &fxd[FX_D], &fx[FX_D]);
}

static void conf_put_single(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;
        struct kiln_digest d;
        /* Directories without children can always be put alone */
        assert_ok(kiln_directory_put(s->svc, &fx[FX_A], &d, &err), err);
        assert_true(kiln_digest_eq(&d, &fxd[FX_A]));
        assert_ok(kiln_directory_put(s->svc, &fx[FX_WITH_KEEP], &d, &err), err);
        assert_true(kiln_digest_eq(&d, &fxd[FX_WITH_KEEP]));
        assert_ok(kiln_directory_put(s->svc, &fx[FX_WITH_KEEP], NULL, &err), err);
        expect_get(s->svc, &fxd[FX_A], &fx[FX_A]);
        expect_get(s->svc, &fxd[FX_WITH_KEEP], &fx[FX_WITH_KEEP]);

        if (s->kind->only_roots) {
                assert_error(kiln_directory_put(s->svc, &fx[FX_B], &d, &err), err, EINVAL,
                             "only put_multiple_start is supported for directories with children");
                expect_absent(s->svc, &fxd[FX_B]);
        } else {
                /* a single Directory is never checked against its children */
                assert_ok(kiln_directory_put(s->svc, &fx[FX_D], &d, &err), err);
                assert_true(kiln_digest_eq(&d, &fxd[FX_D]));
                expect_get(s->svc, &fxd[FX_D], &fx[FX_D]);
        }
}

static void conf_put_multiple(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;

        /* dedup: A, A, C */
        put_closure(s->svc, SEQ(FX_A, FX_A, FX_C), FX_C);
        expect_get(s->svc, &fxd[FX_C], &fx[FX_C]);
        struct kiln_digest *got;
        size_t n = collect_recursive(s->svc, &fxd[FX_C], &got);
        assert_int_equal(n, 2);
        assert_true(digest_in(got, n, &fxd[FX_A]));
        free(got);

        /* closures the validator refuses store nothing */
        struct kiln_directory_putter *p;
        struct kiln_digest root;
        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        assert_error(kiln_directory_putter_put(p, &fx[FX_B], &err), err, EINVAL,
                     "unknown directory was referenced");
        kiln_directory_putter_free(p);

        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_WITH_KEEP], &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_COMPLICATED], &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_A], &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_B], &err), err);
        assert_error(kiln_directory_putter_close(p, &root, &err), err, EINVAL,
                     "graph has disconnected roots");
        kiln_directory_putter_free(p);
        expect_absent(s->svc, &fxd[FX_COMPLICATED]);
        expect_absent(s->svc, &fxd[FX_B]);

        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_A], &err), err);
        assert_error(kiln_directory_putter_put(p, &fx[FX_BROKEN], &err), err, EINVAL,
                     "'foo' has wrong size");
        kiln_directory_putter_free(p);
        expect_absent(s->svc, &fxd[FX_BROKEN]);

        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        assert_error(kiln_directory_putter_close(p, &root, &err), err, EINVAL,
                     "got no directories");
        kiln_directory_putter_free(p);

        /* close twice returns the same root; put after close fails */
        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_A], &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_B], &err), err);
        assert_ok(kiln_directory_putter_close(p, &root, &err), err);
        assert_true(kiln_digest_eq(&root, &fxd[FX_B]));
        assert_ok(kiln_directory_putter_close(p, &root, &err), err);
        assert_true(kiln_digest_eq(&root, &fxd[FX_B]));
        assert_error(kiln_directory_putter_put(p, &fx[FX_D], &err), err, EINVAL, "closed");
        kiln_directory_putter_free(p);
        expect_get(s->svc, &fxd[FX_B], &fx[FX_B]);
}

static void conf_putter_dropped(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;
        struct kiln_directory_putter *p;
        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        kiln_directory_putter_free(p); /* no put at all */

        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_A], &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_B], &err), err);
        assert_ok(kiln_directory_putter_put(p, &fx[FX_D], &err), err);
        kiln_directory_putter_free(p);
        for (int f = 0; f < FX_N; f++)
                expect_absent(s->svc, &fxd[f]);
        assert_int_equal(collect_recursive(s->svc, &fxd[FX_D], NULL), 0);
}

static void conf_get_recursive(void **state)
{
        struct store *s = *state;
        struct kiln_digest *got;

        put_closure(s->svc, SEQ(FX_A, FX_B, FX_D), FX_D);
        size_t n = collect_recursive(s->svc, &fxd[FX_D], &got);
        assert_int_equal(n, 3);
        assert_true(digest_in(got, n, &fxd[FX_A]));
        assert_true(digest_in(got, n, &fxd[FX_B]));
        free(got);

        put_closure(s->svc, SEQ(FX_WITH_KEEP, FX_COMPLICATED), FX_COMPLICATED);
        n = collect_recursive(s->svc, &fxd[FX_COMPLICATED], &got);
        assert_int_equal(n, 2);
        assert_true(digest_in(got, n, &fxd[FX_WITH_KEEP]));
        free(got);

        /* absent root: an empty stream */
        assert_int_equal(collect_recursive(s->svc, &fxd[FX_C], NULL), 0);
        struct kiln_digest zero = {{0}};
        assert_int_equal(collect_recursive(s->svc, &zero, NULL), 0);

        /* a larger DAG: level k holds 8 Directories, each pointing at three
         * of level k-1, so many are shared */
        struct kiln_error *err = NULL;
        enum { LEVELS = 12, WIDTH = 8 };
        struct kiln_directory lv[LEVELS][WIDTH];
        struct kiln_digest ld[LEVELS][WIDTH];
        struct kiln_directory_putter *p;
        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        for (int k = 0; k < LEVELS; k++)
                for (int w = 0; w < WIDTH; w++) {
                        lv[k][w] = (struct kiln_directory)KILN_DIRECTORY_INIT;
                        char name[32];
                        snprintf(name, sizeof(name), "f%d.%d", k, w);
                        add(&lv[k][w], file_node(name, &kiln_digest_empty, 0));
                        for (int j = 0; k > 0 && j < 3; j++) {
                                int c = (w + j * 3) % WIDTH;
                                snprintf(name, sizeof(name), "d%d", j);
                                add(&lv[k][w], dir_node(name, &ld[k - 1][c],
                                                        kiln_directory_size(&lv[k - 1][c])));
                        }
                        seal(&lv[k][w]);
                        ld[k][w] = digest_of(&lv[k][w]);
                }
        /* the root refers to every Directory of the top level */
        struct kiln_directory top = KILN_DIRECTORY_INIT;
        for (int w = 0; w < WIDTH; w++) {
                char name[32];
                snprintf(name, sizeof(name), "t%d", w);
                add(&top,
                    dir_node(name, &ld[LEVELS - 1][w], kiln_directory_size(&lv[LEVELS - 1][w])));
        }
        seal(&top);
        struct kiln_digest top_d = digest_of(&top);
        for (int k = 0; k < LEVELS; k++)
                for (int w = 0; w < WIDTH; w++)
                        assert_ok(kiln_directory_putter_put(p, &lv[k][w], &err), err);
        assert_ok(kiln_directory_putter_put(p, &top, &err), err);
        struct kiln_digest root;
        assert_ok(kiln_directory_putter_close(p, &root, &err), err);
        kiln_directory_putter_free(p);
        assert_true(kiln_digest_eq(&root, &top_d));
        n = collect_recursive(s->svc, &top_d, &got);
        assert_int_equal(n, LEVELS * WIDTH + 1);
        for (int k = 0; k < LEVELS; k++)
                for (int w = 0; w < WIDTH; w++) {
                        assert_true(digest_in(got, n, &ld[k][w]));
                        kiln_directory_done(&lv[k][w]);
                }
        free(got);
        expect_get(s->svc, &top_d, &top);
        kiln_directory_done(&top);
}

/* A closure of 10k Directories (a chain) goes in and comes out again. */
static void conf_big_closure(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;
        enum { N = 10000 };
        struct kiln_directory *dirs = kiln_calloc(N, sizeof(*dirs));
        struct kiln_digest *dg = kiln_calloc(N, sizeof(*dg));
        for (size_t i = 0; i < N; i++) {
                char name[32];
                snprintf(name, sizeof(name), "file-%zu", i);
                add(&dirs[i], file_node(name, &kiln_digest_empty, i));
                if (i > 0)
                        add(&dirs[i],
                            dir_node("sub", &dg[i - 1], kiln_directory_size(&dirs[i - 1])));
                seal(&dirs[i]);
                dg[i] = digest_of(&dirs[i]);
        }
        struct kiln_directory_putter *p;
        assert_ok(kiln_directory_put_multiple_start(s->svc, &p, &err), err);
        for (size_t i = 0; i < N; i++)
                assert_ok(kiln_directory_putter_put(p, &dirs[i], &err), err);
        struct kiln_digest root;
        assert_ok(kiln_directory_putter_close(p, &root, &err), err);
        kiln_directory_putter_free(p);
        assert_true(kiln_digest_eq(&root, &dg[N - 1]));

        struct kiln_digest *got;
        size_t n = collect_recursive(s->svc, &root, &got);
        assert_int_equal(n, N);
        for (size_t i = 0; i < N; i++)
                assert_true(kiln_digest_eq(&got[i], &dg[N - 1 - i]));
        free(got);
        expect_get(s->svc, &root, &dirs[N - 1]);
        for (size_t i = 0; i < N; i++)
                kiln_directory_done(&dirs[i]);
        free(dirs);
        free(dg);
}

/* Stores that keep single Directories can hold a parent without its child:
 * the stream then fails naming the missing digest. */
static void conf_missing_descendant(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;
        assert_ok(kiln_directory_put(s->svc, &fx[FX_D], NULL, &err), err);
        assert_ok(kiln_directory_put(s->svc, &fx[FX_A], NULL, &err), err);
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        assert_ok(kiln_directory_get_recursive(s->svc, &fxd[FX_D], &st, &err), err);
        struct kiln_directory dir;
        struct kiln_digest d;
        int r;
        size_t n = 0;
        while ((r = kiln_directory_stream_next(st, &dir, &d, &err)) > 0) {
                kiln_directory_done(&dir);
                n++;
        }
        assert_int_equal(n, 2); /* D, A */
        assert_int_equal(r, -ENOENT);
        char want[96];
        snprintf(want, sizeof(want), "directory %s does not exist", KILN_DIGEST_B64(&fxd[FX_B]));
        if (!strstr(err->msg, want))
                fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
        kiln_error_clear(&err);
}

/* Threads put distinct and identical closures and read them back at once. */
enum { THREADS = 8, ROUNDS = 12 };

struct worker {
        struct kiln_directory_service *svc;
        int id;
        char failure[256];
};

#define WORKER_CHECK(w, cond, ...)                                                                 \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        if (!(w)->failure[0])                                                      \
                                snprintf((w)->failure, sizeof((w)->failure), __VA_ARGS__);         \
                        goto out;                                                                  \
                }                                                                                  \
        } while (0)

static void *worker_run(void *arg)
{
        struct worker *w = arg;
        struct kiln_error *err = NULL;
        for (int round = 0; round < ROUNDS; round++) {
                /* own closure: L, A, M = {a: A, l: L}, WITH_KEEP, R = {m: M, w: WITH_KEEP} */
                struct kiln_directory l = KILN_DIRECTORY_INIT, m = KILN_DIRECTORY_INIT,
                                      r = KILN_DIRECTORY_INIT;
                char name[64];
                snprintf(name, sizeof(name), "t%d-r%d", w->id, round);
                add(&l, file_node(name, &kiln_digest_empty, 0));
                seal(&l);
                struct kiln_digest ld = digest_of(&l);
                add(&m, dir_node("a", &fxd[FX_A], 0));
                add(&m, dir_node("l", &ld, kiln_directory_size(&l)));
                seal(&m);
                struct kiln_digest md = digest_of(&m);
                add(&r, dir_node("m", &md, kiln_directory_size(&m)));
                add(&r, dir_node("w", &fxd[FX_WITH_KEEP], kiln_directory_size(&fx[FX_WITH_KEEP])));
                seal(&r);
                struct kiln_digest rd = digest_of(&r), root;
                const struct kiln_directory *seq[] = {&l, &fx[FX_A], &m, &fx[FX_WITH_KEEP], &r};

                struct kiln_directory_putter *p = NULL;
                int rc = kiln_directory_put_multiple_start(w->svc, &p, &err);
                for (size_t i = 0; rc >= 0 && i < KILN_ARRAY_SIZE(seq); i++)
                        rc = kiln_directory_putter_put(p, seq[i], &err);
                if (rc >= 0)
                        rc = kiln_directory_putter_close(p, &root, &err);
                kiln_directory_putter_free(p);
                WORKER_CHECK(w, rc >= 0, "put_multiple: %s", kiln_error_msg(err));
                WORKER_CHECK(w, kiln_digest_eq(&root, &rd), "wrong root");

                /* the shared closure D, put by every thread */
                p = NULL;
                rc = kiln_directory_put_multiple_start(w->svc, &p, &err);
                for (int i = 0; rc >= 0 && i < 3; i++)
                        rc = kiln_directory_putter_put(p, &fx[(int[]){FX_A, FX_B, FX_D}[i]], &err);
                if (rc >= 0)
                        rc = kiln_directory_putter_close(p, &root, &err);
                kiln_directory_putter_free(p);
                WORKER_CHECK(w, rc >= 0, "put_multiple D: %s", kiln_error_msg(err));

                struct kiln_directory got;
                rc = kiln_directory_get(w->svc, &rd, &got, &err);
                WORKER_CHECK(w, rc == 1, "get own root: %d %s", rc,
                             rc < 0 ? kiln_error_msg(err) : "");
                struct kiln_digest gd = digest_of(&got);
                kiln_directory_done(&got);
                WORKER_CHECK(w, kiln_digest_eq(&gd, &rd), "get own root: wrong digest");
                rc = kiln_directory_get(w->svc, &fxd[FX_D], &got, &err);
                WORKER_CHECK(w, rc == 1, "get D: %d %s", rc, rc < 0 ? kiln_error_msg(err) : "");
                kiln_directory_done(&got);

                struct kiln_directory_stream *st = NULL;
                rc = kiln_directory_get_recursive(w->svc, &rd, &st, &err);
                size_t n = 0;
                while (rc >= 0) {
                        rc = kiln_directory_stream_next(st, &got, NULL, &err);
                        if (rc > 0) {
                                kiln_directory_done(&got);
                                n++;
                        }
                        if (rc == 0)
                                break;
                }
                kiln_directory_stream_free(st);
                WORKER_CHECK(w, rc == 0, "get_recursive: %s", kiln_error_msg(err));
                WORKER_CHECK(w, n == 5, "get_recursive gave %zu", n);
        out:
                kiln_directory_done(&l);
                kiln_directory_done(&m);
                kiln_directory_done(&r);
                kiln_error_clear(&err);
                if (w->failure[0])
                        break;
        }
        return NULL;
}

static void conf_concurrency(void **state)
{
        struct store *s = *state;
        struct worker w[THREADS];
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++) {
                w[i] = (struct worker){.svc = s->svc, .id = i};
                assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
        }
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < THREADS; i++)
                if (w[i].failure[0])
                        fail_msg("thread %d: %s", i, w[i].failure);
}

/* --- lmdb:// specifics --- */

/* Replaces the value stored under a digest through a raw LMDB transaction
 * (the store must be closed: LMDB allows one environment per process). */
static void lmdb_poke(const char *path, const struct kiln_digest *key, const void *val, size_t len)
{
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        assert_int_equal(mdb_env_create(&env), 0);
        mdb_env_set_maxdbs(env, 4);
        assert_int_equal(mdb_env_open(env, path, 0, 0644), 0);
        assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
        assert_int_equal(mdb_dbi_open(txn, "directories", 0, &dbi), 0);
        MDB_val k = {KILN_DIGEST_LEN, (void *)key->b}, v = {len, (void *)val};
        assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
        assert_int_equal(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
}

static void test_lmdb_corruption(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;
        put_closure(s->svc, fixture_closure(FX_D), FX_D);
        put_closure(s->svc, fixture_closure(FX_COMPLICATED), FX_COMPLICATED);
        store_close(s);

        _cleanup_free_ char *path = kiln_asprintf("%s/dirs", s->dir);
        /* other bytes: a valid Directory under the wrong key */
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_directory_encode(&fx[FX_WITH_KEEP], &b);
        lmdb_poke(path, &fxd[FX_B], b.data, b.len);
        /* bytes that do not decode */
        lmdb_poke(path, &fxd[FX_COMPLICATED], "\xff\xff\xff", 3);
        /* a value that is empty (the digest of A) under D */
        lmdb_poke(path, &fxd[FX_D], "", 0);

        store_open(s);
        char want[128];
        snprintf(want, sizeof(want), "directory %s", KILN_DIGEST_B64(&fxd[FX_B]));
        struct kiln_directory dir;
        assert_error(kiln_directory_get(s->svc, &fxd[FX_B], &dir, &err), err, EBADMSG, want);
        snprintf(want, sizeof(want), "directory %s", KILN_DIGEST_B64(&fxd[FX_COMPLICATED]));
        assert_error(kiln_directory_get(s->svc, &fxd[FX_COMPLICATED], &dir, &err), err, EBADMSG,
                     want);
        snprintf(want, sizeof(want), "directory %s", KILN_DIGEST_B64(&fxd[FX_D]));
        assert_error(kiln_directory_get(s->svc, &fxd[FX_D], &dir, &err), err, EBADMSG, want);
        expect_get(s->svc, &fxd[FX_A], &fx[FX_A]);

        /* a stream stops at the damage */
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        assert_ok(kiln_directory_get_recursive(s->svc, &fxd[FX_COMPLICATED], &st, &err), err);
        assert_error(kiln_directory_stream_next(st, &dir, NULL, &err), err, EBADMSG,
                     "stored data has digest");

        /* putting the right Directory again repairs the entry */
        struct kiln_digest d;
        assert_ok(kiln_directory_put(s->svc, &fx[FX_B], &d, &err), err);
        expect_get(s->svc, &fxd[FX_B], &fx[FX_B]);
        kiln_buf_done(&b);
}

static void test_lmdb_reopen(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;
        put_closure(s->svc, fixture_closure(FX_D), FX_D);

        /* a second service on the same directory shares the environment */
        struct kiln_directory_service *other;
        assert_ok(kiln_directory_service_open(s->url, &other, &err), err);
        expect_get(other, &fxd[FX_D], &fx[FX_D]);
        put_closure(other, fixture_closure(FX_COMPLICATED), FX_COMPLICATED);
        expect_get(s->svc, &fxd[FX_COMPLICATED], &fx[FX_COMPLICATED]);
        /* the same directory spelled differently */
        _cleanup_free_ char *url2 = kiln_asprintf("lmdb://%s//dirs/", s->dir);
        struct kiln_directory_service *third;
        assert_ok(kiln_directory_service_open(url2, &third, &err), err);
        expect_get(third, &fxd[FX_B], &fx[FX_B]);
        kiln_directory_service_free(third);
        kiln_directory_service_free(other);
        expect_get(s->svc, &fxd[FX_D], &fx[FX_D]);

        /* data survives closing */
        store_close(s);
        store_open(s);
        expect_get(s->svc, &fxd[FX_D], &fx[FX_D]);
        expect_get(s->svc, &fxd[FX_B], &fx[FX_B]);
        assert_string_equal(kiln_directory_service_name(s->svc), "lmdb");

        /* the directory is created with parents, mode 0755 */
        _cleanup_free_ char *deep = kiln_asprintf("lmdb://%s/x/y/z", s->dir);
        assert_ok(kiln_directory_service_open(deep, &third, &err), err);
        kiln_directory_service_free(third);
        _cleanup_free_ char *p = kiln_asprintf("%s/x/y/z", s->dir);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));

        /* a file where the directory should be */
        _cleanup_free_ char *f = kiln_asprintf("%s/file", s->dir);
        fclose(fopen(f, "w"));
        _cleanup_free_ char *bad = kiln_asprintf("lmdb://%s", f);
        assert_error(kiln_directory_service_open(bad, &third, &err), err, ENOTDIR,
                     "not a directory");
}

/* A map far too small grows while threads write and read. */
static void test_lmdb_grow(void **state)
{
        struct store *s = *state;
        _cleanup_free_ char *url = kiln_asprintf("lmdb://%s/small", s->dir);
        setenv("KILN_LMDB_MAP_SIZE", "65536", 1);
        struct store small = {.kind = s->kind, .url = url};
        store_open(&small);
        unsetenv("KILN_LMDB_MAP_SIZE");
        _cleanup_free_ char *data = kiln_asprintf("%s/small/data.mdb", s->dir);
        struct stat st;
        assert_int_equal(stat(data, &st), 0);

        struct store *saved = *state;
        *state = &small;
        conf_concurrency(state);
        conf_big_closure(state);
        *state = saved;
        assert_int_equal(stat(data, &st), 0);
        assert_true(st.st_size > 65536);
        expect_get(small.svc, &fxd[FX_D], &fx[FX_D]);
        store_close(&small);
}

/* Several processes write the same environment at once (LMDB locks across
 * processes); the children are forked while the parent's service is open,
 * so they must not reuse its environment. */
enum { PROCS = 4 };

static int child_run(const char *url, int id)
{
        struct kiln_error *err = NULL;
        struct kiln_directory_service *svc;
        if (kiln_directory_service_open(url, &svc, &err) < 0)
                return 1;
        int bad = 0;
        for (int round = 0; round < 10 && !bad; round++) {
                struct kiln_directory l = KILN_DIRECTORY_INIT, r = KILN_DIRECTORY_INIT;
                char name[64];
                snprintf(name, sizeof(name), "p%d-r%d", id, round);
                add(&l, file_node(name, &kiln_digest_empty, 0));
                kiln_directory_seal(&l, NULL);
                struct kiln_digest ld = digest_of(&l), root;
                add(&r, dir_node("l", &ld, kiln_directory_size(&l)));
                add(&r, dir_node("d", &fxd[FX_D], kiln_directory_size(&fx[FX_D])));
                kiln_directory_seal(&r, NULL);
                const struct kiln_directory *seq[] = {&fx[FX_A], &fx[FX_B], &fx[FX_D], &l, &r};
                struct kiln_directory_putter *p = NULL;
                int rc = kiln_directory_put_multiple_start(svc, &p, &err);
                for (size_t i = 0; rc >= 0 && i < KILN_ARRAY_SIZE(seq); i++)
                        rc = kiln_directory_putter_put(p, seq[i], &err);
                if (rc >= 0)
                        rc = kiln_directory_putter_close(p, &root, &err);
                kiln_directory_putter_free(p);
                struct kiln_directory got;
                if (rc < 0 || kiln_directory_get(svc, &root, &got, &err) != 1)
                        bad = 1;
                else
                        kiln_directory_done(&got);
                kiln_directory_done(&l);
                kiln_directory_done(&r);
        }
        kiln_error_clear(&err);
        kiln_directory_service_free(svc);
        return bad;
}

static void test_lmdb_processes(void **state)
{
        struct store *s = *state;
        pid_t pids[PROCS];
        for (int i = 0; i < PROCS; i++) {
                pids[i] = fork();
                assert_true(pids[i] >= 0);
                if (pids[i] == 0)
                        _exit(child_run(s->url, i));
        }
        put_closure(s->svc, fixture_closure(FX_COMPLICATED), FX_COMPLICATED);
        for (int i = 0; i < PROCS; i++) {
                int status;
                assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
        }
        /* the parent sees what the children wrote */
        expect_get(s->svc, &fxd[FX_D], &fx[FX_D]);
        expect_get(s->svc, &fxd[FX_COMPLICATED], &fx[FX_COMPLICATED]);
        struct kiln_directory l = KILN_DIRECTORY_INIT, r = KILN_DIRECTORY_INIT;
        add(&l, file_node("p3-r9", &kiln_digest_empty, 0));
        seal(&l);
        struct kiln_digest ld = digest_of(&l);
        add(&r, dir_node("l", &ld, kiln_directory_size(&l)));
        add(&r, dir_node("d", &fxd[FX_D], kiln_directory_size(&fx[FX_D])));
        seal(&r);
        struct kiln_digest rd = digest_of(&r);
        expect_get(s->svc, &rd, &r);
        assert_int_equal(collect_recursive(s->svc, &rd, NULL), 5);
        kiln_directory_done(&l);
        kiln_directory_done(&r);
}

/* --- objectstore specifics --- */

static char *object_path(const struct store *s, const struct kiln_digest *d)
{
        const char *hex = KILN_DIGEST_HEX(d);
        return kiln_asprintf("%s/os/dirs/b3/%.4s/%s", s->dir, hex, hex);
}

static void read_file(const char *path, struct kiln_buf *ret)
{
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                kiln_buf_append(ret, buf, n);
        fclose(f);
}

static void write_file(const char *path, const void *p, size_t n)
{
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(p, 1, n, f), n);
        fclose(f);
}

/* Builds an object: a zstd stream of length-prefixed frames. */
static void make_object(const struct kiln_directory *const *dirs, size_t n, struct kiln_buf *ret)
{
        struct kiln_buf raw = KILN_BUF_INIT;
        for (size_t i = 0; i < n; i++) {
                struct kiln_buf e = KILN_BUF_INIT;
                kiln_directory_encode(dirs[i], &e);
                uint8_t h[4] = {(uint8_t)(e.len >> 24), (uint8_t)(e.len >> 16),
                                (uint8_t)(e.len >> 8), (uint8_t)e.len};
                kiln_buf_append(&raw, h, 4);
                if (e.len)
                        kiln_buf_append(&raw, e.data, e.len);
                kiln_buf_done(&e);
        }
        size_t cap = ZSTD_compressBound(raw.len);
        kiln_buf_reserve(ret, cap);
        size_t z = ZSTD_compress(ret->data, cap, raw.data ? raw.data : (uint8_t *)"", raw.len, 3);
        assert_false(ZSTD_isError(z));
        ret->len = z;
        kiln_buf_done(&raw);
}

static void test_objectstore_layout(void **state)
{
        struct store *s = *state;
        put_closure(s->svc, fixture_closure(FX_D), FX_D);
        assert_string_equal(kiln_directory_service_name(s->svc), "objectstore");

        /* one object for the closure, named by the root, 4-hex shard */
        _cleanup_free_ char *path = object_path(s, &fxd[FX_D]);
        struct kiln_buf z = KILN_BUF_INIT;
        read_file(path, &z);
        unsigned long long size = ZSTD_getFrameContentSize(z.data, z.len);
        assert_true(size != ZSTD_CONTENTSIZE_ERROR);
        uint8_t raw[4096];
        size_t n = ZSTD_decompress(raw, sizeof(raw), z.data, z.len);
        assert_false(ZSTD_isError(n));
        /* frames: D, A, B (root first, breadth-first), 4-byte big-endian lengths */
        const int order[] = {FX_D, FX_A, FX_B};
        size_t off = 0;
        for (size_t i = 0; i < 3; i++) {
                struct kiln_buf e = KILN_BUF_INIT;
                kiln_directory_encode(&fx[order[i]], &e);
                assert_true(off + 4 <= n);
                uint32_t len = (uint32_t)raw[off] << 24 | (uint32_t)raw[off + 1] << 16 |
                               (uint32_t)raw[off + 2] << 8 | raw[off + 3];
                assert_int_equal(len, e.len);
                off += 4;
                if (len)
                        assert_memory_equal(raw + off, e.data, len);
                off += len;
                kiln_buf_done(&e);
        }
        assert_int_equal(off, n);

        /* only roots are retrievable */
        expect_absent(s->svc, &fxd[FX_B]);
        expect_absent(s->svc, &fxd[FX_A]);

        /* an object we wrote ourselves in the same format reads back */
        const struct kiln_directory *c[] = {&fx[FX_C], &fx[FX_A]};
        struct kiln_buf obj = KILN_BUF_INIT;
        make_object(c, 2, &obj);
        _cleanup_free_ char *cpath = object_path(s, &fxd[FX_C]);
        _cleanup_free_ char *cdir = kiln_strdup(cpath);
        *strrchr(cdir, '/') = '\0';
        mkdir(cdir, 0755);
        write_file(cpath, obj.data, obj.len);
        expect_get(s->svc, &fxd[FX_C], &fx[FX_C]);
        assert_int_equal(collect_recursive(s->svc, &fxd[FX_C], NULL), 2);

        /* an existing object is not rewritten */
        struct stat st1, st2;
        assert_int_equal(stat(path, &st1), 0);
        put_closure(s->svc, fixture_closure(FX_D), FX_D);
        assert_int_equal(stat(path, &st2), 0);
        assert_int_equal(st1.st_ino, st2.st_ino);

        /* a leftover temp file of a killed writer is invisible and harmless */
        _cleanup_free_ char *bpath = object_path(s, &fxd[FX_B]);
        _cleanup_free_ char *bdir = kiln_strdup(bpath);
        *strrchr(bdir, '/') = '\0';
        mkdir(bdir, 0755);
        _cleanup_free_ char *tmp =
            kiln_asprintf("%s/.%.16s.1.1.tmp", bdir, KILN_DIGEST_HEX(&fxd[FX_B]));
        write_file(tmp, "junk", 4);
        expect_absent(s->svc, &fxd[FX_B]);
        put_closure(s->svc, fixture_closure(FX_B), FX_B);
        expect_get(s->svc, &fxd[FX_B], &fx[FX_B]);
        kiln_buf_done(&z);
        kiln_buf_done(&obj);
}

/* Expects get_recursive(root) to fail with -EBADMSG naming the root and
 * containing `needle`, after yielding `ok_before` Directories. */
static void expect_corrupt(struct store *s, const struct kiln_digest *root, size_t ok_before,
                           const char *needle)
{
        struct kiln_error *err = NULL;
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        assert_ok(kiln_directory_get_recursive(s->svc, root, &st, &err), err);
        struct kiln_directory dir;
        int r;
        size_t n = 0;
        while ((r = kiln_directory_stream_next(st, &dir, NULL, &err)) > 0) {
                kiln_directory_done(&dir);
                n++;
        }
        if (r == 0)
                fail_msg("stream ended cleanly after %zu, expected \"%s\"", n, needle);
        assert_int_equal(r, -EBADMSG);
        assert_int_equal(n, ok_before);
        char want[96];
        snprintf(want, sizeof(want), "directory %s", KILN_DIGEST_B64(root));
        if (!strstr(err->msg, want) || !strstr(err->msg, needle))
                fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err->msg, want, needle);
        kiln_error_clear(&err);
        /* failures are sticky */
        assert_error(kiln_directory_stream_next(st, &dir, NULL, &err), err, EBADMSG,
                     "failed earlier");
}

static void test_objectstore_corruption(void **state)
{
        struct store *s = *state;
        struct kiln_error *err = NULL;
        put_closure(s->svc, fixture_closure(FX_D), FX_D);
        _cleanup_free_ char *path = object_path(s, &fxd[FX_D]);
        struct kiln_buf good = KILN_BUF_INIT, bad = KILN_BUF_INIT;
        read_file(path, &good);
        struct kiln_directory dir;

        /* truncated anywhere */
        for (size_t cut = 0; cut < good.len; cut++) {
                write_file(path, good.data, cut);
                _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
                assert_ok(kiln_directory_get_recursive(s->svc, &fxd[FX_D], &st, &err), err);
                int r;
                while ((r = kiln_directory_stream_next(st, &dir, NULL, &err)) > 0)
                        kiln_directory_done(&dir);
                if (r != -EBADMSG)
                        fail_msg("cut at %zu: got %d (%s)", cut, r, r < 0 ? err->msg : "end");
                kiln_error_clear(&err);
        }
        /* a flipped bit anywhere either fails the stream or (when it only
         * touched a zstd header field such as the window size) leaves the
         * content intact, which the digests then confirm */
        size_t caught = 0;
        for (size_t i = 0; i < good.len * 8; i++) {
                kiln_buf_clear(&bad);
                kiln_buf_append(&bad, good.data, good.len);
                bad.data[i / 8] ^= (uint8_t)(1 << (i % 8));
                write_file(path, bad.data, bad.len);
                _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
                assert_ok(kiln_directory_get_recursive(s->svc, &fxd[FX_D], &st, &err), err);
                int r;
                size_t n = 0;
                while ((r = kiln_directory_stream_next(st, &dir, NULL, &err)) > 0) {
                        kiln_directory_done(&dir);
                        n++;
                }
                if (r == -EBADMSG)
                        caught++;
                else if (r != 0 || n != 3)
                        fail_msg("flip of bit %zu: got %d after %zu (%s)", i, r, n,
                                 r < 0 ? err->msg : "end");
                kiln_error_clear(&err);
        }
        assert_true(caught > good.len * 8 / 2);

        /* crafted objects */
        write_file(path, "", 0);
        expect_corrupt(s, &fxd[FX_D], 0, "truncated zstd data");
        assert_error(kiln_directory_get(s->svc, &fxd[FX_D], &dir, &err), err, EBADMSG, "truncated");

        const struct kiln_directory *wrong_root[] = {&fx[FX_B], &fx[FX_A]};
        make_object(wrong_root, 2, &bad);
        write_file(path, bad.data, bad.len);
        expect_corrupt(s, &fxd[FX_D], 0, "unexpected digest");

        const struct kiln_directory *incomplete[] = {&fx[FX_D], &fx[FX_A]};
        kiln_buf_clear(&bad);
        make_object(incomplete, 2, &bad);
        write_file(path, bad.data, bad.len);
        expect_corrupt(s, &fxd[FX_D], 2, "graph is incomplete");

        const struct kiln_directory *stranger[] = {&fx[FX_D], &fx[FX_A], &fx[FX_C]};
        kiln_buf_clear(&bad);
        make_object(stranger, 3, &bad);
        write_file(path, bad.data, bad.len);
        expect_corrupt(s, &fxd[FX_D], 2, "unexpected digest");

        kiln_buf_clear(&bad);
        make_object(NULL, 0, &bad);
        write_file(path, bad.data, bad.len);
        expect_corrupt(s, &fxd[FX_D], 0, "no directories");

        /* a frame length over the limit */
        uint8_t huge[8] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
        kiln_buf_clear(&bad);
        kiln_buf_reserve(&bad, ZSTD_compressBound(sizeof(huge)));
        bad.len = ZSTD_compress(bad.data, bad.cap, huge, sizeof(huge), 3);
        write_file(path, bad.data, bad.len);
        expect_corrupt(s, &fxd[FX_D], 0, "exceeds the limit");

        /* duplicates in an object are yielded once */
        const struct kiln_directory *dup[] = {&fx[FX_D], &fx[FX_A], &fx[FX_A], &fx[FX_B]};
        kiln_buf_clear(&bad);
        make_object(dup, 4, &bad);
        write_file(path, bad.data, bad.len);
        assert_int_equal(collect_recursive(s->svc, &fxd[FX_D], NULL), 3);

        /* the intact object reads again */
        write_file(path, good.data, good.len);
        assert_int_equal(collect_recursive(s->svc, &fxd[FX_D], NULL), 3);
        kiln_buf_done(&good);
        kiln_buf_done(&bad);
}

/* --- URLs  --- */

static void test_urls(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        char *dir = scratch_dir();
        _cleanup_free_ char *lmdb_ok = kiln_asprintf("lmdb://%s/db", dir);
        _cleanup_free_ char *os_ok = kiln_asprintf("objectstore+file://%s/os", dir);
        const char *ok[] = {
            "memory://", lmdb_ok, "objectstore+memory://", "objectstore+memory:///", os_ok,
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(ok); i++) {
                struct kiln_directory_service *svc = NULL;
                int r = kiln_directory_service_open(ok[i], &svc, &err);
                if (r < 0)
                        fail_msg("%s: %s", ok[i], kiln_error_msg(err));
                kiln_directory_service_free(svc);
        }
        static const struct {
                const char *url;
                int code;
                const char *needle;
        } bad[] = {
            {"memory://foo", EINVAL, "takes no host"},
            {"memory:///", EINVAL, "takes no path"},
            {"memory:///foo", EINVAL, "takes no path"},
            {"lmdb://", EINVAL, "lmdb:// needs an absolute directory path, e.g. lmdb:///"},
            {"lmdb:", EINVAL, "needs an absolute directory path"},
            {"lmdb:///", EINVAL, "refuses to use '/'"},
            {"lmdb:////", EINVAL, "refuses to use '/'"},
            {"lmdb:relative/path", EINVAL, "needs an absolute directory path"},
            {"lmdb://foo.example", EINVAL, "takes no host"},
            {"lmdb://foo.example/abs/path", EINVAL, "takes no host"},
            {"lmdb:///tmp/x?mapsize=1", EINVAL, "unknown parameter 'mapsize'"},
            {"redb://", EINVAL, "use lmdb://"},
            {"redb:///abs/path/foo", EINVAL, "use lmdb://"},
            {"objectstore+file://", EINVAL, "needs an absolute path"},
            {"objectstore+file:relative", EINVAL, "needs an absolute path"},
            {"objectstore+file://host/abs", EINVAL, "takes no host"},
            {"objectstore+memory:///foo", EINVAL, "takes no path"},
            {"objectstore+memory://host", EINVAL, "takes no host"},
            {"objectstore+memory://?x=1", EINVAL, "unknown parameter 'x'"},
            {"objectstore://", EINVAL, "objectstore needs a store"},
            {"objectstore+https://localhost:8080/some-path", ENOTSUP, "not supported"},
            {"objectstore+s3://bucket/path", ENOTSUP, "not supported"},
            {"http://foo.example/test", EINVAL, "unknown type: http"},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
                struct kiln_directory_service *svc = NULL;
                int r = kiln_directory_service_open(bad[i].url, &svc, &err);
                if (r >= 0) {
                        kiln_directory_service_free(svc);
                        fail_msg("%s: accepted", bad[i].url);
                }
                if (r != -bad[i].code || !strstr(err->msg, bad[i].needle))
                        fail_msg("%s: got %d \"%s\", want %d \"%s\"", bad[i].url, r, err->msg,
                                 -bad[i].code, bad[i].needle);
                kiln_error_clear(&err);
        }
        scratch_remove(dir);
}

/* --- registration --- */

struct conf_test {
        const char *name;
        CMUnitTestFunction fn;
        bool needs_single_dirs; /* only for stores that keep single Directories */
};

static const struct conf_test conf_tests[] = {
    {"get_absent", conf_get_absent, false},
    {"put_get_fixtures", conf_put_get_fixtures, false},
    {"put_single", conf_put_single, false},
    {"put_multiple", conf_put_multiple, false},
    {"putter_dropped", conf_putter_dropped, false},
    {"get_recursive", conf_get_recursive, false},
    {"big_closure", conf_big_closure, false},
    {"missing_descendant", conf_missing_descendant, true},
    {"concurrency", conf_concurrency, false},
};

static const struct {
        const char *name;
        CMUnitTestFunction fn;
        const char *kind;
} specific_tests[] = {
    {"lmdb_corruption", test_lmdb_corruption, "lmdb"},
    {"lmdb_reopen", test_lmdb_reopen, "lmdb"},
    {"lmdb_processes", test_lmdb_processes, "lmdb"},
    {"lmdb_grow", test_lmdb_grow, "lmdb"},
    {"objectstore_layout", test_objectstore_layout, "objectstore+file"},
    {"objectstore_corruption", test_objectstore_corruption, "objectstore+file"},
};

int main(void)
{
        struct CMUnitTest tests[64];
        size_t n = 0;
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_fixture_digests);
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_closure_uploads);
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_closure_downloads);
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_closure_edges);
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_closure_big);
        tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_urls);
        for (size_t k = 0; k < KILN_ARRAY_SIZE(kinds); k++) {
                for (size_t i = 0; i < KILN_ARRAY_SIZE(conf_tests); i++) {
                        if (conf_tests[i].needs_single_dirs && kinds[k].only_roots)
                                continue;
                        tests[n++] = (struct CMUnitTest){
                            kiln_asprintf("%s: %s", kinds[k].name, conf_tests[i].name),
                            conf_tests[i].fn, store_setup, store_teardown, (void *)&kinds[k]};
                }
                for (size_t i = 0; i < KILN_ARRAY_SIZE(specific_tests); i++)
                        if (!strcmp(specific_tests[i].kind, kinds[k].name))
                                tests[n++] = (struct CMUnitTest){
                                    kiln_asprintf("%s: %s", kinds[k].name, specific_tests[i].name),
                                    specific_tests[i].fn, store_setup, store_teardown,
                                    (void *)&kinds[k]};
        }
        assert(n <= KILN_ARRAY_SIZE(tests));
        int r = _cmocka_run_group_tests("dirstore", tests, n, setup_fixtures, teardown_fixtures);
        for (size_t i = 6; i < n; i++)
                free((char *)tests[i].name);
        return r;
}
