/* Nix derivations: ATerm parse → print byte for byte, the paths Nix 2.8
 * computed for the same derivations (output paths through
 * hashDerivationModulo, the .drv path), nix show-derivation's JSON, and
 * malformed input, each with its error. The vectors are .drv files written
 * by nix-instantiate 2.8 (tests/integration/nix_model.sh does the same
 * against the installed Nix). */
#include "testutil.h"

#include <fcntl.h>
#include <unistd.h>

#include <kiln/nix/drv_hash.h>
#include <kiln/nix/drv_json.h>

/* A small graph: dep depends on simple, multi (dev and out), a flat sha1 and a
 * recursive sha512 fixed output, two fixed outputs with the same path (so
 * with the same hash), and structured (__structuredAttrs, bin output), which
 * depends on simple too; dep also has a source and passAsFile. */
static const struct vector {
        const char *file, *text;
} vectors[] = {
    {"5nbq70lpv0pa2jvl8g8h4f4p6q7yzcy0-simple.drv",
     "Derive([(\"out\",\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple\",\"\",\"\")],[],[],"
     "\"x86_64-linux\",\"/bin/sh\",[\"-c\",\"echo \\\"hi\\\\n\\\"\\t> "
     "$out\"],[(\"builder\",\"/bin/sh\")"
     ",(\"name\",\"simple\"),(\"out\",\"/nix/store/"
     "7y1wrn35jk64pw06065h8gy41xgk7nz9-simple\"),(\"system\","
     "\"x86_64-linux\")])"},
    {"jf8l23x0rwrlwh805c2hwdjbfz4zj7qz-rfod.drv",
     "Derive([(\"out\",\"/nix/store/"
     "ysp6x3d36raj8gjkxx9xwif4awggvasi-rfod\",\"r:sha512\","
     "\"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3f"
     "eebbd454d4423643ce80e2a9ac94fa54ca49f\")"
     "],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/"
     "sh\"),(\"name\",\"rfod\"),(\"out\","
     "\"/nix/store/"
     "ysp6x3d36raj8gjkxx9xwif4awggvasi-rfod\"),(\"outputHash\",\"sha512-3a81oZNherrMQXNJriBBMRLm+"
     "k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==\")"
     ",(\"outputHashMode\",\"recursive\"),(\"system\",\"x86_64-linux\")])"},
    {"k4rdddfkzfsmr8vyg01hnidk9qyw6aik-same.drv",
     "Derive([(\"out\",\"/nix/store/"
     "d518fym6521aq5mpf6qzcfb5vl741sjd-same\",\"sha256\","
     "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\")"
     "],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/sh\"),(\"how\",\"a\"),(\"name\","
     "\"same\"),(\"out\",\"/nix/store/"
     "d518fym6521aq5mpf6qzcfb5vl741sjd-same\"),(\"outputHash\",\"sha256:"
     "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\")"
     ",(\"system\",\"x86_64-linux\")])"},
    {"khyy9mcbrfksbykzr81y01z0p0jj4fxg-dep.drv",
     "Derive([(\"doc\",\"/nix/store/9ar8l9fgfscmxymm0q61qs6d19jp7ikb-dep-doc\",\"\",\"\"),(\"out\","
     "\"/nix/store/9w0v3853i25cvgnvscxv01icg99mnbkx-dep\",\"\",\"\")],[(\"/nix/store/"
     "5nbq70lpv0pa2jvl8g8h4f4p6q7yzcy0-simple.drv\","
     "[\"out\"]),(\"/nix/store/jf8l23x0rwrlwh805c2hwdjbfz4zj7qz-rfod.drv\",[\"out\"]),(\"/nix/"
     "store/k4rdddfkzfsmr8vyg01hnidk9qyw6aik-same.drv\","
     "[\"out\"]),(\"/nix/store/srwarchba6b2h2z64k6g00cfmwz0mjzy-fod.drv\",[\"out\"]),(\"/nix/store/"
     "v27a425rg4n7prwzpyyw0y1fw2ssc46f-multi.drv\","
     "[\"dev\",\"out\"]),(\"/nix/store/vl37g2b030nj649swn5hlms9lpp4s7w7-structured.drv\",[\"bin\"])"
     ",(\"/nix/store/xkypsgas2l56983pd201nbw0wknbv2pc-same.drv\",[\"out\"])],[\"/nix/store/"
     "86zk1hg65gxgl73mdz8hp3g2nmmbsdh5-src.txt\"],"
     "\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/sh\"),(\"doc\",\"/nix/store/"
     "9ar8l9fgfscmxymm0q61qs6d19jp7ikb-dep-doc\")"
     ",(\"inputs\",\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple "
     "/nix/store/cnr8n8g7k3l7913d10wbs7mk11byk3qm-multi-dev "
     "/nix/store/h49lgbknv1fggzyb77p6d3ag1frnz354-multi "
     "/nix/store/q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod "
     "/nix/store/ysp6x3d36raj8gjkxx9xwif4awggvasi-rfod "
     "/nix/store/d518fym6521aq5mpf6qzcfb5vl741sjd-same "
     "/nix/store/d518fym6521aq5mpf6qzcfb5vl741sjd-same "
     "/nix/store/v07qlfjywh98jwr8f2i28mx7bvjkfdxd-structured-bin\")"
     ",(\"name\",\"dep\"),(\"out\",\"/nix/store/"
     "9w0v3853i25cvgnvscxv01icg99mnbkx-dep\"),(\"outputs\","
     "\"out "
     "doc\"),(\"passAsFile\",\"src\"),(\"src\",\"/nix/store/"
     "86zk1hg65gxgl73mdz8hp3g2nmmbsdh5-src.txt\")"
     ",(\"system\",\"x86_64-linux\")])"},
    {"srwarchba6b2h2z64k6g00cfmwz0mjzy-fod.drv",
     "Derive([(\"out\",\"/nix/store/"
     "q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"sha1\",\"a9993e364706816aba3e25717850c26c9cd0d89d\")"
     "],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/"
     "sh\"),(\"name\",\"fod\"),(\"out\","
     "\"/nix/store/"
     "q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\"),(\"outputHash\","
     "\"a9993e364706816aba3e25717850c26c9cd0d89d\")"
     ",(\"outputHashAlgo\",\"sha1\"),(\"outputHashMode\",\"flat\"),(\"system\",\"x86_64-linux\")"
     "])"},
    {"v27a425rg4n7prwzpyyw0y1fw2ssc46f-multi.drv",
     "Derive([(\"dev\",\"/nix/store/"
     "cnr8n8g7k3l7913d10wbs7mk11byk3qm-multi-dev\",\"\",\"\"),(\"lib\","
     "\"/nix/store/vscn60gjvw2l9cclny9zr26kvxb7gl5d-multi-lib\",\"\",\"\"),(\"out\",\"/nix/store/"
     "h49lgbknv1fggzyb77p6d3ag1frnz354-multi\","
     "\"\",\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/sh\"),(\"dev\",\"/nix/"
     "store/cnr8n8g7k3l7913d10wbs7mk11byk3qm-multi-dev\")"
     ",(\"lib\",\"/nix/store/vscn60gjvw2l9cclny9zr26kvxb7gl5d-multi-lib\"),(\"name\",\"multi\"),"
     "(\"out\",\"/nix/store/h49lgbknv1fggzyb77p6d3ag1frnz354-multi\"),(\"outputs\",\"out dev lib\")"
     ",(\"system\",\"x86_64-linux\")])"},
    {"vl37g2b030nj649swn5hlms9lpp4s7w7-structured.drv",
     "Derive([(\"bin\",\"/nix/store/v07qlfjywh98jwr8f2i28mx7bvjkfdxd-structured-bin\",\"\",\"\")"
     ",(\"out\",\"/nix/store/99vvvrsqxc9kxkcklhf7sk53ln44c7w6-structured\",\"\",\"\")],[(\"/nix/"
     "store/5nbq70lpv0pa2jvl8g8h4f4p6q7yzcy0-simple.drv\","
     "[\"out\"])],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"__json\",\"{\\\"builder\\\":\\\"/bin/"
     "sh\\\","
     "\\\"dep\\\":\\\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple\\\",\\\"list\\\":[1,true,"
     "null,\\\"x\\\"],\\\"name\\\":\\\"structured\\\",\\\"outputs\\\":[\\\"out\\\",\\\"bin\\\"],"
     "\\\"system\\\":\\\"x86_64-linux\\\"}\"),(\"bin\",\"/nix/store/"
     "v07qlfjywh98jwr8f2i28mx7bvjkfdxd-structured-bin\")"
     ",(\"out\",\"/nix/store/99vvvrsqxc9kxkcklhf7sk53ln44c7w6-structured\")])"},
    {"xkypsgas2l56983pd201nbw0wknbv2pc-same.drv",
     "Derive([(\"out\",\"/nix/store/"
     "d518fym6521aq5mpf6qzcfb5vl741sjd-same\",\"sha256\","
     "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\")"
     "],[],[],\"x86_64-linux\",\"/bin/sh\",[],[(\"builder\",\"/bin/sh\"),(\"how\",\"b\"),(\"name\","
     "\"same\"),(\"out\",\"/nix/store/"
     "d518fym6521aq5mpf6qzcfb5vl741sjd-same\"),(\"outputHash\",\"sha256:"
     "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\")"
     ",(\"system\",\"x86_64-linux\")])"},
};

