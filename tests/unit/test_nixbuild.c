/* Derivation → BuildRequest: the environment Nix 2.8 gives a build, the
 * passAsFile file names (nixbase32 of SHA-256 of the attribute name),
 * output placeholders, fixed-output constraints, needles, and the
 * structured attributes files. The build of real derivations against Nix
 * itself is tests/integration/nix_build.sh. */
#include "testutil.h"

#include <kiln/nixbuild/nixbuild.h>

static struct kiln_nix_derivation *parse(const char *text)
{
        struct kiln_nix_derivation *d;
        struct kiln_error *err = NULL;
        if (kiln_nix_derivation_parse(text, strlen(text), &d, &err) < 0)
                fail_msg("parse: %s", kiln_error_msg(err));
        return d;
}

static const char *env(const struct kiln_build_request *r, const char *key)
{
        for (size_t i = 0; i < r->n_env; i++)
                if (!strcmp(r->env[i].key, key))
                        return (const char *)r->env[i].value;
        return NULL;
}

static void plan(const char *text, const struct kiln_node *in, size_t n,
                 struct kiln_nixbuild_plan *ret)
{
        struct kiln_nix_derivation *d = parse(text);
        struct kiln_nixbuild_request_options o = {.cores = 2};
        struct kiln_error *err = NULL;
        if (kiln_nixbuild_request(d, "/nix/store/00000000000000000000000000000000-x.drv", in, n, &o,
                                  ret, &err) < 0)
                fail_msg("request: %s", kiln_error_msg(err));
        kiln_nix_derivation_free(d);
}

static void test_pass_as_file(void **state)
{
        (void)state;
        struct kiln_nixbuild_plan p;
        plan("Derive([(\"out\",\"/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo\",\"\",\"\")],[],[],"
             "\":\",\":\",[],[(\"bar\",\"baz\"),(\"baz\",\"bar\"),(\"builder\",\":\"),(\"name\","
             "\"foo\"),(\"out\",\"/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo\"),"
             "(\"passAsFile\",\"bar  baz\"),(\"system\",\":\")])",
             NULL, 0, &p);
        const struct kiln_build_request *r = &p.req;
        /* Nix splits passAsFile on any run of whitespace. */
        assert_string_equal(env(r, "barPath"),
                            "/build/.attr-1fcgpy7vc4ammr7s17j2xq88scswkgz23dqzc04g8sx5vcp2pppw");
        assert_string_equal(env(r, "bazPath"),
                            "/build/.attr-15l04iksj1280dvhbzdq9ai3wlf8ac2188m9qv0gn81k9nba19ds");
        assert_null(env(r, "bar"));
        assert_string_equal(env(r, "passAsFile"), "bar  baz");
        assert_int_equal(r->n_files, 2);
        assert_string_equal(r->files[0].path,
                            "build/.attr-15l04iksj1280dvhbzdq9ai3wlf8ac2188m9qv0gn81k9nba19ds");
        assert_memory_equal(r->files[0].contents, "bar", 3);
        /* The fixed variables, as Nix sets them. */
        assert_string_equal(env(r, "PATH"), "/path-not-set");
        assert_string_equal(env(r, "HOME"), "/homeless-shelter");
        assert_string_equal(env(r, "NIX_BUILD_TOP"), "/build");
        assert_string_equal(env(r, "TMPDIR"), "/build");
        assert_string_equal(env(r, "PWD"), "/build");
        assert_string_equal(env(r, "NIX_BUILD_CORES"), "2");
        assert_string_equal(env(r, "NIX_LOG_FD"), "2");
        assert_string_equal(env(r, "TERM"), "xterm-256color");
        assert_null(env(r, "NIX_OUTPUT_CHECKED"));
        assert_false(r->constraints.network_access);
        assert_false(r->constraints.provide_bin_sh);
        assert_string_equal(r->working_dir, "build");
        assert_string_equal(r->inputs_dir, "nix/store");
        assert_int_equal(r->needles.n, 1);
        assert_string_equal(r->needles.v[0], "pp17lwra2jkx8rha15qabg2q3wij72lj");
        kiln_nixbuild_plan_done(&p);
}

static void test_placeholders(void **state)
{
        (void)state;
        struct kiln_nixbuild_plan p;
        plan("Derive([(\"out\",\"/nix/store/dgapb8kh5gis4w7hzfl5725sx5gam0nz-with-placeholders\","
             "\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[\"-c\","
             "\"/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9\","
             "\"/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz\"],[(\"BAR\","
             "\"/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz\"),(\"FOO\","
             "\"x/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9/y\"),(\"builder\",\"/bin/sh\"),"
             "(\"name\",\"with-placeholders\"),(\"out\","
             "\"/nix/store/dgapb8kh5gis4w7hzfl5725sx5gam0nz-with-placeholders\"),(\"system\","
             "\"x86_64-linux\")])",
             NULL, 0, &p);
        const struct kiln_build_request *r = &p.req;
        assert_int_equal(r->command_args.n, 4);
        assert_string_equal(r->command_args.v[2],
                            "/nix/store/dgapb8kh5gis4w7hzfl5725sx5gam0nz-with-placeholders");
        /* the placeholder of an output the derivation does not have stays */
        assert_string_equal(r->command_args.v[3],
                            "/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz");
        assert_string_equal(env(r, "FOO"),
                            "x/nix/store/dgapb8kh5gis4w7hzfl5725sx5gam0nz-with-placeholders/y");
        kiln_nixbuild_plan_done(&p);
}

