/* castore data model: digests, validation, canonical encoding, sizes, JSON. */
#include "testutil.h"

#include <kiln/util/base64.h>
#include <kiln/castore/castore.h>
#include <kiln/castore/json.h>
#include <kiln/build/build.h>
#include <kiln/util/url.h>

#include "castore.pb-c.h"

#define HEX_EMPTY "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"

static struct kiln_node dir_node(const char *name, struct kiln_digest d, uint64_t size)
{
        struct kiln_node n = {.kind = KILN_NODE_DIRECTORY, .digest = d, .size = size};
        kiln_node_set_name(&n, name, strlen(name));
        return n;
}

static struct kiln_node file_node(const char *name, struct kiln_digest d, uint64_t size, bool x)
{
        struct kiln_node n = {.kind = KILN_NODE_FILE, .digest = d, .size = size, .executable = x};
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

static void check_dir(struct kiln_directory *d, uint64_t want_size, const char *want_hex_bytes,
                      const char *want_digest_hex, const char *want_b64)
{
        struct kiln_error *err = NULL;
        assert_ok(kiln_directory_seal(d, &err), err);
        assert_int_equal(kiln_directory_size(d), want_size);

        struct kiln_buf b = KILN_BUF_INIT;
        kiln_directory_encode(d, &b);
        char *hex = test_hex(b.data, b.len);
        assert_string_equal(hex, want_hex_bytes);
        free(hex);

        struct kiln_digest dg;
        kiln_directory_digest(d, &b, &dg);
        assert_string_equal(KILN_DIGEST_HEX(&dg), want_digest_hex);
        assert_string_equal(KILN_DIGEST_B64(&dg), want_b64);

        /* Our encoding decodes back to the same Directory and digest. */
        struct kiln_buf enc = KILN_BUF_INIT;
        kiln_directory_encode(d, &enc);
        struct kiln_directory back;
        assert_ok(kiln_directory_decode(enc.data, enc.len, &back, &err), err);
        struct kiln_digest dg2;
        kiln_directory_digest(&back, NULL, &dg2);
        assert_true(kiln_digest_eq(&dg, &dg2));
        kiln_directory_done(&back);
        kiln_buf_done(&enc);
        kiln_buf_done(&b);
}

/* Builds the upstream fixture Directories with the reference size formula. */
struct fixtures {
        struct kiln_digest a, with_keep, b, c, d, complicated;
};

static void test_blob_vectors(void **state)
{
        (void)state;
        static const struct {
                const char *data;
                size_t len;
                const char *hex, *b64;
        } v[] = {
                {"", 0, HEX_EMPTY, "b3:rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI="},
                {"Hello World!", 12,
                 "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c",
                 "b3:XKeBWty0hOmhNsEe/mnB1TAXbVSbXRjQOOtSgLSzRww="},
                {"Hello World", 11,
                 "41f8394111eb713a22165c46c90ab8f0fd9399c92028fd6d288944b23ff5bf76", NULL},
                {"\x00\x01", 2, "7b7015bb92cf0b318037702a6cdd81dee41224f734684c2c122cd6359cb1ee63",
                 "b3:e3AVu5LPCzGAN3AqbN2B3uQSJPc0aEwsEizWNZyx7mM="},
                {"\x01\x02\x03", 3,
                 "b177ec1bf26dfb3b7010d473e6d44713b29b765b99c6e60ecbfae742de496543", NULL},
                {"\x04\x05", 2, "5f805527aa94f2a9a3a782cad8cc18b63cf6017e7bc65ca96aeada8392d4c525",
                 NULL},
        };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                struct kiln_digest d;
                kiln_digest_of(v[i].data, v[i].len, &d);
                assert_string_equal(KILN_DIGEST_HEX(&d), v[i].hex);
                if (v[i].b64)
                        assert_string_equal(KILN_DIGEST_B64(&d), v[i].b64);
        }