/* The fixed-output, source and multi-output cases: their .drv paths as nix-instantiate 2.8 gives
 * them for the same attributes. */
static const struct vector spec_vectors[] = {
    {"0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv",
     "Derive([(\"out\",\"/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar\",\"r:sha256\","
     "\"08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba\")],[],[],\":\",\":\",[],"
     "[(\"builder\",\":\"),(\"name\",\"bar\"),(\"out\",\"/nix/store/"
     "4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar\"),(\"outputHash\","
     "\"08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba\"),(\"outputHashAlgo\","
     "\"sha256\"),(\"outputHashMode\",\"recursive\"),(\"system\",\":\")])"},
    {"z10frkf0mxx03wgcj82648sgzqzkb2a9-foo.drv",
     "Derive([(\"out\",\"/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo\",\"\",\"\")],[],[],\":\","
     "\":\",[],[(\"bar\",\"baz\"),(\"baz\",\"bar\"),(\"builder\",\":\"),(\"name\",\"foo\"),("
     "\"out\","
     "\"/nix/store/pp17lwra2jkx8rha15qabg2q3wij72lj-foo\"),(\"passAsFile\",\"bar "
     "baz\"),(\"system\","
     "\":\")])"},
    {"18m7y1d025lqgrzx8ypnhjbvq23z2kda-with-placeholders.drv",
     "Derive([(\"out\",\"/nix/store/"
     "dgapb8kh5gis4w7hzfl5725sx5gam0nz-with-placeholders\",\"\",\"\")],"
     "[],[],\"x86_64-linux\",\"/bin/sh\",[\"-c\","
     "\"/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9\","
     "\"/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz\"],[(\"BAR\","
     "\"/1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz\"),(\"FOO\","
     "\"/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9\"),(\"builder\",\"/bin/"
     "sh\"),(\"name\","
     "\"with-placeholders\"),(\"out\",\"/nix/store/"
     "dgapb8kh5gis4w7hzfl5725sx5gam0nz-with-placeholders\"),(\"system\",\"x86_64-linux\")])"},
};