static void test_fixed_output_and_inputs(void **state)
{
        (void)state;
        struct kiln_node in[2] = {0};
        const char *names[] = {"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"};
        for (int i = 0; i < 2; i++) {
                in[i].kind = KILN_NODE_FILE;
                in[i].size = 1;
                kiln_node_set_name(&in[i], names[i], strlen(names[i]));
        }
        setenv("KILN_TEST_PROXY", "http://proxy", 1);
        struct kiln_nixbuild_plan p;
        plan("Derive([(\"out\",\"/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar\",\"r:sha256\","
             "\"08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba\")],[],[],\":\","
             "\":\",[],[(\"builder\",\":\"),(\"impureEnvVars\",\"KILN_TEST_PROXY\"),(\"name\","
             "\"bar\"),(\"out\",\"/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar\"),(\"outputHash\","
             "\"08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba\"),"
             "(\"outputHashAlgo\",\"sha256\"),(\"outputHashMode\",\"recursive\"),(\"system\",\":\")])",
             in, 2, &p);
        const struct kiln_build_request *r = &p.req;
        assert_true(r->constraints.network_access);
        assert_string_equal(env(r, "NIX_OUTPUT_CHECKED"), "1");
        assert_string_equal(env(r, "KILN_TEST_PROXY"), "http://proxy");
        /* needles: the output, then the inputs by path */
        assert_int_equal(r->needles.n, 3);
        assert_string_equal(r->needles.v[0], "4q0pg5zpfmznxscq3avycvf9xdvx50n3");
        assert_string_equal(r->needles.v[1], "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_string_equal(p.needle_paths.v[2], "/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-b");
        assert_int_equal(r->n_inputs, 2);
        kiln_nixbuild_plan_done(&p);
        kiln_node_done(&in[0]);
        kiln_node_done(&in[1]);
}

static void test_attrs_files(void **state)
{
        (void)state;
        json_t *j = json_loads("{\"z\":1,\"a\":\"it's\",\"l\":[\"x\",2,true,null],"
                               "\"o\":{\"k\":\"v\"},\"r\":1.5,\"two\":2.0,\"n\":null,\"f\":false,"
                               "\"bad-name\":1,\"deep\":[[1]],\"s\":\"q\\\"\\\\\\n\\u0001\"}",
                               0, NULL);
        assert_non_null(j);
        struct kiln_buf b = KILN_BUF_INIT;
        assert_int_equal(kiln_nixbuild_attrs_json(j, &b, NULL), 0);
        kiln_buf_append_byte(&b, 0);
        assert_string_equal((char *)b.data,
                            "{\"a\":\"it's\",\"bad-name\":1,\"deep\":[[1]],\"f\":false,"
                            "\"l\":[\"x\",2,true,null],\"n\":null,\"o\":{\"k\":\"v\"},\"r\":1.5,"
                            "\"s\":\"q\\\"\\\\\\n\\u0001\",\"two\":2.0,\"z\":1}");
        b.len = 0;
        kiln_nixbuild_attrs_sh(j, &b);
        kiln_buf_append_byte(&b, 0);
        assert_string_equal((char *)b.data, "declare a='it'\\''s'\n"
                                            "declare f=\n"
                                            "declare -a l=('x' 2 1 '' )\n"
                                            "declare n=''\n"
                                            "declare -A o=(['k']='v' )\n"
                                            "declare s='q\"\\\n\001'\n"
                                            "declare two=2\n"
                                            "declare z=1\n");
        kiln_buf_done(&b);
        json_decref(j);
}

static void test_refusals(void **state)
{
        (void)state;
        struct kiln_nix_derivation *d =
                parse("Derive([(\"out\",\"\",\"r:sha256\",\"\")],[],[],\":\",\":\",[],[(\"name\","
                      "\"ca\")])");
        struct kiln_nixbuild_request_options o = {.cores = 1};
        struct kiln_nixbuild_plan p;
        struct kiln_error *err = NULL;
        assert_error(kiln_nixbuild_request(d, "/nix/store/x.drv", NULL, 0, &o, &p, &err), err,
                     ENOTSUP, "content-addressed");
        kiln_nix_derivation_free(d);
        d = parse("Derive([(\"out\",\"/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo\",\"\",\"\")],"
                  "[],[],\":\",\":\",[],[(\"__json\",\"[1]\"),(\"name\",\"foo\")])");
        assert_error(kiln_nixbuild_request(d, "/nix/store/x.drv", NULL, 0, &o, &p, &err), err,
                     EINVAL, "cannot process __json attribute");
        kiln_nix_derivation_free(d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_pass_as_file), cmocka_unit_test(test_placeholders),
            cmocka_unit_test(test_fixed_output_and_inputs), cmocka_unit_test(test_attrs_files),
            cmocka_unit_test(test_refusals),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