        /* BLOB_B: 0..254 repeated 4096 times */
        size_t n = 255 * 4096;
        uint8_t *p = malloc(n);
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)(i % 255);
        struct kiln_digest d;
        kiln_digest_of(p, n, &d);
        assert_string_equal(KILN_DIGEST_HEX(&d),
                            "a82c5154a7a0c262c6fdb929a317585646f8fbcf80326d0a7b8747edaf2d99d2");
        assert_string_equal(KILN_DIGEST_B64(&d), "b3:qCxRVKegwmLG/bkpoxdYVkb4+8+AMm0Ke4dH7a8tmdI=");
        free(p);
        assert_string_equal(KILN_DIGEST_HEX(&kiln_digest_empty), HEX_EMPTY);
}

static void test_digest_text(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_digest zero = {{0}}, d;
        assert_string_equal(KILN_DIGEST_B64(&zero), "b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        struct kiln_digest two = {{0x10}};
        assert_string_equal(KILN_DIGEST_B64(&two), "b3:EAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");

        assert_ok(kiln_digest_parse("b3:rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=", &d, &err), err);
        assert_true(kiln_digest_eq(&d, &kiln_digest_empty));
        /* unpadded, URL-safe, Snix prefix, hex (either case) */
        assert_ok(kiln_digest_parse("b3:rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI", &d, &err), err);
        assert_true(kiln_digest_eq(&d, &kiln_digest_empty));
        assert_ok(kiln_digest_parse("b3:qCxRVKegwmLG_bkpoxdYVkb4-8-AMm0Ke4dH7a8tmdI=", &d, &err), err);
        assert_ok(kiln_digest_parse("blake3-rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=", &d, &err),
                  err);
        assert_true(kiln_digest_eq(&d, &kiln_digest_empty));
        assert_ok(kiln_digest_parse(HEX_EMPTY, &d, &err), err);
        assert_ok(kiln_digest_parse("AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262",
                                    &d, &err),
                  err);
        assert_true(kiln_digest_eq(&d, &kiln_digest_empty));

        assert_error(kiln_digest_parse("b3:AAAA", &d, &err), err, EINVAL, "3 bytes, expected 32");
        assert_error(kiln_digest_parse("b3:rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQf!mI=", &d, &err),
                     err, EINVAL, "not valid base64");
        assert_error(kiln_digest_parse("af1349b9", &d, &err), err, EINVAL, "expected b3:");
        assert_error(kiln_digest_parse("zz1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
                                       &d, &err),
                     err, EINVAL, "not hex");
        assert_error(kiln_digest_parse("", &d, &err), err, EINVAL, "invalid digest");
        assert_error(kiln_digest_from_bytes("ab", 2, &d, &err), err, EINVAL,
                     "invalid digest length: 2");
}

static void build_fixtures(struct fixtures *f, struct kiln_directory *keep_out)
{
        struct kiln_directory a = KILN_DIRECTORY_INIT;
        check_dir(&a, 0, "", HEX_EMPTY, "b3:rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=");
        kiln_directory_digest(&a, NULL, &f->a);

        struct kiln_directory wk = KILN_DIRECTORY_INIT;
        add(&wk, file_node(".keep", kiln_digest_empty, 0, false));
        check_dir(&wk, 2, "12290a052e6b6565701220" HEX_EMPTY,
                  "8b5b5d642b646bb8ed504b0862c39413e87e57491497de7bd075953f7b83810e",
                  "b3:i1tdZCtka7jtUEsIYsOUE+h+V0kUl9570HWVP3uDgQ4=");
        kiln_directory_digest(&wk, NULL, &f->with_keep);

        struct kiln_directory b = KILN_DIRECTORY_INIT;
        add(&b, dir_node("a", f->a, 0));
        check_dir(&b, 2, "0a250a01611220" HEX_EMPTY,
                  "8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc",
                  "b3:hwH0ci2Nrn8sQPoAMzG4Q3o4Jfnhv9OneZjGTMImucw=");
        kiln_directory_digest(&b, NULL, &f->b);

        struct kiln_directory c = KILN_DIRECTORY_INIT;
        add(&c, dir_node("a'", f->a, 0)); /* added out of order on purpose */
        add(&c, dir_node("a", f->a, 0));
        check_dir(&c, 4, "0a250a01611220" HEX_EMPTY "0a260a0261271220" HEX_EMPTY,
                  "78eb200ae0cc95d4ea954655fbcf91e285013a261310e161927f2401d2bca803",
                  "b3:eOsgCuDMldTqlUZV+8+R4oUBOiYTEOFhkn8kAdK8qAM=");
        kiln_directory_digest(&c, NULL, &f->c);

        struct kiln_directory d = KILN_DIRECTORY_INIT;
        add(&d, dir_node("a", f->a, 0));
        add(&d, dir_node("b", f->b, 2));
        check_dir(&d, 6,
                  "0a250a01611220" HEX_EMPTY
                  "0a270a01621220"
                  "8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc"
                  "1802",
                  "76cd8b55b37333961c1778ba997e57df92e219926ae5a66c414b810331a77603",
                  "b3:ds2LVbNzM5YcF3i6mX5X35LiGZJq5aZsQUuBAzGndgM=");
        kiln_directory_digest(&d, NULL, &f->d);

        struct kiln_directory x = KILN_DIRECTORY_INIT;
        add(&x, link_node("aa", "/nix/store/somewhereelse"));
        add(&x, file_node(".keep", kiln_digest_empty, 0, false));
        add(&x, dir_node("keep", f->with_keep, 2));
        check_dir(&x, 8,
                  "0a2a0a046b6565701220"
                  "8b5b5d642b646bb8ed504b0862c39413e87e57491497de7bd075953f7b83810e"
                  "1802"
                  "12290a052e6b6565701220" HEX_EMPTY
                  "1a1e0a02616112182f6e69782f73746f72652f736f6d657768657265656c7365",
                  "424a7f6ce08d805d15b428062faae96299a1675d708c3a39261afe38cdd04feb",
                  "b3:Qkp/bOCNgF0VtCgGL6rpYpmhZ11wjDo5Jhr+OM3QT+s=");
        kiln_directory_digest(&x, NULL, &f->complicated);

        if (keep_out)
                kiln_directory_copy(keep_out, &x);
        kiln_directory_done(&a);
        kiln_directory_done(&wk);
        kiln_directory_done(&b);
        kiln_directory_done(&c);
        kiln_directory_done(&d);
        kiln_directory_done(&x);
}

static void test_fixture_directories(void **state)
{
        (void)state;
        struct fixtures f;
        build_fixtures(&f, NULL);
}

/* The documented formula gives other sizes (and so other digests for D and
 * COMPLICATED); both formulas are available at run time for this check. */
static void test_size_formulas(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct fixtures f;
        struct kiln_directory x = KILN_DIRECTORY_INIT;
        build_fixtures(&f, &x);
        uint64_t s;
        assert_ok(kiln_directory_size_with(&x, KILN_SIZE_REF, &s, &err), err);
        assert_int_equal(s, 8);
        /* doc: 3 entries + child size; child WITH_KEEP is 1 under doc */
        kiln_directory_done(&x);

        struct kiln_directory d = KILN_DIRECTORY_INIT;
        add(&d, dir_node("a", f.a, 0));
        add(&d, dir_node("b", f.b, 1)); /* size(B) under doc */
        assert_ok(kiln_directory_seal(&d, &err), err);
        assert_ok(kiln_directory_size_with(&d, KILN_SIZE_DOC, &s, &err), err);
        assert_int_equal(s, 3);
        struct kiln_digest dg;
        kiln_directory_digest(&d, NULL, &dg);
        assert_string_equal(KILN_DIGEST_HEX(&dg),
                            "99922a5c1801805287a647af73bca0ed7352a5f7f373e54992795bcc4a235213");
        kiln_directory_done(&d);

        struct kiln_directory wk = KILN_DIRECTORY_INIT;
        add(&wk, file_node(".keep", kiln_digest_empty, 0, false));
        struct kiln_directory cx = KILN_DIRECTORY_INIT;
        add(&cx, link_node("aa", "/nix/store/somewhereelse"));
        add(&cx, file_node(".keep", kiln_digest_empty, 0, false));
        add(&cx, dir_node("keep", f.with_keep, 1));
        assert_ok(kiln_directory_seal(&cx, &err), err);
        assert_ok(kiln_directory_size_with(&cx, KILN_SIZE_DOC, &s, &err), err);
        assert_int_equal(s, 4);
        kiln_directory_digest(&cx, NULL, &dg);
        assert_string_equal(KILN_DIGEST_HEX(&dg),
                            "3f951a15afd586fb3121ef4d13d582e811ce0e5a7f21c0497fd87490e9e2355a");
        kiln_directory_done(&cx);
        kiln_directory_done(&wk);

        /* size vectors of the documented helper */
        struct {
                uint64_t child[2];
                size_t n;
                enum kiln_node_kind kind;
                bool overflow;
                uint64_t want;
        } v[] = {
                {{0}, 0, KILN_NODE_DIRECTORY, false, 0},
                {{0}, 1, KILN_NODE_DIRECTORY, false, 1},
                {{4}, 1, KILN_NODE_DIRECTORY, false, 5},
                {{0}, 1, KILN_NODE_FILE, false, 1},
                {{0}, 1, KILN_NODE_SYMLINK, false, 1},
                {{UINT64_MAX - 1}, 1, KILN_NODE_DIRECTORY, false, UINT64_MAX},
                {{UINT64_MAX}, 1, KILN_NODE_DIRECTORY, true, 0},
                {{UINT64_MAX / 2, UINT64_MAX / 2}, 2, KILN_NODE_DIRECTORY, true, 0},
        };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                struct kiln_directory t = KILN_DIRECTORY_INIT;
                for (size_t j = 0; j < v[i].n; j++) {
                        char name[2] = {(char)('a' + j), 0};
                        if (v[i].kind == KILN_NODE_DIRECTORY)
                                add(&t, dir_node(name, f.a, v[i].child[j]));
                        else if (v[i].kind == KILN_NODE_FILE)
                                add(&t, file_node(name, f.a, 0, false));
                        else
                                add(&t, link_node(name, "x"));
                }
                if (v[i].overflow) {
                        assert_error(kiln_directory_size_with(&t, KILN_SIZE_DOC, &s, &err), err,
                                     EOVERFLOW, "total size exceeds u64::MAX");
                } else {
                        assert_ok(kiln_directory_size_with(&t, KILN_SIZE_DOC, &s, &err), err);
                        assert_int_equal(s, v[i].want);
                }
                kiln_directory_done(&t);
        }

        /* The reference formula rejects a directory entry of size u64::MAX,
         * both when sealing and when decoding. */
        struct kiln_directory big = KILN_DIRECTORY_INIT;
        add(&big, dir_node("a", f.a, UINT64_MAX));
        assert_error(kiln_directory_seal(&big, &err), err, EOVERFLOW, "total size exceeds");
        struct kiln_buf enc = KILN_BUF_INIT;
        kiln_directory_encode(&big, &enc);
        struct kiln_directory back;
        assert_error(kiln_directory_decode(enc.data, enc.len, &back, &err), err, EOVERFLOW,
                     "total size exceeds u64::MAX");
        kiln_buf_done(&enc);
        kiln_directory_done(&big);
}

