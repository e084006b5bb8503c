/* BuildRequest / Build domain model: clean paths, every upstream rule, kiln's
 * NUL and UTF-8 rules, wire and JSON round trips. */
#include "testutil.h"

#include <kiln/build/build.h>
#include <kiln/build/events.h>
#include <kiln/castore/json.h>

#include "build.pb-c.h"
#include "events.pb-c.h"

static void test_clean_paths(void **state)
{
        (void)state;
        assert_false(kiln_path_is_clean_relative("foo/bar/"));
        assert_false(kiln_path_is_clean_relative("foo/../bar"));
        assert_false(kiln_path_is_clean_relative("foo/./bar"));
        assert_false(kiln_path_is_clean_relative("foo//bar"));
        assert_false(kiln_path_is_clean_relative("//foo/bar"));
        assert_false(kiln_path_is_clean_relative("/"));
        assert_false(kiln_path_is_clean_relative("/foo/bar"));
        assert_false(kiln_path_is_clean_relative(".."));
        assert_false(kiln_path_is_clean_relative("."));
        assert_true(kiln_path_is_clean_relative(""));
        assert_true(kiln_path_is_clean_relative("foo/bar"));
        assert_true(kiln_path_is_clean_relative("..."));
        assert_true(kiln_path_is_clean_absolute("/"));
        assert_true(kiln_path_is_clean_absolute("/foo/bar"));
        assert_false(kiln_path_is_clean_absolute("//foo/bar"));
        assert_false(kiln_path_is_clean_absolute("/foo/"));
        assert_false(kiln_path_is_clean_absolute(""));
        assert_false(kiln_path_is_clean_absolute("foo"));

        assert_true(kiln_utf8_valid("h\xc3\xa9llo", 6));
        assert_false(kiln_utf8_valid("\xff", 1));
        assert_false(kiln_utf8_valid("\xc0\xaf", 2));          /* overlong '/' */
        assert_false(kiln_utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
        assert_false(kiln_utf8_valid("\xe2\x82", 2));          /* truncated */
        assert_true(kiln_utf8_valid("\xf0\x9f\x98\x80", 4));   /* emoji */
}

/* A valid base request (shaped like a Nix build) as a JSON document. */
static const char base_json[] =
        "{\"inputs\":[{\"directory\":{\"name\":\"bXA1N2QzMzY1N3JmMzRsenZsYnBmYTFnamZ2NWdtcGctYmFy\","
        "\"digest\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"size\":\"42\"}}],"
        "\"commandArgs\":[\":\"],\"workingDir\":\"build\",\"scratchPaths\":[\"build\",\"nix/store\"],"
        "\"inputsDir\":\"nix/store\",\"outputs\":[\"nix/store/fhaj6gmwns62s6ypkcldbaj2ybvkhx3p-foo\"],"
        "\"environmentVars\":[{\"key\":\"HOME\",\"value\":\"L2hvbWVsZXNzLXNoZWx0ZXI=\"},"
        "{\"key\":\"out\",\"value\":\"eA==\"}],"
        "\"constraints\":{\"system\":\":\",\"provideBinSh\":true},"
        "\"refscanNeedles\":[\"fhaj6gmwns62s6ypkcldbaj2ybvkhx3p\",\"mp57d33657rf34lzvlbpfa1gjfv5gmpg\"]}";

static json_t *base(void)
{
        json_t *j = json_loads(base_json, 0, NULL);
        assert_non_null(j);
        return j;
}

/* Mutates the base with a JSON patch (shallow merge) and expects a failure. */
static void expect_json_reject(const char *patch, const char *needle)
{
        json_t *j = base();
        json_t *p = json_loads(patch, JSON_ALLOW_NUL, NULL);
        assert_non_null(p);
        json_object_update(j, p);
        struct kiln_build_request r;
        struct kiln_error *err = NULL;
        if (kiln_build_request_from_json(j, &r, &err) == 0) {
                kiln_build_request_done(&r);
                fail_msg("accepted %s", patch);
        }
        if (!strstr(err->msg, needle))
                fail_msg("error message \"%s\" lacks \"%s\"", err->msg, needle);
        kiln_error_free(err);
        json_decref(p);
        json_decref(j);
}

static void test_validation(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_build_request r;
        json_t *j = base();
        assert_ok(kiln_build_request_from_json(j, &r, &err), err);
        assert_int_equal(r.n_inputs, 1);
        assert_string_equal(r.working_dir, "build");
        kiln_build_request_done(&r);
        json_decref(j);

        expect_json_reject("{\"inputs\":[{\"file\":{\"name\":\"Yg==\",\"digest\":\"AAAA\"}}]}",
                           "invalid input node at position 0");
        expect_json_reject("{\"inputs\":[{\"symlink\":{\"name\":\"Yg==\",\"target\":\"eA==\"}},"
                           "{\"symlink\":{\"name\":\"YQ==\",\"target\":\"eA==\"}}]}",
                           "input nodes are not sorted by name");
        expect_json_reject("{\"inputs\":[{\"symlink\":{\"name\":\"YQ==\",\"target\":\"eA==\"}},"
                           "{\"symlink\":{\"name\":\"YQ==\",\"target\":\"eA==\"}}]}",
                           "input nodes are not sorted by name");
        expect_json_reject("{\"inputs\":[{\"symlink\":{\"target\":\"eA==\"}}]}",
                           "invalid input node at position 0");
        expect_json_reject("{\"inputs\":[{\"symlink\":{\"name\":\"/w==\",\"target\":\"eA==\"}}]}",
                           "invalid input node at position 0: name is not valid UTF-8");
        expect_json_reject("{\"workingDir\":\"/build\"}", "invalid working_dir");
        expect_json_reject("{\"scratchPaths\":[\"build\",\"a/../b\"]}",
                           "invalid scratch path at position 1");
        expect_json_reject("{\"scratchPaths\":[\"nix/store\",\"build\"]}",
                           "scratch_paths not sorted");
        expect_json_reject("{\"inputsDir\":\"nix//store\"}", "invalid inputs_dir");
        expect_json_reject("{\"outputs\":[\"out/\"]}", "invalid output path at position 0");
        expect_json_reject("{\"outputs\":[\"b\",\"a\"]}", "outputs not sorted");
        expect_json_reject("{\"environmentVars\":[{\"key\":\"\"}]}",
                           "invalid environment variable at position 0");
        expect_json_reject("{\"environmentVars\":[{\"key\":\"a=b\"}]}",
                           "invalid environment variable at position 0");
        expect_json_reject("{\"environmentVars\":[{\"key\":\"b\"},{\"key\":\"a\"}]}",
                           "EnvVar not sorted by their keys");
        expect_json_reject("{\"environmentVars\":[{\"key\":\"a\",\"value\":\"AA==\"}]}",
                           "invalid environment variable at position 0: value contains a NUL");
        expect_json_reject("{\"environmentVars\":[{\"key\":\"a\"},{\"key\":\"b\",\"value\":\"/w==\"}]}",
                           "invalid environment variable at position 1: value is not valid UTF-8");
        expect_json_reject("{\"environmentVars\":[{\"key\":\"a\\u0000b\"}]}",
                           "contains a NUL byte");
        expect_json_reject("{\"constraints\":{}}", "invalid build constraints: invalid system");
        expect_json_reject("{\"constraints\":{\"system\":\"x\",\"availableRoPaths\":[\"dev\"]}}",
                           "invalid build constraints: invalid available_ro_paths at position 0");
        expect_json_reject("{\"constraints\":{\"system\":\"x\",\"availableRoPaths\":[\"/b\",\"/a\"]}}",
                           "invalid build constraints: available_ro_paths not sorted");
        expect_json_reject("{\"additionalFiles\":[{\"path\":\"/x\"}]}",
                           "invalid additional file path at position: 0");
        expect_json_reject("{\"additionalFiles\":[{\"path\":\"b\"},{\"path\":\"a\"}]}",
                           "additional_files not sorted");
        expect_json_reject("{\"bogus\":1}", "unknown field \"bogus\"");
        expect_json_reject("{\"outputs\":\"x\"}", "field outputs: expected an array");
}

/* Wire decoding rejects what protobuf-c would silently truncate. */
static void test_wire_strings(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_build_request r;
        /* environment_vars (7) { key (1) = "a\0b" } */
        static const uint8_t nul_key[] = {0x3a, 0x05, 0x0a, 0x03, 'a', 0, 'b'};
        assert_error(kiln_build_request_decode(nul_key, sizeof(nul_key), &r, &err), err, EINVAL,
                     "field environment_vars[0].key: contains a NUL byte");
        /* command_args (2) = "ok", then "\xff" */
        static const uint8_t bad_utf8[] = {0x12, 0x02, 'o', 'k', 0x12, 0x01, 0xff};
        assert_error(kiln_build_request_decode(bad_utf8, sizeof(bad_utf8), &r, &err), err, EINVAL,
                     "field command_args[1]: is not valid UTF-8");
        /* constraints (8) { available_ro_paths (3) = "/\0" } */
        static const uint8_t nul_nested[] = {0x42, 0x04, 0x1a, 0x02, '/', 0};
        assert_error(kiln_build_request_decode(nul_nested, sizeof(nul_nested), &r, &err), err,
                     EINVAL, "field constraints.available_ro_paths[0]: contains a NUL byte");
        static const uint8_t garbage[] = {0xff, 0xff};
        assert_error(kiln_build_request_decode(garbage, sizeof(garbage), &r, &err), err, EINVAL,
                     "not a valid protobuf message");
        /* the empty request is valid: no constraints at all */
        assert_ok(kiln_build_request_decode("", 0, &r, &err), err);
        assert_false(r.constraints.present);
        kiln_build_request_done(&r);
}

static void test_round_trips(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_build_request r, back;
        json_t *j = base();
        json_object_set_new(j, "constraints",
                            json_loads("{\"system\":\"x86_64-linux\",\"minMemory\":\"1024\","
                                       "\"availableRoPaths\":[\"/dev/kvm\",\"/dev/kvm\",\"/x\"],"
                                       "\"networkAccess\":true}",
                                       0, NULL));
        json_object_set_new(j, "additionalFiles",
                            json_loads("[{\"path\":\"build/a\",\"contents\":\"AAEC\"}]", 0, NULL));
        assert_ok(kiln_build_request_from_json(j, &r, &err), err);
        json_decref(j);
        /* duplicates of a set collapse, so the echo validates again */
        assert_int_equal(r.constraints.ro_paths.n, 2);

        struct kiln_buf b = KILN_BUF_INIT;
        kiln_build_request_encode(&r, &b);
        assert_ok(kiln_build_request_decode(b.data, b.len, &back, &err), err);
        json_t *j1 = kiln_build_request_to_json(&r), *j2 = kiln_build_request_to_json(&back);
        assert_true(json_equal(j1, j2));
        assert_int_equal(back.files[0].len, 3);
        assert_int_equal(back.constraints.min_memory, 1024);
        assert_true(back.constraints.network_access);
        assert_false(back.constraints.provide_bin_sh);
        json_decref(j1);
        json_decref(j2);

        /* a Build with outputs and needles, through wire and JSON */
        struct kiln_build build = {0};
        kiln_build_request_copy(&build.request, &r);
        build.n_outputs = 1;
        build.outputs = calloc(1, sizeof(*build.outputs));
        build.outputs[0].node = (struct kiln_node){.kind = KILN_NODE_SYMLINK};
        kiln_node_set_name(&build.outputs[0].node, "out", 3);
        build.outputs[0].node.target.data = (uint8_t *)strdup("t");
        build.outputs[0].node.target.len = 1;
        build.outputs[0].needles = calloc(2, sizeof(uint64_t));
        build.outputs[0].needles[0] = 0;
        build.outputs[0].needles[1] = 5;
        build.outputs[0].n_needles = 2;
        kiln_buf_clear(&b);
        kiln_build_encode(&build, &b);
        struct kiln_build bb;
        assert_ok(kiln_build_decode(b.data, b.len, &bb, &err), err);
        assert_int_equal(bb.n_outputs, 1);
        assert_int_equal(bb.outputs[0].n_needles, 2);
        assert_int_equal(bb.outputs[0].needles[1], 5);
        json_t *bj = kiln_build_to_json(&bb);
        char *s = kiln_json_dumps(kiln_json_field(bj, "outputs_needles"));
        assert_string_equal(s, "[{\"needles\":[\"0\",\"5\"]}]");
        free(s);
        struct kiln_build bj_back;
        assert_ok(kiln_build_from_json(bj, &bj_back, &err), err);
        assert_true(kiln_node_eq(&bj_back.outputs[0].node, &build.outputs[0].node));
        assert_int_equal(bj_back.outputs[0].needles[1], 5);
        kiln_build_done(&bj_back);
        json_decref(bj);
        kiln_build_done(&bb);
        kiln_build_done(&build);

        kiln_buf_done(&b);
        kiln_build_request_done(&r);
        kiln_build_request_done(&back);
}

struct seen {
        Kiln__Build__V1__BuildEvent *ev[16];
        json_t *json[16];
        size_t n;
};

static void collect(void *ud, const struct kiln_build_event *ev)
{
        struct seen *s = ud;
        assert_true(s->n < 16);
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_build_event_encode(ev, &b);
        s->ev[s->n] = kiln__build__v1__build_event__unpack(NULL, b.len, b.data);
        assert_non_null(s->ev[s->n]);
        s->json[s->n++] = kiln_build_event_to_json(ev);
        kiln_buf_done(&b);
}

/* The callbacks of a build, as events: their protobuf decodes with the
 * generated code, their JSON is proto3's, a failure carries the output's
 * last KILN_BUILD_EVENT_TAIL bytes. */
static void test_events(void **state)
{
        (void)state;
        struct seen s = {0};
        struct kiln_build_events e = {0};
        struct kiln_build_call call = {0};
        kiln_build_events_init(&e, collect, &s, &call);
        call.queue_position(call.userdata, 2);
        call.progress(call.userdata, "queued");
        call.progress(call.userdata, "bundle");
        call.progress(call.userdata, "run");
        char big[KILN_BUILD_EVENT_TAIL + 100];
        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (char)('a' + i % 26);
        call.output(call.userdata, 2, "err\n", 4);
        call.output(call.userdata, 1, big, sizeof(big));
        call.progress(call.userdata, "ingest");
        struct kiln_error *err = NULL;
        kiln_error_set(&err, ETIMEDOUT, "build timed out");
        kiln_build_events_end(&e, -ETIMEDOUT, NULL, err);
        kiln_error_free(err);

        assert_int_equal(s.n, 6);
        assert_int_equal(s.ev[0]->event_case, KILN__BUILD__V1__BUILD_EVENT__EVENT_QUEUED);
        assert_int_equal(s.ev[0]->queued->position, 2);
        assert_int_equal(s.ev[1]->event_case, KILN__BUILD__V1__BUILD_EVENT__EVENT_STARTED);
        assert_int_equal(s.ev[2]->log->stream, KILN__BUILD__V1__BUILD_EVENT__STREAM__STDERR);
        assert_int_equal(s.ev[3]->log->data.len, sizeof(big));
        assert_int_equal(s.ev[4]->event_case, KILN__BUILD__V1__BUILD_EVENT__EVENT_REFSCAN);
        Kiln__Build__V1__BuildEvent__Failed *f = s.ev[5]->failed;
        assert_int_equal(f->code, 4); /* DEADLINE_EXCEEDED */
        assert_string_equal(f->message, "build timed out");
        assert_int_equal(f->log_tail.len, KILN_BUILD_EVENT_TAIL);
        assert_memory_equal(f->log_tail.data, big + sizeof(big) - KILN_BUILD_EVENT_TAIL,
                            KILN_BUILD_EVENT_TAIL);

        char *q = json_dumps(s.json[0], JSON_COMPACT);
        assert_string_equal(q, "{\"queued\":{\"position\":\"2\"}}");
        free(q);
        char *l = json_dumps(s.json[2], JSON_COMPACT);
        assert_string_equal(l, "{\"log\":{\"stream\":\"STDERR\",\"data\":\"ZXJyCg==\"}}");
        free(l);
        char *st = json_dumps(s.json[1], JSON_COMPACT);
        assert_string_equal(st, "{\"started\":{}}");
        free(st);
        for (size_t i = 0; i < s.n; i++) {
                kiln__build__v1__build_event__free_unpacked(s.ev[i], NULL);
                json_decref(s.json[i]);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_clean_paths),
                cmocka_unit_test(test_validation),
                cmocka_unit_test(test_wire_strings),
                cmocka_unit_test(test_round_trips),
                cmocka_unit_test(test_events),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