/* nix show-derivation of rfod and structured, as Nix 2.8 printed it. */
static const char show_json[] =
    "{\n"
    "  \"/nix/store/jf8l23x0rwrlwh805c2hwdjbfz4zj7qz-rfod.drv\": {\n"
    "    \"outputs\": {\n"
    "      \"out\": {\n"
    "        \"path\": \"/nix/store/ysp6x3d36raj8gjkxx9xwif4awggvasi-rfod\",\n"
    "        \"hashAlgo\": \"r:sha512\",\n"
    "        \"hash\": "
    "\"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3fe"
    "ebbd454d4423643ce80e2a9ac94fa54ca49f\"\n"
    "      }\n"
    "    },\n"
    "    \"inputSrcs\": [],\n"
    "    \"inputDrvs\": {},\n"
    "    \"system\": \"x86_64-linux\",\n"
    "    \"builder\": \"/bin/sh\",\n"
    "    \"args\": [],\n"
    "    \"env\": {\n"
    "      \"builder\": \"/bin/sh\",\n"
    "      \"name\": \"rfod\",\n"
    "      \"out\": \"/nix/store/ysp6x3d36raj8gjkxx9xwif4awggvasi-rfod\",\n"
    "      \"outputHash\": "
    "\"sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/"
    "uu9RU1EI2Q86A4qmslPpUyknw==\",\n"
    "      \"outputHashMode\": \"recursive\",\n"
    "      \"system\": \"x86_64-linux\"\n"
    "    }\n"
    "  },\n"
    "  \"/nix/store/vl37g2b030nj649swn5hlms9lpp4s7w7-structured.drv\": {\n"
    "    \"outputs\": {\n"
    "      \"bin\": {\n"
    "        \"path\": \"/nix/store/v07qlfjywh98jwr8f2i28mx7bvjkfdxd-structured-bin\"\n"
    "      },\n"
    "      \"out\": {\n"
    "        \"path\": \"/nix/store/99vvvrsqxc9kxkcklhf7sk53ln44c7w6-structured\"\n"
    "      }\n"
    "    },\n"
    "    \"inputSrcs\": [],\n"
    "    \"inputDrvs\": {\n"
    "      \"/nix/store/5nbq70lpv0pa2jvl8g8h4f4p6q7yzcy0-simple.drv\": [\n"
    "        \"out\"\n"
    "      ]\n"
    "    },\n"
    "    \"system\": \"x86_64-linux\",\n"
    "    \"builder\": \"/bin/sh\",\n"
    "    \"args\": [],\n"
    "    \"env\": {\n"
    "      \"__json\": "
    "\"{\\\"builder\\\":\\\"/bin/sh\\\",\\\"dep\\\":\\\"/nix/store/"
    "7y1wrn35jk64pw06065h8gy41xgk7nz9-simple\\\",\\\"list\\\":[1,true,null,\\\"x\\\"],\\\"name\\\":"
    "\\\"structured\\\",\\\"outputs\\\":[\\\"out\\\",\\\"bin\\\"],\\\"system\\\":\\\"x86_64-"
    "linux\\\"}\",\n"
    "      \"bin\": \"/nix/store/v07qlfjywh98jwr8f2i28mx7bvjkfdxd-structured-bin\",\n"
    "      \"out\": \"/nix/store/99vvvrsqxc9kxkcklhf7sk53ln44c7w6-structured\"\n"
    "    }\n"
    "  }\n"
    "}\n";

/* An in-memory source over a table, counting reads. */
struct mem_source {
        const struct vector *v;
        size_t n;
        unsigned reads;
};

static int mem_read(void *ctx, const struct kiln_nix_store_path *p,
                    struct kiln_nix_derivation **ret, struct kiln_error **err)
{
        struct mem_source *m = ctx;
        const char *full = KILN_NIX_STORE_PATH_STR(p);
        for (size_t i = 0; i < m->n; i++)
                if (!strcmp(m->v[i].file, full + KILN_NIX_STORE_DIR_LEN + 1)) {
                        m->reads++;
                        return kiln_nix_derivation_parse(m->v[i].text, strlen(m->v[i].text), ret,
                                                         err) < 0
                                   ? -EINVAL
                                   : 1;
                }
        return 0;
}

static struct kiln_nix_derivation *parse(const char *text)
{
        struct kiln_error *err = NULL;
        struct kiln_nix_derivation *d = NULL;
        assert_ok(kiln_nix_derivation_parse(text, strlen(text), &d, &err), err);
        return d;
}

static struct kiln_nix_store_path drv_path_of(const char *file)
{
        struct kiln_nix_store_path p;
        struct kiln_error *err = NULL;
        assert_ok(kiln_nix_store_path_parse_base(file, strlen(file), &p, &err), err);
        return p;
}

/* Parses, prints back, and checks the .drv path and the output paths. */
static void check_vector(const struct vector *v, struct kiln_nix_drv_hasher *h)
{
        struct kiln_error *err = NULL;
        struct kiln_nix_derivation *d = parse(v->text);
        struct kiln_buf out = KILN_BUF_INIT;
        kiln_nix_derivation_print(d, &out);
        kiln_buf_append_byte(&out, 0);
        assert_string_equal((char *)out.data, v->text);
        kiln_buf_done(&out);

        struct kiln_nix_store_path self = drv_path_of(v->file), got;
        char *name = NULL;
        assert_ok(kiln_nix_drv_name_from_path(&self, &name, &err), err);
        assert_ok(kiln_nix_derivation_path(d, name, &got, &err), err);
        assert_string_equal(KILN_NIX_STORE_PATH_STR(&got), KILN_NIX_STORE_PATH_STR(&self));

        struct kiln_nix_output_path *paths = calloc(d->n_outputs, sizeof(*paths));
        assert_ok(kiln_nix_drv_output_paths(h, d, name, paths, &err), err);
        for (size_t i = 0; i < d->n_outputs; i++) {
                assert_true(paths[i].known);
                assert_string_equal(KILN_NIX_STORE_PATH_STR(&paths[i].path),
                                    KILN_NIX_STORE_PATH_STR(&d->outputs[i].path));
        }
        assert_ok(kiln_nix_drv_check_outputs(h, d, name, &err), err);
        free(paths);
        free(name);
        kiln_nix_derivation_free(d);
}