/* --- validating received Directories, encoded by protobuf-c --- */

struct wire {
        Tvix__Castore__V1__Directory d;
        Tvix__Castore__V1__DirectoryNode dn[4], *dnp[4];
        Tvix__Castore__V1__FileNode fn[4], *fnp[4];
        Tvix__Castore__V1__SymlinkNode sn[4], *snp[4];
        uint8_t digest[32];
};

static void wire_init(struct wire *w)
{
        memset(w, 0, sizeof(*w));
        tvix__castore__v1__directory__init(&w->d);
        w->d.directories = w->dnp;
        w->d.files = w->fnp;
        w->d.symlinks = w->snp;
        memcpy(w->digest, kiln_digest_empty.b, 32);
}

static ProtobufCBinaryData bin(const void *p, size_t n)
{
        return (ProtobufCBinaryData){.len = n, .data = (uint8_t *)p};
}

static void wire_dir(struct wire *w, const void *name, size_t nlen, size_t dlen)
{
        Tvix__Castore__V1__DirectoryNode *n = &w->dn[w->d.n_directories];
        tvix__castore__v1__directory_node__init(n);
        n->name = bin(name, nlen);
        n->digest = bin(w->digest, dlen);
        w->dnp[w->d.n_directories++] = n;
}

static void wire_file(struct wire *w, const void *name, size_t nlen)
{
        Tvix__Castore__V1__FileNode *n = &w->fn[w->d.n_files];
        tvix__castore__v1__file_node__init(n);
        n->name = bin(name, nlen);
        n->digest = bin(w->digest, 32);
        w->fnp[w->d.n_files++] = n;
}

