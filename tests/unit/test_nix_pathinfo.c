/* The PathInfo store: records round-trip through the tvix.store.v1 encoding
 * and the LMDB store, and every malformed record is refused as -EBADMSG. */
#include "testutil.h"

#include <unistd.h>

#include <kiln/nix/pathinfo.h>

#define P_OUT "/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo"
#define P_REF "/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar"
#define P_DRV "/nix/store/fhaj6gmwns62s6ypkcldbaj2ybvkhx3p-foo.drv"

static void sample(struct kiln_nix_pathinfo *p)
{
        *p = (struct kiln_nix_pathinfo){.path = strdup(P_OUT), .nar_size = 4904};
        p->node.kind = KILN_NODE_FILE;
        p->node.size = 3;
        memset(p->node.digest.b, 7, sizeof(p->node.digest.b));
        kiln_node_set_name(&p->node, strrchr(P_OUT, '/') + 1, strlen(strrchr(P_OUT, '/') + 1));
        p->nar_hash.algo = KILN_NIX_HASH_SHA256;
        memset(p->nar_hash.b, 9, 32);
        kiln_strv_push(&p->references, P_REF);
        kiln_strv_push(&p->references, P_OUT);
        p->deriver = strdup(P_DRV);
        p->ca = strdup("fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
}

static void assert_same(const struct kiln_nix_pathinfo *a, const struct kiln_nix_pathinfo *b)
{
        assert_string_equal(a->path, b->path);
        assert_true(kiln_node_eq(&a->node, &b->node));
        assert_true(kiln_nix_hash_eq(&a->nar_hash, &b->nar_hash));
        assert_int_equal(a->nar_size, b->nar_size);
        assert_int_equal(a->references.n, b->references.n);
        for (size_t i = 0; i < a->references.n; i++)
                assert_string_equal(a->references.v[i], b->references.v[i]);
        assert_string_equal(a->deriver, b->deriver);
        assert_string_equal(a->ca, b->ca);
}

static void test_round_trip(void **state)
{
        (void)state;
        struct kiln_nix_pathinfo p, q;
        sample(&p);
        struct kiln_buf b = KILN_BUF_INIT;
        assert_int_equal(kiln_nix_pathinfo_encode(&p, &b, NULL), 0);
        assert_int_equal(kiln_nix_pathinfo_decode(P_OUT, b.data, b.len, &q, NULL), 0);
        assert_same(&p, &q);
        kiln_nix_pathinfo_done(&q);
        /* without a path, the node's name says which path it is */
        assert_int_equal(kiln_nix_pathinfo_decode(NULL, b.data, b.len, &q, NULL), 0);
        assert_same(&p, &q);
        kiln_nix_pathinfo_done(&q);

        struct kiln_error *err = NULL;
        assert_error(kiln_nix_pathinfo_decode(P_REF, b.data, b.len, &q, &err), err, EBADMSG,
                     "not named by the path's basename");
        for (size_t cut = 1; cut < b.len; cut += 7) {
                int r = kiln_nix_pathinfo_decode(P_OUT, b.data, b.len - cut, &q, &err);
                if (r == 0) {
                        kiln_nix_pathinfo_done(&q);
                        continue;
                }
                assert_int_equal(r, -EBADMSG);
                kiln_error_clear(&err);
        }
        assert_error(kiln_nix_pathinfo_decode(P_OUT, "\xff\xff", 2, &q, &err), err, EBADMSG,
                     "not a PathInfo message");
        kiln_buf_done(&b);

        free(p.ca);
        p.ca = strdup("nonsense:sha256:x");
        assert_error(kiln_nix_pathinfo_encode(&p, &b, &err), err, EINVAL, "content address");
        kiln_buf_done(&b);
        kiln_nix_pathinfo_done(&p);
}

static int count(void *ctx, const struct kiln_nix_pathinfo *p, struct kiln_error **err)
{
        (void)err;
        assert_string_equal(p->path, P_OUT);
        (*(int *)ctx)++;
        return 0;
}

static void test_store(void **state)
{
        (void)state;
        char dir[] = "/tmp/kiln-pathinfo-XXXXXX";
        assert_non_null(mkdtemp(dir));
        struct kiln_nix_pathinfo_store *s;
        assert_int_equal(kiln_nix_pathinfo_store_open(dir, &s, NULL), 0);
        struct kiln_nix_pathinfo p, q;
        assert_int_equal(kiln_nix_pathinfo_get(s, P_OUT, &q, NULL), 0);
        sample(&p);
        assert_int_equal(kiln_nix_pathinfo_put(s, &p, NULL), 0);
        assert_int_equal(kiln_nix_pathinfo_get(s, P_OUT, &q, NULL), 1);
        assert_same(&p, &q);
        kiln_nix_pathinfo_done(&q);
        /* the same hash part with another name is another path: not held */
        char other[sizeof(P_OUT) + 1];
        snprintf(other, sizeof(other), "%sx", P_OUT);
        assert_int_equal(kiln_nix_pathinfo_get(s, other, &q, NULL), 0);
        /* and it cannot be added: it would take the record of P_OUT, which
         * other records may reference (found by fuzz_nix_serve) */
        struct kiln_error *err = NULL;
        struct kiln_nix_pathinfo o;
        sample(&o);
        free(o.path);
        o.path = strdup(other);
        assert_error(kiln_nix_pathinfo_put(s, &o, &err), err, EEXIST, P_OUT);
        /* a path already held keeps its record, as in Nix */
        free(o.path);
        o.path = strdup(P_OUT);
        o.nar_size = 1;
        assert_int_equal(kiln_nix_pathinfo_put(s, &o, NULL), 0);
        kiln_nix_pathinfo_done(&o);
        assert_int_equal(kiln_nix_pathinfo_get(s, P_OUT, &q, NULL), 1);
        assert_same(&p, &q);
        kiln_nix_pathinfo_done(&q);
        int n = 0;
        assert_int_equal(kiln_nix_pathinfo_list(s, count, &n, NULL), 0);
        assert_int_equal(n, 1);
        assert_error(kiln_nix_pathinfo_get(s, "/tmp/x", &q, &err), err, EINVAL, "/tmp/x");
        kiln_nix_pathinfo_done(&p);
        kiln_nix_pathinfo_store_close(s);
        char cmd[100];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_store),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