static void test_vectors(void **state)
{
        (void)state;
        struct mem_source m = {vectors, KILN_ARRAY_SIZE(vectors), 0};
        struct kiln_nix_drv_source src = {mem_read, &m};
        struct kiln_nix_drv_hasher *h = kiln_nix_drv_hasher_new(&src);
        for (size_t i = 0; i < KILN_ARRAY_SIZE(vectors); i++)
                check_vector(&vectors[i], h);
        /* Every input derivation was read once, however often it is used. */
        assert_int_equal(m.reads, 7);
        kiln_nix_drv_hasher_free(h);

        struct mem_source none = {NULL, 0, 0};
        struct kiln_nix_drv_source nosrc = {mem_read, &none};
        h = kiln_nix_drv_hasher_new(&nosrc);
        for (size_t i = 0; i < KILN_ARRAY_SIZE(spec_vectors); i++)
                check_vector(&spec_vectors[i], h);
        kiln_nix_drv_hasher_free(h);
}

static const struct vector *find(const char *suffix)
{
        for (size_t i = 0; i < KILN_ARRAY_SIZE(vectors); i++) {
                size_t a = strlen(vectors[i].file), b = strlen(suffix);
                if (a >= b && !strcmp(vectors[i].file + a - b, suffix))
                        return &vectors[i];
        }
        fail_msg("no vector %s", suffix);
        return NULL;
}

static void test_model(void **state)
{
        (void)state;
        struct kiln_nix_derivation *d = parse(find("-dep.drv")->text);
        assert_int_equal(d->n_outputs, 2);
        assert_string_equal(d->outputs[0].name, "doc");
        assert_int_equal(d->outputs[0].kind, KILN_NIX_OUTPUT_INPUT_ADDRESSED);
        assert_int_equal(d->n_input_drvs, 7);
        assert_int_equal(d->n_input_srcs, 1);
        assert_string_equal(d->input_srcs[0].name, "src.txt");
        assert_string_equal(kiln_nix_derivation_env_get(d, "passAsFile"), "src");
        /* passAsFile is for the builder: the variable stays. */
        assert_string_equal(kiln_nix_derivation_env_get(d, "src"),
                            KILN_NIX_STORE_PATH_STR(&d->input_srcs[0]));
        assert_null(kiln_nix_derivation_env_get(d, "srcPath"));
        assert_non_null(kiln_nix_derivation_output(d, "out"));
        assert_null(kiln_nix_derivation_output(d, "bin"));
        enum kiln_nix_drv_type t;
        struct kiln_error *err = NULL;
        assert_ok(kiln_nix_derivation_type(d, &t, &err), err);
        assert_int_equal(t, KILN_NIX_DRV_INPUT_ADDRESSED);
        kiln_nix_derivation_free(d);

        d = parse(find("-rfod.drv")->text);
        assert_int_equal(d->outputs[0].kind, KILN_NIX_OUTPUT_FIXED);
        assert_int_equal(d->outputs[0].method, KILN_NIX_RECURSIVE);
        assert_int_equal(d->outputs[0].hash.algo, KILN_NIX_HASH_SHA512);
        char algo[16];
        assert_string_equal(kiln_nix_output_hash_algo(&d->outputs[0], algo), "r:sha512");
        assert_ok(kiln_nix_derivation_type(d, &t, &err), err);
        assert_int_equal(t, KILN_NIX_DRV_FIXED);
        kiln_nix_derivation_free(d);

        d = parse(find("-simple.drv")->text);
        assert_int_equal(d->n_args, 2);
        assert_string_equal(d->args[1], "echo \"hi\\n\"\t> $out");
        kiln_nix_derivation_free(d);
}