static void wire_link(struct wire *w, const void *name, size_t nlen, const char *target)
{
        Tvix__Castore__V1__SymlinkNode *n = &w->sn[w->d.n_symlinks];
        tvix__castore__v1__symlink_node__init(n);
        n->name = bin(name, nlen);
        n->target = bin(target, strlen(target));
        w->snp[w->d.n_symlinks++] = n;
}

static int wire_decode(struct wire *w, struct kiln_directory *ret, struct kiln_error **err)
{
        size_t n = tvix__castore__v1__directory__get_packed_size(&w->d);
        uint8_t *buf = malloc(n ? n : 1);
        tvix__castore__v1__directory__pack(&w->d, buf);
        int r = kiln_directory_decode(buf, n, ret, err);
        free(buf);
        return r;
}

static void expect_reject(struct wire *w, const char *needle)
{
        struct kiln_error *err = NULL;
        struct kiln_directory d;
        assert_error(wire_decode(w, &d, &err), err, EINVAL, needle);
}

static void expect_accept(struct wire *w)
{
        struct kiln_error *err = NULL;
        struct kiln_directory d;
        assert_ok(wire_decode(w, &d, &err), err);
        kiln_directory_done(&d);
}

static void test_validation_cases(void **state)
{
        (void)state;
        struct wire w;
        char big[500];
        memset(big, 'x', sizeof(big));

        wire_init(&w);
        wire_dir(&w, "\0", 1, 32);
        expect_reject(&w, "cannot contain null bytes");
        wire_init(&w);
        wire_dir(&w, ".", 1, 32);
        expect_reject(&w, "cannot be '.'");
        wire_init(&w);
        wire_file(&w, "..", 2);
        expect_reject(&w, "cannot be '..'");
        wire_init(&w);
        wire_link(&w, "\x00", 1, "doesntmatter");
        expect_reject(&w, "cannot contain null bytes");
        wire_init(&w);
        wire_link(&w, "foo/bar", 7, "doesntmatter");
        expect_reject(&w, "cannot contain slashes");
        wire_init(&w);
        wire_link(&w, big, sizeof(big), "doesntmatter");
        expect_reject(&w, "cannot be over 255 bytes long");
        wire_init(&w);
        wire_dir(&w, "foo", 3, 2);
        expect_reject(&w, "invalid digest length: 2");
        wire_init(&w);
        wire_dir(&w, "b", 1, 32);
        wire_dir(&w, "a", 1, 32);
        expect_reject(&w, "\"a\" is not sorted");
        wire_init(&w);
        wire_dir(&w, "a", 1, 32);
        wire_dir(&w, "a", 1, 32);
        expect_reject(&w, "\"a\" is a duplicate name");
        wire_init(&w);
        wire_dir(&w, "a", 1, 32);
        wire_link(&w, "a", 1, "x");
        expect_reject(&w, "\"a\" is a duplicate name");
        wire_init(&w);
        wire_file(&w, "", 0);
        expect_reject(&w, "cannot be empty");
        wire_init(&w);
        wire_link(&w, "l", 1, "");
        expect_reject(&w, "symlink target: cannot be empty");
        wire_init(&w);
        char longtarget[4097];
        memset(longtarget, 'a', 4096);
        longtarget[4096] = 0;
        wire_link(&w, "l", 1, longtarget);
        expect_reject(&w, "cannot be over 4095 bytes long");
        /* order checks come before node checks: a bad digest after an
         * unsorted list reports the sorting */
        wire_init(&w);
        wire_dir(&w, "x", 1, 3);
        wire_file(&w, "b", 1);
        wire_file(&w, "a", 1);
        expect_reject(&w, "\"a\" is not sorted");
        /* node checks run per entry before that entry's name */
        wire_init(&w);
        wire_dir(&w, "a/b", 3, 3);
        expect_reject(&w, "invalid digest length: 3");

        wire_init(&w);
        expect_accept(&w);
        wire_init(&w);
        wire_dir(&w, "a", 1, 32);
        wire_dir(&w, "b", 1, 32);
        expect_accept(&w);
        wire_init(&w);
        wire_dir(&w, "b", 1, 32);
        wire_dir(&w, "c", 1, 32);
        wire_link(&w, "a", 1, "x");
        expect_accept(&w);
        /* odd but valid names and targets */
        wire_init(&w);
        wire_file(&w, " \\\x01\xff", 4);
        wire_file(&w, "...", 3);
        wire_file(&w, ".keep", 5);
        wire_link(&w, "t", 1, "/a/../b/./c");
        expect_accept(&w);
}

