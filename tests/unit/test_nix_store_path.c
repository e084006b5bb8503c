/* Nix store paths: names and parsing as Nix 2.8 checks them, and the path
 * computations, against paths Nix 2.8 printed for the same inputs. */
#include "testutil.h"

#include <kiln/nix/store_path.h>

static void test_names(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        static const char *const good[] = {
            "a", "hello-2.12.1", "foo.drv", "A+-._?=z09", ".dot", "..x", "...", "-",
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(good); i++)
                assert_ok(kiln_nix_store_name_validate(good[i], strlen(good[i]), &err), err);
        char name[KILN_NIX_NAME_MAX + 2];
        memset(name, 'x', sizeof(name));
        assert_ok(kiln_nix_store_name_validate(name, KILN_NIX_NAME_MAX, &err), err);
        assert_error(kiln_nix_store_name_validate(name, KILN_NIX_NAME_MAX + 1, &err), err, EINVAL,
                     "longer than 211 characters");
        assert_error(kiln_nix_store_name_validate("", 0, &err), err, EINVAL,
                     "invalid store path name '': empty");
        assert_error(kiln_nix_store_name_validate("a b", 3, &err), err, EINVAL,
                     "invalid store path name 'a b': illegal character ' '");
        assert_error(kiln_nix_store_name_validate("a/b", 3, &err), err, EINVAL,
                     "illegal character '/'");
        assert_error(kiln_nix_store_name_validate("\xc3\xa9", 2, &err), err, EINVAL,
                     "illegal character '\\xc3'");
        assert_error(kiln_nix_store_name_validate("a\0b", 3, &err), err, EINVAL,
                     "illegal character '\\x00'");
}

static void test_parse(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_nix_store_path p;
        const char *s = "/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple";
        assert_ok(kiln_nix_store_path_parse(s, strlen(s), &p, &err), err);
        assert_string_equal(p.name, "simple");
        assert_string_equal(KILN_NIX_STORE_PATH_STR(&p), s);
        char hp[KILN_NIX_HASH_PART_LEN + 1];
        assert_string_equal(kiln_nix_store_path_hash_part(&p, hp),
                            "7y1wrn35jk64pw06065h8gy41xgk7nz9");
        char *dup = kiln_nix_store_path_to_string(&p);
        assert_string_equal(dup, s);
        free(dup);
        struct kiln_nix_store_path q;
        assert_ok(kiln_nix_store_path_parse_base(s + 11, strlen(s + 11), &q, &err), err);
        assert_int_equal(kiln_nix_store_path_cmp(&p, &q), 0);

        static const struct {
                const char *path, *msg;
        } bad[] = {
            {"/nix/store", "is not in the Nix store"},
            {"/nix/store/", "is not in the Nix store"},
            {"/nix/storex/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple", "not in the Nix store"},
            {"/gnu/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple", "not in the Nix store"},
            {"nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple", "not in the Nix store"},
            {"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple/", "not in the Nix store"},
            {"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple/bin", "not in the Nix store"},
            {"/nix/store//7y1wrn35jk64pw06065h8gy41xgk7nz9-simple", "not in the Nix store"},
            {"/nix/store/..", "not <32-character hash>-<name>"},
            {"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9", "not <32-character hash>-<name>"},
            {"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-", "not <32-character hash>-<name>"},
            {"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9_simple", "not <32-character hash>"},
            {"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nze-simple",
             "invalid nixbase32 character 'e'"},
            {"/nix/store/7Y1wrn35jk64pw06065h8gy41xgk7nz9-simple",
             "invalid nixbase32 character 'Y'"},
            {"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-sim ple", "illegal character ' '"},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++)
                assert_error(kiln_nix_store_path_parse(bad[i].path, strlen(bad[i].path), &p, &err),
                             err, EINVAL, bad[i].msg);
}

static struct kiln_nix_store_path sp(const char *s)
{
        struct kiln_nix_store_path p;
        struct kiln_error *err = NULL;
        assert_ok(kiln_nix_store_path_parse(s, strlen(s), &p, &err), err);
        return p;
}

static struct kiln_nix_hash hash(const char *s)
{
        struct kiln_nix_hash h;
        struct kiln_error *err = NULL;
        assert_ok(kiln_nix_hash_parse(s, KILN_NIX_HASH_NONE, &h, &err), err);
        return h;
}