static void test_hash_modulo(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct mem_source m = {vectors, KILN_ARRAY_SIZE(vectors), 0};
        struct kiln_nix_drv_source src = {mem_read, &m};
        struct kiln_nix_drv_hasher *h = kiln_nix_drv_hasher_new(&src);

        /* The two "same" fixed outputs hash alike: one entry in dep's list. */
        const struct kiln_nix_drv_hash *a, *b;
        struct kiln_nix_store_path pa =
            drv_path_of(find("k4rdddfkzfsmr8vyg01hnidk9qyw6aik-same.drv")->file);
        struct kiln_nix_store_path pb =
            drv_path_of(find("xkypsgas2l56983pd201nbw0wknbv2pc-same.drv")->file);
        assert_ok(kiln_nix_drv_hash_path(h, &pa, &a, &err), err);
        assert_ok(kiln_nix_drv_hash_path(h, &pb, &b, &err), err);
        assert_memory_equal(a->outputs[0].sha256, b->outputs[0].sha256, 32);
        assert_int_equal(a->kind, KILN_NIX_DRV_HASH_REGULAR);
        assert_non_null(kiln_nix_drv_hash_get(a, "out"));
        assert_null(kiln_nix_drv_hash_get(a, "dev"));
        /* A regular derivation: the same hash for every output. */
        const struct kiln_nix_drv_hash *mh;
        struct kiln_nix_store_path pm = drv_path_of(find("-multi.drv")->file);
        assert_ok(kiln_nix_drv_hash_path(h, &pm, &mh, &err), err);
        assert_int_equal(mh->n_outputs, 3);
        assert_memory_equal(mh->outputs[0].sha256, mh->outputs[2].sha256, 32);
        unsigned reads = m.reads;
        assert_ok(kiln_nix_drv_hash_path(h, &pm, &mh, &err), err);
        assert_int_equal(m.reads, reads);

        /* A missing input, and one that lacks the output asked for. */
        struct kiln_nix_derivation *d = parse(find("-dep.drv")->text);
        struct mem_source empty = {NULL, 0, 0};
        struct kiln_nix_drv_source nosrc = {mem_read, &empty};
        struct kiln_nix_drv_hasher *h2 = kiln_nix_drv_hasher_new(&nosrc);
        struct kiln_nix_drv_hash *res = NULL;
        assert_error(kiln_nix_drv_hash_modulo(h2, d, "dep", true, &res, &err), err, ENOENT,
                     "input derivation /nix/store/5nbq70lpv0pa2jvl8g8h4f4p6q7yzcy0-simple.drv not "
                     "found");
        kiln_nix_drv_hasher_free(h2);
        free(d->input_drvs[4].outputs[0]);
        d->input_drvs[4].outputs[0] = strdup("nope");
        assert_error(
            kiln_nix_drv_hash_modulo(h, d, "dep", true, &res, &err), err, EINVAL,
            "input derivation /nix/store/v27a425rg4n7prwzpyyw0y1fw2ssc46f-multi.drv has no "
            "output 'nope'");
        kiln_nix_derivation_free(d);
        kiln_nix_drv_hasher_free(h);
}

/* A source where every derivation depends on the next: /nix/store/<i>-c.drv
 * → <i+1>, forever, or back to itself. */
static int chain_read(void *ctx, const struct kiln_nix_store_path *p,
                      struct kiln_nix_derivation **ret, struct kiln_error **err)
{
        bool loop = ctx != NULL;
        struct kiln_nix_store_path next = *p;
        if (!loop) {
                for (int i = KILN_NIX_PATH_DIGEST - 1; i >= 0; i--)
                        if (++next.digest[i])
                                break;
        }
        char *text =
            kiln_asprintf("Derive([(\"out\",\"\",\"\",\"\")],[(\"%s\",[\"out\"])],[],\"x\","
                          "\"b\",[],[])",
                          KILN_NIX_STORE_PATH_STR(&next));
        int r = kiln_nix_derivation_parse(text, strlen(text), ret, err);
        free(text);
        return r < 0 ? r : 1;
}

static void test_bad_graphs(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_nix_store_path start = drv_path_of("00000000000000000000000000000000-c.drv");
        const struct kiln_nix_drv_hash *res;

        struct kiln_nix_drv_source loop = {chain_read, (void *)1};
        struct kiln_nix_drv_hasher *h = kiln_nix_drv_hasher_new(&loop);
        assert_error(
            kiln_nix_drv_hash_path(h, &start, &res, &err), err, EINVAL,
            "derivation /nix/store/00000000000000000000000000000000-c.drv depends on itself");
        kiln_nix_drv_hasher_free(h);

        struct kiln_nix_drv_source chain = {chain_read, NULL};
        h = kiln_nix_drv_hasher_new(&chain);
        assert_error(kiln_nix_drv_hash_path(h, &start, &res, &err), err, EINVAL,
                     "input derivations nested deeper than 2048");
        kiln_nix_drv_hasher_free(h);

        struct kiln_nix_store_path nodrv = drv_path_of("00000000000000000000000000000000-c");
        h = kiln_nix_drv_hasher_new(&chain);
        assert_error(kiln_nix_drv_hash_path(h, &nodrv, &res, &err), err, EINVAL,
                     "is not a derivation (no .drv suffix)");
        kiln_nix_drv_hasher_free(h);

        /* Output kinds that cannot be mixed, and fixed outputs other than one "out". */
        static const struct {
                const char *text, *msg;
        } bad[] = {
            {"Derive([(\"a\",\"\",\"\",\"\"),(\"b\",\"/nix/store/"
             "00000000000000000000000000000000-x-b\","
             "\"\",\"\")],[],[],\"x\",\"b\",[],[])",
             "can't mix derivation output types"},
            {"Derive([(\"a\",\"/nix/store/q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"sha1\","
             "\"a9993e364706816aba3e25717850c26c9cd0d89d\")],[],[],\"x\",\"b\",[],[])",
             "single fixed output must be named \"out\""},
            {"Derive([(\"a\",\"/nix/store/q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"sha1\","
             "\"a9993e364706816aba3e25717850c26c9cd0d89d\"),(\"out\",\"/nix/store/"
             "q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"sha1\","
             "\"a9993e364706816aba3e25717850c26c9cd0d89d\")],[],[],\"x\",\"b\",[],[])",
             "only one fixed output is allowed"},
            {"Derive([(\"a\",\"\",\"sha1\",\"\"),(\"b\",\"\",\"sha256\",\"\")],[],[],\"x\",\"b\",[]"
             ",[])",
             "all floating outputs must use the same hash algorithm"},
        };
        struct mem_source none = {NULL, 0, 0};
        struct kiln_nix_drv_source nosrc = {mem_read, &none};
        h = kiln_nix_drv_hasher_new(&nosrc);
        for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
                struct kiln_nix_derivation *d = parse(bad[i].text);
                struct kiln_nix_drv_hash *r = NULL;
                assert_error(kiln_nix_drv_hash_modulo(h, d, "x", false, &r, &err), err, EINVAL,
                             bad[i].msg);
                kiln_nix_derivation_free(d);
        }
        kiln_nix_drv_hasher_free(h);
}