static void test_nodes(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_node n = file_node("f", kiln_digest_empty, 3, true), back;
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_node_encode(&n, &b);
        assert_ok(kiln_node_decode(b.data, b.len, KILN_NODE_NAMED, &back, &err), err);
        assert_true(kiln_node_eq(&n, &back));
        kiln_node_done(&back);
        assert_error(kiln_node_decode(b.data, b.len, KILN_NODE_ANONYMOUS, &back, &err), err,
                     EINVAL, "Name is set when it shouldn't");
        kiln_buf_done(&b);
        kiln_node_done(&n);

        /* protobuf-c packing of a Node equals ours */
        Tvix__Castore__V1__Node pn = TVIX__CASTORE__V1__NODE__INIT;
        Tvix__Castore__V1__SymlinkNode ps = TVIX__CASTORE__V1__SYMLINK_NODE__INIT;
        ps.target = bin("t", 1);
        pn.node_case = TVIX__CASTORE__V1__NODE__NODE_SYMLINK;
        pn.symlink = &ps;
        uint8_t packed[64];
        size_t plen = tvix__castore__v1__node__pack(&pn, packed);
        struct kiln_node sl = {.kind = KILN_NODE_SYMLINK, .target = {(uint8_t *)"t", 1}};
        kiln_node_encode(&sl, &b);
        assert_int_equal(b.len, plen);
        assert_memory_equal(b.data, packed, plen);
        assert_ok(kiln_node_decode(packed, plen, KILN_NODE_ANONYMOUS, &back, &err), err);
        assert_true(kiln_node_eq(&sl, &back));
        kiln_node_done(&back);
        kiln_buf_done(&b);

        /* no oneof member */
        Tvix__Castore__V1__Node empty = TVIX__CASTORE__V1__NODE__INIT;
        plen = tvix__castore__v1__node__pack(&empty, packed);
        assert_error(kiln_node_decode(packed, plen, KILN_NODE_ANONYMOUS, &back, &err), err,
                     EINVAL, "No node set");
        /* garbage */
        assert_error(kiln_node_decode("\xff\xff\xff", 3, KILN_NODE_ANONYMOUS, &back, &err), err,
                     EINVAL, "not a valid protobuf");
}

