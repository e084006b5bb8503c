/* The OCI runner: scratch names, output location, subordinate ids, the
 * runtime spec, and real builds through the library (runc, FUSE, as root). */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <kiln/build/service.h>
#include <kiln/util/fsutil.h>
#include <kiln/ingest/import.h>
#include <kiln/castore/json.h>
#include <kiln/runner/runner.h>

#include "runner.h"

static void test_scratch_names(void **state)
{
        (void)state;
        char buf[57];
        assert_string_equal(runner_scratch_name("build", buf),
                            "3SCCPULSYMZAQ35F76TA3A3HYQROJMTNQW7SVJDXX5BNIYJ3WHYA====");
        assert_string_equal(runner_scratch_name("nix/store", buf),
                            "SN566XP5HOO2D322W42EA3DZYPDYBMPRUF3TGFIMLXV54WM4CSNQ====");
}

static void test_scratch_prefix(void **state)
{
        (void)state;
        struct kiln_build_request r = {0};
        kiln_strv_push(&r.scratch_paths, "build");
        kiln_strv_push(&r.scratch_paths, "nix/store");
        const char *rest;
        assert_string_equal(
            runner_scratch_prefix(&r, "nix/store/fhaj6gmwns62s6ypkcldbaj2ybvkhx3p-foo", &rest),
            "nix/store");
        assert_string_equal(rest, "fhaj6gmwns62s6ypkcldbaj2ybvkhx3p-foo");
        assert_string_equal(runner_scratch_prefix(&r, "build", &rest), "build");
        assert_string_equal(rest, "");
        kiln_strv_done(&r.scratch_paths);
        kiln_strv_push(&r.scratch_paths, "nix/sto");
        assert_null(runner_scratch_prefix(&r, "nix/store/aaaa", &rest));
        kiln_strv_done(&r.scratch_paths);
        kiln_strv_push(&r.scratch_paths, "build");
        assert_null(runner_scratch_prefix(&r, "nix/store/aaaa", &rest));
        /* the longest prefix wins */
        kiln_strv_push(&r.scratch_paths, "nix");
        kiln_strv_push(&r.scratch_paths, "nix/store");
        assert_string_equal(runner_scratch_prefix(&r, "nix/store/aaaa", &rest), "nix/store");
        assert_string_equal(rest, "aaaa");
        kiln_strv_done(&r.scratch_paths);
}