/* Floating and impure outputs (experimental in Nix 2.8) parse, print and
 * give deferred hashes; their paths are unknown. */
static void test_floating(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        static const char *const texts[] = {
            ("Derive([(\"out\",\"\",\"r:sha256\",\"\")],[],[],\"x\",\"b\",[],[(\"out\","
             "\"/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9\")])"),
            "Derive([(\"out\",\"\",\"sha512\",\"impure\")],[],[],\"x\",\"b\",[],[])",
            "Derive([(\"dev\",\"\",\"\",\"\"),(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
        };
        static const char *const json[] = {
            "{\n  \"outputs\": {\n    \"out\": {\n      \"hashAlgo\": \"r:sha256\"\n    }\n  },\n",
            ("{\n  \"outputs\": {\n    \"out\": {\n      \"hashAlgo\": \"sha512\",\n      "
             "\"impure\": true\n    }\n  },\n"),
            "{\n  \"outputs\": {\n    \"dev\": {},\n    \"out\": {}\n  },\n",
        };
        struct mem_source none = {NULL, 0, 0};
        struct kiln_nix_drv_source nosrc = {mem_read, &none};
        struct kiln_nix_drv_hasher *h = kiln_nix_drv_hasher_new(&nosrc);
        for (size_t i = 0; i < KILN_ARRAY_SIZE(texts); i++) {
                struct kiln_nix_derivation *d = parse(texts[i]);
                struct kiln_buf out = KILN_BUF_INIT;
                kiln_nix_derivation_print(d, &out);
                kiln_buf_append_byte(&out, 0);
                assert_string_equal((char *)out.data, texts[i]);
                kiln_buf_clear(&out);
                json_t *j = kiln_nix_derivation_to_json(d);
                kiln_nix_json_print(j, &out);
                json_decref(j);
                kiln_buf_append_byte(&out, 0);
                assert_memory_equal(out.data, json[i], strlen(json[i]));
                kiln_buf_done(&out);

                struct kiln_nix_drv_hash *hm = NULL;
                assert_ok(kiln_nix_drv_hash_modulo(h, d, "x", false, &hm, &err), err);
                assert_int_equal(hm->kind,
                                 i < 2 ? KILN_NIX_DRV_HASH_DEFERRED : KILN_NIX_DRV_HASH_REGULAR);
                kiln_nix_drv_hash_free(hm);
                struct kiln_nix_output_path paths[2];
                assert_ok(kiln_nix_drv_output_paths(h, d, "x", paths, &err), err);
                assert_int_equal(paths[0].known, i == 2);
                kiln_nix_derivation_free(d);
        }
        /* impure: sha256("impure") */
        struct kiln_nix_derivation *d = parse(texts[1]);
        struct kiln_nix_drv_hash *hm = NULL;
        assert_ok(kiln_nix_drv_hash_modulo(h, d, "x", false, &hm, &err), err);
        char *hex = test_hex(hm->outputs[0].sha256, 32);
        uint8_t want[32];
        kiln_nix_sha256("impure", 6, want);
        char *wanthex = test_hex(want, 32);
        assert_string_equal(hex, wanthex);
        free(hex);
        free(wanthex);
        kiln_nix_drv_hash_free(hm);
        kiln_nix_derivation_free(d);
        kiln_nix_drv_hasher_free(h);
}

/* derivationStrict's last step, done on a derivation whose outputs were
 * blanked: the result is the .drv Nix wrote. */
static void test_fill_outputs(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct mem_source m = {vectors, KILN_ARRAY_SIZE(vectors), 0};
        struct kiln_nix_drv_source src = {mem_read, &m};
        struct kiln_nix_drv_hasher *h = kiln_nix_drv_hasher_new(&src);
        static const char *const which[] = {"-dep.drv", "-multi.drv", "-structured.drv",
                                            "-rfod.drv", "-fod.drv"};
        for (size_t w = 0; w < KILN_ARRAY_SIZE(which); w++) {
                const struct vector *v = find(which[w]);
                struct kiln_nix_derivation *d = parse(v->text);
                char *name = NULL;
                struct kiln_nix_store_path self = drv_path_of(v->file);
                assert_ok(kiln_nix_drv_name_from_path(&self, &name, &err), err);
                for (size_t i = 0; i < d->n_outputs; i++) {
                        struct kiln_nix_drv_output *o = &d->outputs[i];
                        memset(&o->path, 0, sizeof(o->path));
                        if (o->kind == KILN_NIX_OUTPUT_INPUT_ADDRESSED)
                                o->kind = KILN_NIX_OUTPUT_DEFERRED;
                        for (size_t k = 0; k < d->n_env; k++)
                                if (!strcmp(d->env[k].name, o->name))
                                        d->env[k].value[0] = '\0';
                }
                assert_ok(kiln_nix_drv_fill_outputs(h, d, name, &err), err);
                struct kiln_buf out = KILN_BUF_INIT;
                kiln_nix_derivation_print(d, &out);
                kiln_buf_append_byte(&out, 0);
                assert_string_equal((char *)out.data, v->text);
                kiln_buf_done(&out);
                free(name);
                kiln_nix_derivation_free(d);
        }
        kiln_nix_drv_hasher_free(h);

        /* A missing output variable is added, in order. */
        struct kiln_nix_derivation *d = parse("Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\","
                                              "[],[(\"a\",\"1\"),(\"z\",\"2\")])");
        struct mem_source none = {NULL, 0, 0};
        struct kiln_nix_drv_source nosrc = {mem_read, &none};
        h = kiln_nix_drv_hasher_new(&nosrc);
        assert_ok(kiln_nix_drv_fill_outputs(h, d, "x", &err), err);
        assert_int_equal(d->n_env, 3);
        assert_string_equal(d->env[1].name, "out");
        assert_string_equal(d->env[1].value, KILN_NIX_STORE_PATH_STR(&d->outputs[0].path));
        assert_ok(kiln_nix_drv_check_outputs(h, d, "x", &err), err);
        /* and a wrong one is noticed */
        d->env[1].value[12] = d->env[1].value[12] == 'a' ? 'b' : 'a';
        assert_error(kiln_nix_drv_check_outputs(h, d, "x", &err), err, EINVAL,
                     "environment variable 'out' is not the output path");
        d->outputs[0].path.digest[0] ^= 1;
        assert_error(kiln_nix_drv_check_outputs(h, d, "x", &err), err, EINVAL,
                     "output 'out' has path");
        kiln_nix_drv_hasher_free(h);
        kiln_nix_derivation_free(d);
}