/* Decoders accept any valid encoding: fields out of order, unknown fields,
 * non-minimal varints; the digest comes from the canonical re-encoding. */
static void test_noncanonical_decode(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct fixtures f;
        build_fixtures(&f, NULL);

        /* DIRECTORY_D with: the b entry first in the stream (directories
         * still sorted within the list requires a before b, so instead put
         * an unknown field first), the size as a 3-byte varint, and the
         * DirectoryNode's fields reversed. */
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_buf_append(&b, "\x78\x05", 2); /* unknown varint field 15 = 5 */
        /* a -> A, fields reversed: digest then name */
        kiln_buf_append(&b, "\x0a\x25", 2);
        kiln_buf_append(&b, "\x12\x20", 2);
        kiln_buf_append(&b, f.a.b, 32);
        kiln_buf_append(&b, "\x0a\x01" "a", 3);
        /* b -> B size 2 as non-minimal varint 0x82 0x80 0x00 */
        kiln_buf_append(&b, "\x0a\x29", 2);
        kiln_buf_append(&b, "\x18\x82\x80\x00", 4);
        kiln_buf_append(&b, "\x0a\x01" "b", 3);
        kiln_buf_append(&b, "\x12\x20", 2);
        kiln_buf_append(&b, f.b.b, 32);
        struct kiln_directory d;
        assert_ok(kiln_directory_decode(b.data, b.len, &d, &err), err);
        struct kiln_digest dg;
        kiln_directory_digest(&d, NULL, &dg);
        assert_true(kiln_digest_eq(&dg, &f.d));
        kiln_directory_done(&d);
        kiln_buf_done(&b);
}