static char *write_tmp(const char *content)
{
        char *path = strdup("/tmp/kiln-subid.XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(kiln_write_all(fd, content, strlen(content)), 0);
        close(fd);
        return path;
}

/* subuid/subgid file cases. */
static void test_subid(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        uint32_t id, count;
        char *f = write_tmp("nobody:10000:65\nroot:1000:2\n0:2:2\n");
        assert_int_equal(runner_subid_lookup(f, 0, "root", &id, &count, &err), 1);
        assert_int_equal(id, 1000);
        assert_int_equal(count, 2);
        unlink(f);
        free(f);
        f = write_tmp("nobody:10000:65\n0:2:2\n");
        assert_int_equal(runner_subid_lookup(f, 0, "root", &id, &count, &err), 1);
        assert_int_equal(id, 2);
        unlink(f);
        free(f);
        f = write_tmp("roots:1000:2\n1000:2:2\n");
        assert_int_equal(runner_subid_lookup(f, 0, "root", &id, &count, &err), 0);
        unlink(f);
        free(f);
        f = write_tmp("root:hello:2\n");
        assert_error(runner_subid_lookup(f, 0, "root", &id, &count, &err), err, EINVAL,
                     "cannot parse");
        unlink(f);
        free(f);
        f = write_tmp("root:hello:2\n1000:2:2\n");
        assert_int_equal(runner_subid_lookup(f, 1000, "user", &id, &count, &err), 1);
        assert_int_equal(id, 2);
        unlink(f);
        free(f);
        /* a count of zero is skipped; a missing file is "no entry" */
        f = write_tmp("root:5:0\nroot:7:1\n");
        assert_int_equal(runner_subid_lookup(f, 0, "root", &id, &count, &err), 1);
        assert_int_equal(id, 7);
        unlink(f);
        free(f);
        assert_int_equal(runner_subid_lookup("/nonexistent/subuid", 0, "root", &id, &count, &err),
                         0);
}

static json_t *find_mount(json_t *spec, const char *dest)
{
        json_t *mounts = json_object_get(spec, "mounts"), *m;
        size_t i;
        json_array_foreach(
            mounts, i,
            m) if (!strcmp(json_string_value(json_object_get(m, "destination")), dest)) return m;
        return NULL;
}

static void test_spec(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct runner_config cfg = {.sandbox_shell = "/bin/busybox",
                                    .subuid = 100000,
                                    .subuid_count = 65536,
                                    .subgid = 200000,
                                    .subgid_count = 65536};
        struct runner_ids ids;
        struct runner_cgroup cg = {0};
        runner_slot_ids(&cfg, 3, &ids);
        assert_int_equal(ids.root_uid, 100006);
        assert_int_equal(ids.build_uid, 100007);
        assert_int_equal(ids.root_gid, 200006);
        assert_int_equal(ids.build_gid, 200007);
        json_t *j = json_loads(
            "{\"inputs\":[{\"directory\":{\"name\":\"YmFy\",\"digest\":"
            "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"size\":\"42\"}}],"
            "\"commandArgs\":[\":\"],\"workingDir\":\"build\",\"scratchPaths\":[\"build\","
            "\"nix/store\"],\"inputsDir\":\"nix/store\",\"outputs\":[\"nix/store/out\"],"
            "\"environmentVars\":[{\"key\":\"A\",\"value\":\"eA==\"}],"
            "\"constraints\":{\"system\":\"x86_64-linux\",\"provideBinSh\":true,"
            "\"availableRoPaths\":[\"/dev/null\",\"/etc/hostname\"]}}",
            0, NULL);
        struct kiln_build_request r;
        assert_ok(kiln_build_request_from_json(j, &r, &err), err);
        json_decref(j);
        char *src[] = {"/view/d-bar"};
        json_t *spec = runner_spec(&cfg, &ids, &cg, &r, src);

        json_t *p = json_object_get(spec, "process");
        assert_true(json_is_false(json_object_get(p, "terminal")));
        assert_string_equal(json_string_value(json_object_get(p, "cwd")), "/build");
        assert_string_equal(json_string_value(json_array_get(json_object_get(p, "env"), 0)), "A=x");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "user"), "uid")),
                         1000);
        /* no capability in any set */
        json_t *caps = json_object_get(p, "capabilities"), *set;
        const char *set_name;
        assert_int_equal(json_object_size(caps), 5);
        json_object_foreach(caps, set_name, set) assert_int_equal(json_array_size(set), 0);
        /* container root and the build user map to the slot's ids only */
        char *maps =
            kiln_json_dumps(json_object_get(json_object_get(spec, "linux"), "uidMappings"));
        assert_string_equal(maps, "[{\"containerID\":0,\"hostID\":100006,\"size\":1},"
                                  "{\"containerID\":1000,\"hostID\":100007,\"size\":1}]");
        free(maps);
        /* no /sys; /dev is the bundle's, read-only; /tmp is in the scratch space */
        assert_null(find_mount(spec, "/sys"));
        assert_null(find_mount(spec, "/sys/fs/cgroup"));
        assert_string_equal(json_string_value(json_object_get(find_mount(spec, "/dev"), "source")),
                            "dev");
        char *dev_opts = kiln_json_dumps(json_object_get(find_mount(spec, "/dev"), "options"));
        assert_non_null(strstr(dev_opts, "\"ro\""));
        free(dev_opts);
        assert_string_equal(json_string_value(json_object_get(find_mount(spec, "/tmp"), "source")),
                            "scratch/tmp");
        /* no cgroup namespace; network isolated */
        json_t *ns = json_object_get(json_object_get(spec, "linux"), "namespaces"), *n;
        size_t i;
        bool net = false;
        json_array_foreach(ns, i, n)
        {
                const char *t = json_string_value(json_object_get(n, "type"));
                assert_string_not_equal(t, "cgroup");
                net |= !strcmp(t, "network");
        }
        assert_true(net);
        /* mounts: scratch before inputs, inputs read-only nosuid, /bin/sh last */
        json_t *m = find_mount(spec, "/nix/store");
        assert_non_null(m);
        assert_string_equal(json_string_value(json_object_get(m, "source")),
                            "scratch/SN566XP5HOO2D322W42EA3DZYPDYBMPRUF3TGFIMLXV54WM4CSNQ====");
        m = find_mount(spec, "/nix/store/bar");
        assert_non_null(m);
        assert_string_equal(json_string_value(json_object_get(m, "source")), "/view/d-bar");
        char *opts = kiln_json_dumps(json_object_get(m, "options"));
        assert_string_equal(opts, "[\"rbind\",\"ro\",\"nosuid\",\"nodev\"]");
        free(opts);
        assert_non_null(find_mount(spec, "/dev/null"));
        assert_non_null(find_mount(spec, "/bin/sh"));
        json_t *mounts = json_object_get(spec, "mounts");
        size_t last = json_array_size(mounts) - 1;
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(mounts, last), "destination")),
            "/bin/sh");
        /* /dev/pts has no gid=5 (one id per mapping range) */
        opts = kiln_json_dumps(json_object_get(find_mount(spec, "/dev/pts"), "options"));
        assert_null(strstr(opts, "gid=5"));
        free(opts);
        json_decref(spec);

        /* with network access: no network namespace, host resolv.conf/hosts */
        r.constraints.network_access = true;
        spec = runner_spec(&cfg, &ids, &cg, &r, src);
        ns = json_object_get(json_object_get(spec, "linux"), "namespaces");
        json_array_foreach(ns, i, n)
            assert_string_not_equal(json_string_value(json_object_get(n, "type")), "network");
        assert_non_null(find_mount(spec, "/etc/hosts"));
        json_decref(spec);
        kiln_build_request_done(&r);
}

