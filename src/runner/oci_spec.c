/* The OCI runtime spec of a build, with kiln's changes:
 * no cgroup namespace (Snix), no terminal (stdout and stderr stay apart),
 * available_ro_paths in sorted order, /bin/sh only with provide_bin_sh; and
 * a sandbox as strict as Nix's: no capabilities in any set, no host id of
 * consequence mapped, no /sys, a /dev of fresh nodes mounted read-only, and
 * /tmp inside the bounded scratch space. */
#include <sys/stat.h>

#include "runner.h"

/* Kernel interfaces a build has no business reading (root-only counters,
 * kernel memory, key tables): covered by the runtime with /dev/null or an
 * empty read-only tmpfs. Paths missing on a kernel are skipped. */
const char *const runner_masked_paths[] = {
    "/proc/acpi",        "/proc/asound",        "/proc/kcore",      "/proc/keys",
    "/proc/key-users",   "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi",          "/proc/slabinfo",   "/proc/kpageflags",
    "/proc/kpagecount",  "/proc/kpagecgroup",   "/proc/kallsyms",   "/proc/vmallocinfo",
};

const char *const runner_readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};
const size_t runner_n_masked_paths = KILN_ARRAY_SIZE(runner_masked_paths);
const size_t runner_n_readonly_paths = KILN_ARRAY_SIZE(runner_readonly_paths);

static json_t *strings(const char *const *v, size_t n)
{
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static void add_mount(json_t *mounts, const char *dest, const char *type, const char *source,
                      const char *const *options, size_t n_options)
{
        json_t *m = json_object();
        json_object_set_new(m, "destination", json_string(dest));
        json_object_set_new(m, "type", json_string(type));
        json_object_set_new(m, "source", json_string(source));
        if (n_options)
                json_object_set_new(m, "options", strings(options, n_options));
        json_array_append_new(mounts, m);
}

#define MOUNT(mounts, dest, type, source, ...)                                                     \
        do {                                                                                       \
                static const char *const opts_[] = {__VA_ARGS__};                                  \
                add_mount(mounts, dest, type, source, opts_, KILN_ARRAY_SIZE(opts_));              \
        } while (0)

static json_t *idmaps(const struct idmap *m, size_t n)
{
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_pack("{s:I,s:I,s:I}", "containerID",
                                                   (json_int_t)m[i].container_id, "hostID",
                                                   (json_int_t)m[i].host_id, "size",
                                                   (json_int_t)m[i].size));
        return a;
}

/* The build command behind kiln-sandbox oci-exec, which the runtime gets
 * on fd 3 (oci_runtime.c, native_exec.c). The runtimes add HOME from
 * /etc/passwd when the request sets none; oci-exec takes it out again, so
 * the build sees exactly the request's environment. */
static json_t *exec_args(const struct kiln_build_request *r)
{
        json_t *a = json_pack("[s,s]", "/proc/self/fd/3", "oci-exec");
        bool home = false;
        for (size_t i = 0; i < r->n_env; i++)
                home |= !strcmp(r->env[i].key, "HOME");
        if (!home) {
                json_array_append_new(a, json_string("-u"));
                json_array_append_new(a, json_string("HOME"));
        }
        json_array_append_new(a, json_string("--"));
        for (size_t i = 0; i < r->command_args.n; i++)
                json_array_append_new(a, json_string(r->command_args.v[i]));
        return a;
}

static json_t *process(const struct runner_config *cfg, const struct runner_cgroup *cgroup,
                       const struct kiln_build_request *r)
{
        json_t *env = json_array();
        for (size_t i = 0; i < r->n_env; i++) {
                /* Values are validated UTF-8 without NUL (build_request.c). */
                char *kv = kiln_asprintf("%s=%.*s", r->env[i].key, (int)r->env[i].value_len,
                                         (const char *)r->env[i].value);
                json_array_append_new(env, json_string(kv));
                free(kv);
        }
        char *cwd = kiln_asprintf("/%s", r->working_dir);
        /* Empty sets: the build holds no capability, not even inside its
         * own user namespace, so it cannot chown, mknod, mount or setuid. */
        json_t *caps = json_object();
        static const char *const sets[] = {"bounding", "effective", "inheritable", "permitted",
                                           "ambient"};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(sets); i++)
                json_object_set_new(caps, sets[i], json_array());
        /* No core dumps, as in Nix. */
        json_t *p = json_pack("{s:b,s:{s:i,s:i},s:o,s:s,s:o,s:o,s:[{s:s,s:i,s:i},{s:s,s:i,s:i}],"
                              "s:b}",
                              "terminal", 0, "user", "uid", 1000, "gid", 100, "args", exec_args(r),
                              "cwd", cwd, "env", env, "capabilities", caps, "rlimits", "type",
                              "RLIMIT_NOFILE", "hard", 1024, "soft", 1024, "type", "RLIMIT_CORE",
                              "hard", 0, "soft", 0, "noNewPrivileges", 1);
        free(cwd);
        /* Without cgroups, the build user (unique to the slot) may own this
         * many processes. */
        if (cfg->pids_max && !cgroup->n_dirs)
                json_array_append_new(json_object_get(p, "rlimits"),
                                      json_pack("{s:s,s:I,s:I}", "type", "RLIMIT_NPROC", "hard",
                                                (json_int_t)cfg->pids_max, "soft",
                                                (json_int_t)cfg->pids_max));
        return p;
}