static void test_json(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct fixtures f;
        struct kiln_directory x = KILN_DIRECTORY_INIT;
        build_fixtures(&f, &x);

        /* struct -> JSON -> struct -> protobuf: same digest */
        json_t *j = kiln_directory_to_json(&x);
        char *s = kiln_json_dumps(j);
        assert_string_equal(
                s, "{\"directories\":[{\"name\":\"a2VlcA==\",\"digest\":"
                   "\"i1tdZCtka7jtUEsIYsOUE+h+V0kUl9570HWVP3uDgQ4=\",\"size\":\"2\"}],"
                   "\"files\":[{\"name\":\"LmtlZXA=\",\"digest\":"
                   "\"rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=\"}],"
                   "\"symlinks\":[{\"name\":\"YWE=\",\"target\":"
                   "\"L25peC9zdG9yZS9zb21ld2hlcmVlbHNl\"}]}");
        struct kiln_directory back;
        assert_ok(kiln_directory_from_json(j, &back, &err), err);
        struct kiln_digest dg;
        kiln_directory_digest(&back, NULL, &dg);
        assert_true(kiln_digest_eq(&dg, &f.complicated));
        kiln_directory_done(&back);
        json_decref(j);
        free(s);

        /* Node round trip, with executable and a 64-bit size */
        struct kiln_node n = file_node("x", kiln_digest_empty, UINT64_MAX, true), nb;
        j = kiln_node_to_json(&n);
        s = kiln_json_dumps(j);
        assert_string_equal(s, "{\"file\":{\"name\":\"eA==\",\"digest\":"
                               "\"rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=\","
                               "\"size\":\"18446744073709551615\",\"executable\":true}}");
        assert_ok(kiln_node_from_json(j, KILN_NODE_NAMED, &nb, &err), err);
        assert_true(kiln_node_eq(&n, &nb));
        kiln_node_done(&nb);
        json_decref(j);
        free(s);
        kiln_node_done(&n);

        /* Parser leniency: numbers, URL-safe unpadded base64 */
        assert_ok(kiln_node_parse_arg("{\"directory\":{\"digest\":"
                                      "\"rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI\",\"size\":7}}",
                                      &nb, &err),
                  err);
        assert_int_equal(nb.kind, KILN_NODE_DIRECTORY);
        assert_int_equal(nb.size, 7);
        kiln_node_done(&nb);
        assert_ok(kiln_node_parse_arg("b3:rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=", &nb, &err),
                  err);
        assert_true(kiln_digest_eq(&nb.digest, &kiln_digest_empty));

        /* Errors name what is wrong */
        assert_error(kiln_node_parse_arg("{\"file\":{\"digest\":\"AAAA\"}}", &nb, &err), err,
                     EINVAL, "invalid digest length: 3");
        assert_error(kiln_node_parse_arg("{\"file\":{\"digest\":\"**\"}}", &nb, &err), err,
                     EINVAL, "field digest: invalid base64");
        assert_error(kiln_node_parse_arg("{\"file\":{\"bogus\":1}}", &nb, &err), err, EINVAL,
                     "unknown field \"bogus\"");
        assert_error(kiln_node_parse_arg("{}", &nb, &err), err, EINVAL, "No node set");
        assert_error(kiln_node_parse_arg("{\"file\":{},\"symlink\":{}}", &nb, &err), err, EINVAL,
                     "more than one node set");
        assert_error(kiln_node_parse_arg("{\"symlink\":{\"target\":\"eA==\",\"name\":\"eA==\"}}",
                                         &nb, &err),
                     err, EINVAL, "Name is set when it shouldn't");
        assert_error(kiln_node_parse_arg("{\"file\":{\"size\":\"-1\"}}", &nb, &err), err, EINVAL,
                     "field size");
        assert_error(kiln_node_parse_arg("not json", &nb, &err), err, EINVAL, "invalid node");
        json_t *bad = json_loads("{\"directories\":[{\"name\":\"Yg==\",\"digest\":"
                                 "\"rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=\"},"
                                 "{\"name\":\"YQ==\",\"digest\":"
                                 "\"rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=\"}]}",
                                 0, NULL);
        assert_error(kiln_directory_from_json(bad, &back, &err), err, EINVAL,
                     "\"a\" is not sorted");
        json_decref(bad);
        kiln_directory_done(&x);
}