/* --- real builds through the library --- */

static bool can_build(void)
{
        if (geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0 &&
            system("runc --version >/dev/null 2>&1") == 0 && access("/bin/busybox", X_OK) == 0)
                return true;
        if (getenv("KILN_TEST_MUST_RUN") && !strcmp(getenv("KILN_TEST_MUST_RUN"), "1"))
                fail_msg("real builds need root, /dev/fuse, runc and /bin/busybox");
        print_message("skip: real builds need root, /dev/fuse, runc and /bin/busybox\n");
        return false;
}

struct fx {
        char dir[64];
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_build_service *svc;
        struct kiln_node busybox;
};

/* *state is the scheme of the backend to build with: every library build
 * runs on both. */
static int fx_setup(void **state)
{
        const char *scheme = *state;
        struct fx *f = calloc(1, sizeof(*f));
        strcpy(f->dir, "/tmp/kiln-runner.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        chmod(f->dir, 0711); /* builds are set up as an unprivileged user */
        struct kiln_error *err = NULL;
        assert_ok(kiln_blob_service_open("memory://", &f->blobs, &err), err);
        assert_ok(kiln_directory_service_open("memory://", &f->dirs, &err), err);
        kiln_runner_register();
        char *url =
            kiln_asprintf("%s://%s/bundles?concurrency=2&ro-paths=/etc/hostname", scheme, f->dir);
        assert_ok(kiln_build_service_open(url, f->blobs, f->dirs, &f->svc, &err), err);
        free(url);
        struct kiln_import_options o = {.blobs = f->blobs, .dirs = f->dirs, .threads = 1};
        assert_ok(kiln_import_path(&o, AT_FDCWD, "/bin/busybox", &f->busybox, &err), err);
        kiln_node_set_name(&f->busybox, "busybox", 7);
        *state = f;
        return 0;
}

static int fx_teardown(void **state)
{
        struct fx *f = *state;
        kiln_node_done(&f->busybox);
        kiln_build_service_free(f->svc);
        kiln_directory_service_free(f->dirs);
        kiln_blob_service_free(f->blobs);
        kiln_rm_rf_at(AT_FDCWD, f->dir);
        free(f);
        return 0;
}

/* A request running a busybox shell script, busybox at /nix/store/busybox. */
static struct kiln_build_request request(struct fx *f, const char *script)
{
        struct kiln_build_request r = {0};
        r.inputs = calloc(1, sizeof(*r.inputs));
        kiln_node_copy(&r.inputs[0], &f->busybox);
        r.n_inputs = 1;
        kiln_strv_push(&r.command_args, "/nix/store/busybox");
        kiln_strv_push(&r.command_args, "sh");
        kiln_strv_push(&r.command_args, "-c");
        kiln_strv_push(&r.command_args, script);
        r.working_dir = strdup("build");
        kiln_strv_push(&r.scratch_paths, "build");
        kiln_strv_push(&r.scratch_paths, "nix/store");
        r.inputs_dir = strdup("nix/store");
        return r;
}

static void test_build_library(void **state)
{
        if (!can_build())
                skip();
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_build_request r = request(
            f, "b=/nix/store/busybox; $b cat /build/.attr-x > /nix/store/out;"
               "$b ls /nix/store >> /nix/store/out; $b cat /etc/hostname >> /nix/store/out");
        kiln_strv_push(&r.outputs, "nix/store/out");
        kiln_strv_push(&r.needles, "busybox");
        kiln_strv_push(&r.needles, "absent");
        /* additional files land at /<path>, through the scratch path */
        r.files = calloc(1, sizeof(*r.files));
        r.files[0] = (struct kiln_additional_file){
            .path = strdup("build/.attr-x"), .contents = (uint8_t *)strdup("attr\n"), .len = 5};
        r.n_files = 1;
        r.constraints =
            (struct kiln_build_constraints){.present = true, .system = strdup("x86_64-linux")};
        kiln_strv_push(&r.constraints.ro_paths, "/etc/hostname");
        assert_ok(kiln_build_request_validate(&r, &err), err);

        struct kiln_build b;
        assert_ok(kiln_build_service_build(f->svc, &r, NULL, &b, &err), err);
        assert_int_equal(b.n_outputs, 1);
        assert_int_equal(b.outputs[0].node.kind, KILN_NODE_FILE);
        assert_memory_equal(b.outputs[0].node.name.data, "out", 3);
        assert_int_equal(b.outputs[0].n_needles, 1);
        assert_int_equal(b.outputs[0].needles[0], 0);
        struct kiln_buf content = KILN_BUF_INIT;
        assert_int_equal(kiln_blob_get(f->blobs, &b.outputs[0].node.digest, &content, &err), 1);
        kiln_buf_append_byte(&content, 0);
        assert_non_null(strstr((char *)content.data, "attr\nbusybox\nout\n"));
        kiln_buf_done(&content);
        /* the echo validates again */
        assert_ok(kiln_build_request_validate(&b.request, &err), err);
        kiln_build_done(&b);

        /* the bundle root is empty again */
        char *bundles = kiln_asprintf("%s/bundles", f->dir);
        DIR *d = opendir(bundles);
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        fail_msg("bundle left: %s", de->d_name);
        closedir(d);
        free(bundles);
        kiln_build_request_done(&r);
}

static void test_build_library_failures(void **state)
{
        if (!can_build())
                skip();
        struct fx *f = *state;
        struct kiln_error *err = NULL;
        struct kiln_build b;

        struct kiln_build_request r = request(f, "/nix/store/busybox touch /nix/store/busybox");
        kiln_strv_push(&r.outputs, "nix/store/out");
        assert_error(kiln_build_service_build(f->svc, &r, NULL, &b, &err), err, EIO,
                     "Read-only file system");
        kiln_build_request_done(&r);

        r = request(f, "exit 0");
        kiln_strv_push(&r.outputs, "elsewhere/out");
        assert_error(kiln_build_service_build(f->svc, &r, NULL, &b, &err), err, EINVAL,
                     "not below a scratch path");
        kiln_build_request_done(&r);

        r = request(f, "exit 0");
        r.files = calloc(1, sizeof(*r.files));
        r.files[0] = (struct kiln_additional_file){.path = strdup("etc/x")};
        r.n_files = 1;
        assert_error(kiln_build_service_build(f->svc, &r, NULL, &b, &err), err, EINVAL,
                     "additional file etc/x is not below a scratch path");
        kiln_build_request_done(&r);

        /* a cancelled build is killed */
        r = request(f, "/nix/store/busybox sleep 60");
        kiln_strv_push(&r.outputs, "nix/store/out");
        struct kiln_cancel *c = kiln_cancel_new();
        kiln_cancel_trigger(c);
        struct kiln_build_call call = {.cancel = c};
        assert_error(kiln_build_service_build(f->svc, &r, &call, &b, &err), err, ECANCELED,
                     "cancelled");
        kiln_cancel_free(c);
        kiln_build_request_done(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_scratch_names),
            cmocka_unit_test(test_scratch_prefix),
            cmocka_unit_test(test_subid),
            cmocka_unit_test(test_spec),
            cmocka_unit_test_prestate_setup_teardown(test_build_library, fx_setup, fx_teardown,
                                                     "oci"),
            cmocka_unit_test_prestate_setup_teardown(test_build_library_failures, fx_setup,
                                                     fx_teardown, "oci"),
            cmocka_unit_test_prestate_setup_teardown(test_build_library, fx_setup, fx_teardown,
                                                     "sandbox"),
            cmocka_unit_test_prestate_setup_teardown(test_build_library_failures, fx_setup,
                                                     fx_teardown, "sandbox"),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