json_t *runner_spec(const struct runner_config *cfg, const struct runner_ids *ids,
                    const struct runner_cgroup *cgroup, const struct kiln_build_request *r,
                    char *const *input_src)
{
        const struct kiln_build_constraints *c = &r->constraints;
        bool network = c->present && c->network_access;
        bool bin_sh = c->present && c->provide_bin_sh;

        json_t *mounts = json_array();
        MOUNT(mounts, "/proc", "proc", "proc", "nosuid", "noexec", "nodev");
        /* The bundle's dev/ holds fresh nodes made for this build (the
         * host's are never handed out) and the mount points below; a bind
         * mount of /dev also stops the runtime from binding host nodes in.
         * Read-only, so neither chmod nor utimes can change them. */
        MOUNT(mounts, "/dev", "bind", "dev", "rbind", "ro", "nosuid", "noexec");
        /* No gid=5: the user namespace maps one id per range (docs/ARCHITECTURE.md, host facts). */
        MOUNT(mounts, "/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance",
              "ptmxmode=0666", "mode=0620");
        MOUNT(mounts, "/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777",
              "size=65536k");
        /* No /sys: Nix's sandbox has none, and it holds root-only kernel
         * files. /tmp lives in the scratch space, within its size limit. */
        MOUNT(mounts, "/tmp", "bind", "scratch/" RUNNER_SCRATCH_TMP, "rbind", "rw", "nosuid",
              "nodev");

        for (size_t i = 0; i < r->scratch_paths.n; i++) {
                char name[57];
                char *dest = kiln_asprintf("/%s", r->scratch_paths.v[i]);
                char *src =
                    kiln_asprintf("scratch/%s", runner_scratch_name(r->scratch_paths.v[i], name));
                MOUNT(mounts, dest, "none", src, "rbind", "rw", "nosuid", "nodev");
                free(dest);
                free(src);
        }
        /* Input names are validated UTF-8 components; nosuid is required to
         * bind a FUSE mount inside a user namespace. */
        for (size_t i = 0; i < r->n_inputs; i++) {
                const struct kiln_bytes *n = &r->inputs[i].name;
                if (r->inputs[i].kind == KILN_NODE_SYMLINK)
                        continue; /* made in the bundle (runner_bundle_symlink_inputs) */
                char *dest = r->inputs_dir[0]
                                 ? kiln_asprintf("/%s/%.*s", r->inputs_dir, (int)n->len,
                                                 (const char *)n->data)
                                 : kiln_asprintf("/%.*s", (int)n->len, (const char *)n->data);
                MOUNT(mounts, dest, "none", input_src[i], "rbind", "ro", "nosuid", "nodev");
                free(dest);
        }
        for (size_t i = 0; c->present && i < c->ro_paths.n; i++)
                MOUNT(mounts, c->ro_paths.v[i], "none", c->ro_paths.v[i], "rbind", "ro");
        if (bin_sh)
                MOUNT(mounts, "/bin/sh", "none", cfg->sandbox_shell, "rbind", "ro");
        if (network) {
                static const char *const files[] = {"/etc/resolv.conf", "/etc/services",
                                                    "/etc/hosts"};
                for (size_t i = 0; i < KILN_ARRAY_SIZE(files); i++) {
                        struct stat st;
                        if (stat(files[i], &st) == 0)
                                MOUNT(mounts, files[i], "none", files[i], "rbind", "ro");
                }
        }

        json_t *ns = json_array();
        static const char *const namespaces[] = {"pid", "ipc", "uts", "mount"};
        struct idmap uids[] = {{0, ids->root_uid, 1}, {1000, ids->build_uid, 1}};
        struct idmap gids[] = {{0, ids->root_gid, 1}, {100, ids->build_gid, 1}};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(namespaces); i++)
                json_array_append_new(ns, json_pack("{s:s}", "type", namespaces[i]));
        if (!network)
                json_array_append_new(ns, json_pack("{s:s}", "type", "network"));
        json_array_append_new(ns, json_pack("{s:s}", "type", "user"));

        json_t *linux_ =
            json_pack("{s:o,s:o,s:{s:[]},s:o,s:o,s:o}", "uidMappings", idmaps(uids, 2),
                      "gidMappings", idmaps(gids, 2), "resources", "devices", "namespaces", ns,
                      "maskedPaths", strings(runner_masked_paths, runner_n_masked_paths),
                      "readonlyPaths", strings(runner_readonly_paths, runner_n_readonly_paths));
        /* The build's leaf cgroup, below the one holding its limits. */
        char *cg_path = runner_cgroup_runtime_path(cgroup);
        if (cg_path)
                json_object_set_new(linux_, "cgroupsPath", json_string(cg_path));
        free(cg_path);

        return json_pack("{s:s,s:s,s:{},s:{s:s,s:b},s:o,s:o,s:o}", "ociVersion", "1.0.2-dev",
                         "hostname", "localhost", "annotations", "root", "path", "root", "readonly",
                         1, "process", process(cfg, cgroup, r), "mounts", mounts, "linux", linux_);
}