/* Regressions from fuzz_url and fuzz_json: input quoted in a message used to
 * carry its line breaks into it. */
static void test_messages_one_line(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_digest d;
        assert_error(kiln_digest_parse("b3\nC", &d, &err), err, EINVAL,
                     "invalid digest 'b3\\x0aC': expected b3:<base64>");
        struct kiln_url u;
        assert_error(kiln_url_parse("m\n", &u, &err), err, EINVAL, "invalid URL 'm\\x0a'");
        json_t *j = json_loads("{\"directories\":[],\"a\\nb\":1}", 0, NULL);
        assert_non_null(j);
        struct kiln_directory dir = {0};
        assert_error(kiln_directory_from_json(j, &dir, &err), err, EINVAL,
                     "unknown field \"a\\x0ab\"");
        json_decref(j);
        /* An empty message encodes to nothing (the buffer had no memory yet). */
        struct kiln_build_request q = {0};
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_build_request_encode(&q, &b);
        assert_int_equal(b.len, 0);
        assert_true(kiln_utf8_valid(NULL, 0));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_messages_one_line),
                cmocka_unit_test(test_blob_vectors),
                cmocka_unit_test(test_digest_text),
                cmocka_unit_test(test_fixture_directories),
                cmocka_unit_test(test_size_formulas),
                cmocka_unit_test(test_validation_cases),
                cmocka_unit_test(test_nodes),
                cmocka_unit_test(test_noncanonical_decode),
                cmocka_unit_test(test_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
