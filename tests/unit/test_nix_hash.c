/* Nix hashes: digests (RFC vectors, as Nix's own tests use), nixbase32, the
 * text forms and their parsers, with each kind of bad input. */
#include "testutil.h"

#include <kiln/nix/hash.h>
#include <kiln/nix/nixbase32.h>

static const char long1[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
static const char long2[] =
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklm"
    "nopqklmnopqrlmnopqrsmnopqrstnopqrstu";

static void check_digest(enum kiln_nix_hash_algo algo, const char *in, const char *want)
{
        struct kiln_nix_hash h;
        kiln_nix_hash_of(algo, in, strlen(in), &h);
        assert_string_equal(KILN_NIX_HASH_STR(&h, KILN_NIX_BASE16, true), want);

        /* Streaming, one byte at a time, twice through the same context. */
        struct kiln_nix_hasher s;
        kiln_nix_hasher_init(&s, algo);
        for (int round = 0; round < 2; round++) {
                for (size_t i = 0; in[i]; i++)
                        kiln_nix_hasher_update(&s, in + i, 1);
                struct kiln_nix_hash h2;
                kiln_nix_hasher_final(&s, &h2);
                assert_true(kiln_nix_hash_eq(&h, &h2));
        }
        kiln_nix_hasher_done(&s);
        kiln_nix_hasher_done(&s); /* idempotent */
}

static void test_digests(void **state)
{
        (void)state;
        check_digest(KILN_NIX_HASH_MD5, "", "md5:d41d8cd98f00b204e9800998ecf8427e");
        check_digest(KILN_NIX_HASH_MD5, "abc", "md5:900150983cd24fb0d6963f7d28e17f72");
        check_digest(KILN_NIX_HASH_SHA1, "abc", "sha1:a9993e364706816aba3e25717850c26c9cd0d89d");
        check_digest(KILN_NIX_HASH_SHA1, long1, "sha1:84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        check_digest(KILN_NIX_HASH_SHA256, "abc",
                     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        check_digest(KILN_NIX_HASH_SHA256, long1,
                     "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        check_digest(
            KILN_NIX_HASH_SHA512, "abc",
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a2"
            "74fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
        check_digest(
            KILN_NIX_HASH_SHA512, long2,
            "sha512:8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4"
            "900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909");
}

static void test_formats(void **state)
{
        (void)state;
        struct kiln_nix_hash h;
        kiln_nix_hash_of(KILN_NIX_HASH_SHA256, "abc", 3, &h);
        assert_string_equal(KILN_NIX_HASH_STR(&h, KILN_NIX_NIXBASE32, true),
                            "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
        assert_string_equal(KILN_NIX_HASH_STR(&h, KILN_NIX_NIXBASE32, false),
                            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
        assert_string_equal(KILN_NIX_HASH_STR(&h, KILN_NIX_BASE64, false),
                            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        assert_string_equal(KILN_NIX_HASH_STR(&h, KILN_NIX_SRI, false),
                            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        assert_string_equal(KILN_NIX_HASH_STR(&h, KILN_NIX_SRI, true),
                            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        char *s = kiln_nix_hash_to_string(&h, KILN_NIX_BASE64, true);
        assert_string_equal(s, "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        free(s);

        kiln_nix_hash_of(KILN_NIX_HASH_SHA512, "abc", 3, &h);
        assert_string_equal(
            KILN_NIX_HASH_STR(&h, KILN_NIX_NIXBASE32, true),
            "sha512:2gs8k559z4rlahfx0y688s49m2vvszylcikrfinm30ly9rak69236nkam5ydvly1ai7"
            "xac99vxfc4ii84hawjbk876blyk1jfhkbbyx");
        assert_int_equal(strlen(KILN_NIX_HASH_STR(&h, KILN_NIX_BASE16, true)),
                         KILN_NIX_HASH_STR_MAX - 1);
        assert_int_equal(kiln_nix_hash_algo_size(KILN_NIX_HASH_SHA1), 20);
        assert_string_equal(kiln_nix_hash_algo_name(KILN_NIX_HASH_NONE), "none");
}

static void test_nixbase32_vectors(void **state)
{
        (void)state;
        char out[128];
        uint8_t zero[20] = {0};
        kiln_nixbase32_encode(zero, 20, out);
        assert_string_equal(out, "00000000000000000000000000000000");
        kiln_nixbase32_encode((uint8_t[]){0x1f}, 1, out);
        assert_string_equal(out, "0z");
        kiln_nixbase32_encode((uint8_t[]){0xff, 0x00}, 2, out);
        assert_string_equal(out, "007z");
        assert_int_equal(kiln_nixbase32_encode(NULL, 0, out), 0);
        assert_string_equal(out, "");
        assert_int_equal(kiln_nixbase32_len(20), 32);
        assert_int_equal(kiln_nixbase32_len(32), 52);
        assert_int_equal(kiln_nixbase32_len(64), 103);
        assert_true(kiln_nixbase32_is_char('z'));
        assert_false(kiln_nixbase32_is_char('e'));
        assert_false(kiln_nixbase32_is_char('E'));

        /* passAsFile names and placeholders. */
        static const struct {
                const char *in, *want;
        } v[] = {
            {"bar", "1fcgpy7vc4ammr7s17j2xq88scswkgz23dqzc04g8sx5vcp2pppw"},
            {"baz", "15l04iksj1280dvhbzdq9ai3wlf8ac2188m9qv0gn81k9nba19ds"},
            {"nix-output:out", "1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"},
            {"nix-output:non-existent", "1zwrijlc0ixcpdjslshwq3nd28rbbmp6812lh5c49ifrcc3gk3mz"},
            {"nix-output:dev", "02qcpld1y6xhs5gz9bchpxaw0xdhmsp5dv88lh25r2ss44kh8dxz"},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(v); i++) {
                uint8_t h[32];
                kiln_nix_sha256(v[i].in, strlen(v[i].in), h);
                kiln_nixbase32_encode(h, 32, out);
                assert_string_equal(out, v[i].want);
        }
}

static void test_nixbase32_round_trip(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        uint8_t in[70], back[70];
        char text[128];
        for (size_t n = 1; n <= sizeof(in); n++) {
                for (size_t i = 0; i < n; i++)
                        in[i] = (uint8_t)(i * 37 + n * 11 + 0xa5);
                size_t len = kiln_nixbase32_encode(in, n, text);
                assert_int_equal(len, kiln_nixbase32_len(n));
                assert_ok(kiln_nixbase32_decode(text, len, back, n, &err), err);
                assert_memory_equal(in, back, n);
        }
        /* All ones: the top character is the largest allowed. */
        memset(in, 0xff, 20);
        kiln_nixbase32_encode(in, 20, text);
        assert_string_equal(text, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
        memset(in, 0xff, 1);
        kiln_nixbase32_encode(in, 1, text);
        assert_string_equal(text, "7z");
}

static void test_nixbase32_errors(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        uint8_t out[32];
        assert_error(kiln_nixbase32_decode("000", 3, out, 1, &err), err, EINVAL,
                     "wrong length: 3 nixbase32 characters, expected 2");
        assert_error(kiln_nixbase32_decode("0e", 2, out, 1, &err), err, EINVAL,
                     "invalid nixbase32 character 'e'");
        assert_error(kiln_nixbase32_decode("0E", 2, out, 1, &err), err, EINVAL,
                     "invalid nixbase32 character 'E'");
        assert_error(kiln_nixbase32_decode("0\n", 2, out, 1, &err), err, EINVAL,
                     "invalid nixbase32 character '\\x0a'");
        /* 8 = 0b01000 in the top group of one byte: bit 8 does not exist. */
        assert_error(kiln_nixbase32_decode("80", 2, out, 1, &err), err, EINVAL,
                     "nixbase32 value does not fit in 1 bytes");
        /* 52 characters hold 260 bits: the top one may only be 0 or 1. */
        char big[53];
        memset(big, 'z', 52);
        big[0] = '2';
        big[52] = '\0';
        assert_error(kiln_nixbase32_decode(big, 52, out, 32, &err), err, EINVAL,
                     "does not fit in 32 bytes");
        big[0] = '1';
        assert_ok(kiln_nixbase32_decode(big, 52, out, 32, &err), err);
}

static void check_parse(const char *s, enum kiln_nix_hash_algo algo, const char *want_hex)
{
        struct kiln_error *err = NULL;
        struct kiln_nix_hash h;
        assert_ok(kiln_nix_hash_parse(s, algo, &h, &err), err);
        assert_string_equal(KILN_NIX_HASH_STR(&h, KILN_NIX_BASE16, true), want_hex);
}

static void test_parse(void **state)
{
        (void)state;
        const char *abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        check_parse(abc, KILN_NIX_HASH_NONE, abc);
        check_parse(abc, KILN_NIX_HASH_SHA256, abc);
        check_parse("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                    KILN_NIX_HASH_NONE, abc);
        check_parse("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                    KILN_NIX_HASH_SHA256, abc);
        check_parse("sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
                    KILN_NIX_HASH_NONE, abc);
        check_parse("1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", KILN_NIX_HASH_SHA256,
                    abc);
        check_parse("sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", KILN_NIX_HASH_NONE, abc);
        check_parse("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", KILN_NIX_HASH_SHA256, abc);
        check_parse("sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", KILN_NIX_HASH_NONE, abc);
        check_parse("sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0", KILN_NIX_HASH_SHA256,
                    abc);
        check_parse("sha1-qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", KILN_NIX_HASH_NONE,
                    "sha1:a9993e364706816aba3e25717850c26c9cd0d89d");
        check_parse("md5:900150983cd24fb0d6963f7d28e17f72", KILN_NIX_HASH_NONE,
                    "md5:900150983cd24fb0d6963f7d28e17f72");
        check_parse(
            "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4"
            "qmslPpUyknw==",
            KILN_NIX_HASH_NONE,
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a2"
            "74fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");

        struct kiln_error *err = NULL;
        struct kiln_nix_hash h;
        assert_ok(kiln_nix_hash_parse_sri("sha1-qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", &h, &err), err);
        assert_int_equal(h.algo, KILN_NIX_HASH_SHA1);
        enum kiln_nix_hash_algo a;
        assert_ok(kiln_nix_hash_algo_parse("sha512", 6, &a, &err), err);
        assert_int_equal(a, KILN_NIX_HASH_SHA512);
}

static void test_parse_errors(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_nix_hash h;
        assert_error(kiln_nix_hash_parse("sha256:abc", KILN_NIX_HASH_NONE, &h, &err), err, EINVAL,
                     "invalid hash 'abc': wrong length for sha256");
        assert_error(kiln_nix_hash_parse("abc", KILN_NIX_HASH_SHA1, &h, &err), err, EINVAL,
                     "invalid hash 'abc': wrong length for sha1");
        assert_error(kiln_nix_hash_parse(
                         "sha256:ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                         KILN_NIX_HASH_NONE, &h, &err),
                     err, EINVAL, "invalid base16 digit 'g'");
        assert_error(
            kiln_nix_hash_parse("sha256:eb8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
                                KILN_NIX_HASH_NONE, &h, &err),
            err, EINVAL, "invalid nixbase32 character 'e'");
        assert_error(kiln_nix_hash_parse("sha256:!ngWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
                                         KILN_NIX_HASH_NONE, &h, &err),
                     err, EINVAL, "invalid base64");
        /* The unused low bits of the last base64 character must be zero. */
        assert_error(kiln_nix_hash_parse("sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa1=",
                                         KILN_NIX_HASH_NONE, &h, &err),
                     err, EINVAL, "invalid base64");
        assert_error(kiln_nix_hash_parse("sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa==",
                                         KILN_NIX_HASH_NONE, &h, &err),
                     err, EINVAL, "invalid base64");
        assert_error(kiln_nix_hash_parse("sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/Yf",
                                         KILN_NIX_HASH_NONE, &h, &err),
                     err, EINVAL, "wrong length for SRI sha256");
        assert_error(kiln_nix_hash_parse("md4:abc", KILN_NIX_HASH_NONE, &h, &err), err, EINVAL,
                     "invalid hash 'md4:abc': unknown hash algorithm 'md4'");
        assert_error(kiln_nix_hash_parse("SHA256:abc", KILN_NIX_HASH_NONE, &h, &err), err, EINVAL,
                     "unknown hash algorithm 'SHA256'");
        assert_error(
            kiln_nix_hash_parse("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                                KILN_NIX_HASH_NONE, &h, &err),
            err, EINVAL, "no hash algorithm given");
        assert_error(kiln_nix_hash_parse("sha1:a9993e364706816aba3e25717850c26c9cd0d89d",
                                         KILN_NIX_HASH_SHA256, &h, &err),
                     err, EINVAL, "expected a hash of type sha256");
        assert_error(kiln_nix_hash_parse_sri(
                         "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", &h, &err),
                     err, EINVAL, "not an SRI hash");
        assert_error(kiln_nix_hash_parse("sha256:\n", KILN_NIX_HASH_NONE, &h, &err), err, EINVAL,
                     "invalid hash '\\x0a'");
        /* Bare base64 must be padded, as Nix wants it. */
        assert_error(kiln_nix_hash_parse("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0",
                                         KILN_NIX_HASH_SHA256, &h, &err),
                     err, EINVAL, "wrong length for sha256");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_digests),           cmocka_unit_test(test_formats),
            cmocka_unit_test(test_nixbase32_vectors), cmocka_unit_test(test_nixbase32_round_trip),
            cmocka_unit_test(test_nixbase32_errors),  cmocka_unit_test(test_parse),
            cmocka_unit_test(test_parse_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