static void test_json(void **state)
{
        (void)state;
        /* What kiln nix show-derivation does: keys in path order. */
        const struct vector *vs[] = {find("-rfod.drv"), find("-structured.drv")};
        json_t *root = json_object();
        for (size_t i = 0; i < KILN_ARRAY_SIZE(vs); i++) {
                struct kiln_nix_derivation *d = parse(vs[i]->text);
                char *key = kiln_asprintf("/nix/store/%s", vs[i]->file);
                json_object_set_new(root, key, kiln_nix_derivation_to_json(d));
                free(key);
                kiln_nix_derivation_free(d);
        }
        struct kiln_buf out = KILN_BUF_INIT;
        kiln_nix_json_print(root, &out);
        kiln_buf_append(&out, "\n", 2);
        assert_string_equal((char *)out.data, show_json);
        kiln_buf_done(&out);
        json_decref(root);

        /* Nix's escaping: \uXXXX below 0x20 except \n \r \t, bytes >= 0x7f as
         * they are (not even UTF-8 checked), empty containers on one line. */
        json_t *j = json_object();
        json_object_set_new(j, "s",
                            json_stringn_nocheck("\x01\b\f\x1f\x7f\"\\\n\r\t\xff\xc3\xa9/", 14));
        json_object_set_new(j, "e", json_array());
        json_object_set_new(j, "o", json_object());
        json_object_set_new(j, "n", json_integer(-3));
        json_object_set_new(j, "f", json_false());
        json_object_set_new(j, "z", json_null());
        kiln_buf_clear(&out);
        kiln_nix_json_print(j, &out);
        kiln_buf_append_byte(&out, 0);
        assert_string_equal(
            (char *)out.data,
            "{\n  \"s\": \"\\u0001\\u0008\\u000c\\u001f\x7f\\\"\\\\\\n\\r\\t\xff\xc3\xa9/\",\n"
            "  \"e\": [],\n  \"o\": {},\n  \"n\": -3,\n  \"f\": false,\n  \"z\": null\n}");
        kiln_buf_done(&out);
        json_decref(j);
}

static const char good[] =
    "Derive([(\"out\",\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple\",\"\","
    "\"\")],[],[],\"x86_64-linux\",\"/bin/sh\",[\"a\"],[(\"k\",\"v\")])";

