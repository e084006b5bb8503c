/* Directory closure validation (SPEC §4.2) and the directory stores. */
#include "testutil.h"

#include <kiln/backend.h>
#include <kiln/castore.h>
#include <kiln/store.h>

/* --- fixtures (SPEC §13.3) --- */

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

        add(&fx[FX_COMPLICATED], dir_node("keep", &fxd[FX_WITH_KEEP],
                                          kiln_directory_size(&fx[FX_WITH_KEEP])));
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
                skip(); /* the §13.3 digests of D and COMPLICATED assume size_ref */
        for (int i = 0; i < FX_N; i++)
                if (fx_hex[i])
                        assert_string_equal(KILN_DIGEST_HEX(&fxd[i]), fx_hex[i]);
}

/* --- closure validation: the tables of SPEC §4.2 --- */

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
        assert_error(kiln_closure_add(c, &fx[FX_BROKEN], NULL, &err), err, EINVAL,
                     "wrong size");
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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fixture_digests),
                cmocka_unit_test(test_closure_uploads),
                cmocka_unit_test(test_closure_downloads),
                cmocka_unit_test(test_closure_edges),
                cmocka_unit_test(test_closure_big),
        };
        return cmocka_run_group_tests(tests, setup_fixtures, teardown_fixtures);
}