static void test_text_paths(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_nix_store_path p;
        uint8_t h[32];

        /* builtins.toFile "src.txt" "source\n" */
        kiln_nix_sha256("source\n", 7, h);
        assert_ok(kiln_nix_make_text_path("src.txt", h, NULL, 0, &p, &err), err);
        assert_string_equal(KILN_NIX_STORE_PATH_STR(&p),
                            "/nix/store/86zk1hg65gxgl73mdz8hp3g2nmmbsdh5-src.txt");

        /* builtins.toFile "b" "${toFile "a" "x"} and ${toFile "c" "y"}": the
         * references go into the type sorted (given here out of order, twice). */
        const char *text = "/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a and "
                           "/nix/store/apxsqdxczpngmp2qlqkjj6k7qy5ywhij-c";
        struct kiln_nix_store_path refs[] = {
            sp("/nix/store/apxsqdxczpngmp2qlqkjj6k7qy5ywhij-c"),
            sp("/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a"),
            sp("/nix/store/apxsqdxczpngmp2qlqkjj6k7qy5ywhij-c"),
        };
        kiln_nix_sha256(text, strlen(text), h);
        assert_ok(kiln_nix_make_text_path("b", h, refs, 3, &p, &err), err);
        assert_string_equal(KILN_NIX_STORE_PATH_STR(&p),
                            "/nix/store/0013an9bqkwal81imbvxsgwbp6vc8m9b-b");
        /* and the leaves */
        kiln_nix_sha256("x", 1, h);
        assert_ok(kiln_nix_make_text_path("a", h, NULL, 0, &p, &err), err);
        assert_string_equal(KILN_NIX_STORE_PATH_STR(&p),
                            "/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a");

        assert_error(kiln_nix_make_text_path("a b", h, NULL, 0, &p, &err), err, EINVAL,
                     "illegal character ' '");
}

static void test_fixed_output_paths(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_nix_store_path p;
        static const struct {
                enum kiln_nix_ingestion method;
                const char *hash, *name, *want;
        } v[] = {
            /* flat sha1 */
            {KILN_NIX_FLAT, "sha1:a9993e364706816aba3e25717850c26c9cd0d89d", "fod",
             "/nix/store/q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod"},
            /* flat sha256 */
            {KILN_NIX_FLAT, "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", "same",
             "/nix/store/d518fym6521aq5mpf6qzcfb5vl741sjd-same"},
            /* recursive sha512 */
            {KILN_NIX_RECURSIVE,
             "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/"
             "uu9RU1EI2Q86A4qmslP"
             "pUyknw==",
             "rfod", "/nix/store/ysp6x3d36raj8gjkxx9xwif4awggvasi-rfod"},
            /* recursive sha256: the "source" type  */
            {KILN_NIX_RECURSIVE,
             "sha256:08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba", "bar",
             "/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar"},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(v); i++) {
                struct kiln_nix_hash h = hash(v[i].hash);
                assert_ok(kiln_nix_make_fixed_output_path(v[i].method, &h, v[i].name, NULL, 0,
                                                          false, &p, &err),
                          err);
                assert_string_equal(KILN_NIX_STORE_PATH_STR(&p), v[i].want);
        }

        /* References are only for recursive sha256. */
        struct kiln_nix_hash h = hash("sha1:a9993e364706816aba3e25717850c26c9cd0d89d");
        struct kiln_nix_store_path ref = sp("/nix/store/12wigjpizrn8axaqxj288q1b751qmwya-a");
        assert_error(
            kiln_nix_make_fixed_output_path(KILN_NIX_RECURSIVE, &h, "x", &ref, 1, false, &p, &err),
            err, EINVAL, "only recursive sha256 paths can have references");
        assert_error(
            kiln_nix_make_fixed_output_path(KILN_NIX_FLAT, &h, "x", NULL, 0, true, &p, &err), err,
            EINVAL, "only recursive sha256 paths can have references");
        /* With references the type changes, so the path does. */
        h = hash("sha256:08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba");
        struct kiln_nix_store_path a, b;
        assert_ok(kiln_nix_make_fixed_output_path(KILN_NIX_RECURSIVE, &h, "bar", &ref, 1, false, &a,
                                                  &err),
                  err);
        assert_ok(
            kiln_nix_make_fixed_output_path(KILN_NIX_RECURSIVE, &h, "bar", &ref, 1, true, &b, &err),
            err);
        assert_string_not_equal(KILN_NIX_STORE_PATH_STR(&a),
                                "/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar");
        assert_int_not_equal(kiln_nix_store_path_cmp(&a, &b), 0);
}

static void test_output_paths(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_nix_store_path p;
        char *n = kiln_nix_output_path_name("foo", "out");
        assert_string_equal(n, "foo");
        free(n);
        n = kiln_nix_output_path_name("foo", "dev");
        assert_string_equal(n, "foo-dev");
        free(n);
        /* An output name that makes an invalid path name fails. */
        uint8_t zero[32] = {0};
        assert_error(kiln_nix_make_output_path("a b", zero, "foo", &p, &err), err, EINVAL,
                     "invalid store path name 'foo-a b'");
        assert_ok(kiln_nix_make_output_path("dev", zero, "foo", &p, &err), err);
        assert_string_equal(p.name, "foo-dev");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_names),        cmocka_unit_test(test_parse),
            cmocka_unit_test(test_text_paths),   cmocka_unit_test(test_fixed_output_paths),
            cmocka_unit_test(test_output_paths),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