static void test_malformed(void **state)
{
        (void)state;
        static const struct {
                const char *text, *msg;
        } bad[] = {
            {"", "at byte 0: expected 'Derive([', found the end"},
            {"Derive[", "at byte 6: expected 'Derive([', found '['"},
            {"Derive([])", "at byte 8: a derivation needs at least one output"},
            {"Derive([(out", "at byte 9: expected '\"', found 'o'"},
            {"Derive([(\"out", "at byte 9: unterminated string in an output name"},
            {"Derive([(\"\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
             "at byte 10: empty output name"},
            {"Derive([(\"a\\\"\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
             "at byte 11: backslash in an output name, which Nix writes unescaped"},
            {"Derive([(\"out\",\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-simple\",\"\",\"\")"
             ",(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
             "output 'out' is repeated"},
            {"Derive([(\"b\",\"\",\"\",\"\"),(\"a\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
             "at byte 25: output 'a' is out of order"},
            {"Derive([(\"out\",\"/tmp/x\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
             "at byte 16: output 'out': path '/tmp/x' is not in the Nix store"},
            {"Derive([(\"out\",\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-sim "
             "ple\",\"\",\"\")],[],"
             "[],\"x\",\"b\",[],[])",
             "output 'out': invalid store path '7y1wrn35jk64pw06065h8gy41xgk7nz9-sim ple': invalid "
             "store path name"},
            {"Derive([(\"out\",\"\",\"\",\"ab\")],[],[],\"x\",\"b\",[],[])",
             "at byte 22: output 'out' has a hash but no hash algorithm"},
            /* From fuzz_aterm: the name is quoted, so the message stays one line. */
            {"Derive([(\"u\nt\",\"/tmp/x\",\"\",\"\")],[],[],\"x\",\"b\",[],[])",
             "output 'u\\x0at': path '/tmp/x' is not in the Nix store"},
            {"Derive([(\"out\",\"/nix/store/"
             "q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"sha3\",\"ab\")],"
             "[],[],\"x\",\"b\",[],[])",
             "at byte 66: output 'out': unknown hash algorithm 'sha3'"},
            {"Derive([(\"out\",\"/nix/store/"
             "q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"sha1\",\"ab\")],"
             "[],[],\"x\",\"b\",[],[])",
             "output 'out': invalid hash 'ab': wrong length for sha1"},
            {"Derive([(\"out\",\"/nix/store/q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"sha1\","
             "\"A9993E364706816ABA3E25717850C26C9CD0D89D\")],[],[],\"x\",\"b\",[],[])",
             "at byte 73: output 'out': hash is not lowercase base16"},
            {"Derive([(\"out\",\"\",\"sha1\",\"a9993e364706816aba3e25717850c26c9cd0d89d\")],[],[],"
             "\"x\","
             "\"b\",[],[])",
             "at byte 16: fixed output 'out' has no path"},
            {"Derive([(\"out\",\"/nix/store/q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod\",\"r:sha1\","
             "\"impure\")],[],[],\"x\",\"b\",[],[])",
             "output 'out' is impure but has a path"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[(\"/nix/store/"
             "7y1wrn35jk64pw06065h8gy41xgk7nz9-b.drv\","
             "[\"out\"]),(\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-a.drv\",[\"out\"])],[],"
             "\"x\",\"b\",[],[])",
             "input derivation '/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-a.drv' is out of "
             "order"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[(\"/nix/store/"
             "7y1wrn35jk64pw06065h8gy41xgk7nz9-a.drv\","
             "[\"out\",\"dev\"])],[],\"x\",\"b\",[],[])",
             "an input derivation output 'dev' is out of order"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[\"/nix/store/"
             "7y1wrn35jk64pw06065h8gy41xgk7nz9-a\","
             "\"/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-a\"],\"x\",\"b\",[],[])",
             "input source '/nix/store/7y1wrn35jk64pw06065h8gy41xgk7nz9-a' is repeated"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[\"/nix/store/x\"],\"x\",\"b\",[],[])",
             "an input source: invalid store path 'x'"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\\\\\",\"b\",[],[])",
             "backslash in the system"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\\a\",[],[])",
             "at byte 38: invalid escape '\\a' in the builder"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[\"a\nb\"],[])",
             "at byte 43: unescaped newline in an argument"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[\"a\tb\"],[])",
             "unescaped tab in an argument"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[\"a\rb\"],[])",
             "unescaped carriage return in an argument"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[,\"a\"],[])",
             "at byte 41: expected '\"', found ','"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[\"a\",],[])",
             "at byte 45: expected '\"', found ']'"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[(\"b\",\"1\"),(\"a\",\"2\")]"
             ")",
             "environment variable 'a' is out of order"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[(\"a\",\"1\"),(\"a\",\"2\")]"
             ")",
             "environment variable 'a' is repeated"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[(\"a\",\"1\")])\n",
             "at byte 55: trailing data after the derivation"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\",[],[(\"a\",\"1\")]",
             "at byte 54: expected ')', found the end"},
            {"Derive([(\"out\",\"\",\"\",\"\")], [],[],\"x\",\"b\",[],[])",
             "at byte 26: expected ',[', found ' '"},
            {"Derive([(\"out\",\"\",\"\",\"\")],[],[],\"x\",\"b\\",
             "unterminated string in the builder"},
        };
        struct kiln_error *err = NULL;
        struct kiln_nix_derivation *d = NULL;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(bad); i++) {
                int r = kiln_nix_derivation_parse(bad[i].text, strlen(bad[i].text), &d, &err);
                if (r >= 0)
                        fail_msg("case %zu parsed", i);
                assert_null(d);
                assert_int_equal(r, -EINVAL);
                if (!strstr(err->msg, bad[i].msg))
                        fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err->msg, bad[i].msg);
                if (strncmp(err->msg, "invalid derivation at byte ", 27) != 0)
                        fail_msg("case %zu: \"%s\" has no offset", i, err->msg);
                kiln_error_clear(&err);
        }
        /* NUL inside a string */
        char nul[sizeof(good)];
        memcpy(nul, good, sizeof(good));
        *strstr(nul, "\"v\"") = '\0';
        nul[strlen(nul)] = '"';
        memcpy(nul, good, sizeof(good));
        nul[strstr(good, "/bin/sh") - good + 1] = '\0';
        assert_error(kiln_nix_derivation_parse(nul, sizeof(good) - 1, &d, &err), err, EINVAL,
                     "NUL byte in the builder");

        /* Every prefix of a valid derivation fails cleanly. */
        for (size_t n = 0; n < sizeof(good) - 1; n++) {
                assert_int_equal(kiln_nix_derivation_parse(good, n, &d, &err), -EINVAL);
                kiln_error_clear(&err);
        }
        assert_ok(kiln_nix_derivation_parse(good, sizeof(good) - 1, &d, &err), err);
        kiln_nix_derivation_free(d);
}

static void test_read_file(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_nix_derivation *d = NULL;
        char dir[] = "/tmp/kiln-test-drv.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char *path = kiln_asprintf("%s/x.drv", dir);
        FILE *f = fopen(path, "w");
        fputs(good, f);
        fclose(f);
        assert_ok(kiln_nix_derivation_read_file(AT_FDCWD, path, &d, &err), err);
        kiln_nix_derivation_free(d);
        f = fopen(path, "a");
        fputs("x", f);
        fclose(f);
        char *msg =
            kiln_asprintf("x.drv: invalid derivation at byte %zu: trailing data", sizeof(good) - 1);
        assert_error(kiln_nix_derivation_read_file(AT_FDCWD, path, &d, &err), err, EINVAL, msg);
        free(msg);
        unlink(path);
        assert_error(kiln_nix_derivation_read_file(AT_FDCWD, path, &d, &err), err, ENOENT,
                     "unable to open derivation");
        assert_error(kiln_nix_derivation_read_file(AT_FDCWD, dir, &d, &err), err, EINVAL,
                     "is not a regular file");
        rmdir(dir);
        free(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_vectors),     cmocka_unit_test(test_model),
            cmocka_unit_test(test_hash_modulo), cmocka_unit_test(test_bad_graphs),
            cmocka_unit_test(test_floating),    cmocka_unit_test(test_fill_outputs),
            cmocka_unit_test(test_json),        cmocka_unit_test(test_malformed),
            cmocka_unit_test(test_read_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
