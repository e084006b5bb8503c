/* sandbox:///abs/bundle/root: kiln's own sandbox, with no OCI runtime. The
 * daemon writes the whole sandbox as a plan (native_plan.h) and starts the
 * small kiln-sandbox program (native_exec.c) on it, which sets up the
 * namespaces and runs the build command. The sandbox is the one the OCI
 * backend describes to its runtime: the same bundle, mounts, ids, limits
 * and system call filter. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <kiln/runner/runner.h>
#include <kiln/util/url.h>

#include "native_plan.h"
#include "runner.h"

struct native_config {
        char *helper;        /* the kiln-sandbox program */
        struct kiln_buf bpf; /* the seccomp programs (runner_seccomp_bpf) */
};

static int native_init(struct runner_service *s, const struct kiln_url *u, const char *url,
                       struct kiln_error **err)
{
        (void)u;
        (void)url;
        struct native_config *nc = kiln_calloc(1, sizeof(*nc));
        s->backend_data = nc;
        nc->helper = runner_find_helper();
        if (access(nc->helper, X_OK) < 0)
                return kiln_error_errno(err, errno, "sandbox: " RUNNER_HELPER_MISSING,
                                        nc->helper);
        return runner_seccomp_bpf(&nc->bpf, err);
}

static void native_done(struct runner_service *s)
{
        struct native_config *nc = s->backend_data;
        if (!nc)
                return;
        free(nc->helper);
        kiln_buf_done(&nc->bpf);
        free(nc);
}

/* --- the plan --- */

static void rec(struct kiln_buf *p, enum plan_record type, const void *data, size_t len)
{
        uint32_t h[2] = {type, (uint32_t)len};
        kiln_buf_append(p, h, sizeof(h));
        kiln_buf_append(p, data, len);
}

/* A record of strings. */
static void rec_strings(struct kiln_buf *p, enum plan_record type, const char *const *s,
                        size_t n)
{
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
                len += strlen(s[i]) + 1;
        uint32_t h[2] = {type, (uint32_t)len};
        kiln_buf_append(p, h, sizeof(h));
        for (size_t i = 0; i < n; i++)
                kiln_buf_append(p, s[i], strlen(s[i]) + 1);
}

static void rec_string(struct kiln_buf *p, enum plan_record type, const char *s)
{
        rec_strings(p, type, &s, 1);
}

static void rec_mount(struct kiln_buf *p, enum plan_mount_kind kind, uint32_t flags,
                      const char *source, const char *dest, const char *data)
{
        struct plan_mount m = {kind, flags};
        size_t len = sizeof(m) + strlen(source) + strlen(dest) + strlen(data) + 3;
        uint32_t h[2] = {PLAN_MOUNT, (uint32_t)len};
        kiln_buf_append(p, h, sizeof(h));
        kiln_buf_append(p, &m, sizeof(m));
        kiln_buf_append(p, source, strlen(source) + 1);
        kiln_buf_append(p, dest, strlen(dest) + 1);
        kiln_buf_append(p, data, strlen(data) + 1);
}

static void rec_bind(struct kiln_buf *p, uint32_t flags, const char *source, const char *dest)
{
        rec_mount(p, PLAN_BIND, flags, source, dest, "");
}

static void rec_rlimit(struct kiln_buf *p, int resource, uint64_t soft, uint64_t hard)
{
        struct plan_rlimit l = {.resource = (uint32_t)resource, .soft = soft, .hard = hard};
        rec(p, PLAN_RLIMIT, &l, sizeof(l));
}

/* Namespaces, ids and the cgroup: what kiln-sandbox does on the host. */
static void plan_host(struct runner_build *b, struct kiln_buf *p)
{
        const struct kiln_build_constraints *c = &b->req->constraints;
        bool network = c->present && c->network_access;
        uint64_t ns = CLONE_NEWCGROUP | (network ? 0 : CLONE_NEWNET);
        rec(p, PLAN_NAMESPACES, &ns, sizeof(ns));
        _cleanup_free_ char *uids = kiln_asprintf("0 %u 1\n1000 %u 1\n", b->ids.root_uid,
                                                  b->ids.build_uid);
        _cleanup_free_ char *gids = kiln_asprintf("0 %u 1\n100 %u 1\n", b->ids.root_gid,
                                                  b->ids.build_gid);
        rec_string(p, PLAN_UID_MAP, uids);
        rec_string(p, PLAN_GID_MAP, gids);
        char *procs[2];
        size_t n = runner_cgroup_procs(&b->cgroup, procs);
        for (size_t i = 0; i < n; i++) {
                rec_string(p, PLAN_CGROUP, procs[i]);
                free(procs[i]);
        }
        rec_string(p, PLAN_HOSTNAME, "localhost");
        if (!network)
                rec(p, PLAN_LOOPBACK, NULL, 0);
}

/* The files of the bundle's root/etc, each bound read-only into an /etc of
 * the root tmpfs, where mount points for the host's files can still be
 * made (available_ro_paths may name /etc files). */
static void plan_etc(struct runner_build *b, struct kiln_buf *p)
{
        _cleanup_free_ char *etc = kiln_asprintf("%s/root/etc", b->dir);
        DIR *d = opendir(etc);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_type != DT_REG)
                        continue;
                _cleanup_free_ char *src = kiln_asprintf("%s/%s", etc, de->d_name);
                _cleanup_free_ char *dest = kiln_asprintf("/etc/%s", de->d_name);
                rec_bind(p, PLAN_RDONLY | PLAN_NOSUID | PLAN_NODEV, src, dest);
        }
        if (d)
                closedir(d);
}

/* The file system, as the OCI spec has it (oci_spec.c). */
static void plan_mounts(struct runner_build *b, struct kiln_buf *p)
{
        const struct kiln_build_request *r = b->req;
        const struct kiln_build_constraints *c = &r->constraints;
        const struct runner_config *cfg = &b->svc->cfg;
        bool network = c->present && c->network_access;
        _cleanup_free_ char *rootfs = kiln_asprintf("%s/rootfs", b->dir);
        rec_string(p, PLAN_ROOT, rootfs);
        rec_mount(p, PLAN_PROC, PLAN_NOSUID | PLAN_NODEV | PLAN_NOEXEC, "", "/proc", "");
        _cleanup_free_ char *dev = kiln_asprintf("%s/dev", b->dir);
        rec_bind(p, PLAN_RDONLY | PLAN_NOSUID | PLAN_NOEXEC, dev, "/dev");
        rec_mount(p, PLAN_DEVPTS, PLAN_NOSUID | PLAN_NOEXEC, "", "/dev/pts",
                  "newinstance,ptmxmode=0666,mode=0620");
        rec_mount(p, PLAN_TMPFS, PLAN_NOSUID | PLAN_NODEV | PLAN_NOEXEC, "", "/dev/shm",
                  "mode=1777,size=65536k");
        _cleanup_free_ char *tmp = kiln_asprintf("%s/scratch/" RUNNER_SCRATCH_TMP, b->dir);
        rec_bind(p, PLAN_NOSUID | PLAN_NODEV, tmp, "/tmp");
        plan_etc(b, p);
        for (size_t i = 0; i < r->scratch_paths.n; i++) {
                char name[57];
                _cleanup_free_ char *src = kiln_asprintf(
                        "%s/scratch/%s", b->dir, runner_scratch_name(r->scratch_paths.v[i], name));
                _cleanup_free_ char *dest = kiln_asprintf("/%s", r->scratch_paths.v[i]);
                rec_bind(p, PLAN_NOSUID | PLAN_NODEV, src, dest);
        }
        for (size_t i = 0; i < r->n_inputs; i++) {
                const struct kiln_node *in = &r->inputs[i];
                const struct kiln_bytes *n = &in->name;
                _cleanup_free_ char *dest =
                        r->inputs_dir[0]
                                ? kiln_asprintf("/%s/%.*s", r->inputs_dir, (int)n->len,
                                                (const char *)n->data)
                                : kiln_asprintf("/%.*s", (int)n->len, (const char *)n->data);
                /* A symlink is made in the sandbox and resolved there: a bind
                 * mount would follow it on the host. */
                if (in->kind == KILN_NODE_SYMLINK) {
                        _cleanup_free_ char *target = kiln_asprintf(
                                "%.*s", (int)in->target.len, (const char *)in->target.data);
                        rec_strings(p, PLAN_SYMLINK, (const char *const[]){target, dest}, 2);
                        continue;
                }
                rec_bind(p, PLAN_RDONLY | PLAN_NOSUID | PLAN_NODEV | PLAN_NOFOLLOW,
                         b->input_src[i], dest);
        }
        for (size_t i = 0; c->present && i < c->ro_paths.n; i++)
                rec_bind(p, PLAN_RDONLY | PLAN_NOSUID, c->ro_paths.v[i], c->ro_paths.v[i]);
        if (c->present && c->provide_bin_sh)
                rec_bind(p, PLAN_RDONLY | PLAN_NOSUID | PLAN_NODEV, cfg->sandbox_shell,
                         "/bin/sh");
        if (network) {
                static const char *const files[] = {"/etc/resolv.conf", "/etc/services",
                                                    "/etc/hosts"};
                for (size_t i = 0; i < KILN_ARRAY_SIZE(files); i++)
                        if (access(files[i], F_OK) == 0)
                                rec_bind(p, PLAN_RDONLY | PLAN_NOSUID | PLAN_NODEV, files[i],
                                         files[i]);
        }
        for (size_t i = 0; i < runner_n_masked_paths; i++)
                rec_string(p, PLAN_MASK, runner_masked_paths[i]);
        for (size_t i = 0; i < runner_n_readonly_paths; i++)
                rec_string(p, PLAN_READONLY, runner_readonly_paths[i]);
}

/* The command and what it runs with. */
static void plan_process(struct runner_build *b, struct kiln_buf *p)
{
        const struct kiln_build_request *r = b->req;
        const struct runner_config *cfg = &b->svc->cfg;
        const struct native_config *nc = b->svc->backend_data;
        rec_rlimit(p, RLIMIT_NOFILE, 1024, 1024);
        rec_rlimit(p, RLIMIT_CORE, 0, 0);
        /* Without cgroups, the build user (unique to the slot) may own this
         * many processes. */
        if (cfg->pids_max && !b->cgroup.n_dirs)
                rec_rlimit(p, RLIMIT_NPROC, cfg->pids_max, cfg->pids_max);
        /* No address space randomisation, as in Nix: builds are more
         * reproducible without. */
        uint32_t persona = ADDR_NO_RANDOMIZE;
        rec(p, PLAN_PERSONALITY, &persona, sizeof(persona));
        struct plan_creds creds = {1000, 100};
        rec(p, PLAN_CREDS, &creds, sizeof(creds));
        _cleanup_free_ char *cwd = kiln_asprintf("/%s", r->working_dir);
        rec_string(p, PLAN_CWD, cwd);
        for (size_t i = 0; i < r->command_args.n; i++)
                rec_string(p, PLAN_ARG, r->command_args.v[i]);
        for (size_t i = 0; i < r->n_env; i++) {
                /* Values are validated UTF-8 without NUL (build_request.c). */
                _cleanup_free_ char *kv =
                        kiln_asprintf("%s=%.*s", r->env[i].key, (int)r->env[i].value_len,
                                      (const char *)r->env[i].value);
                rec_string(p, PLAN_ENV, kv);
        }
        for (size_t off = 0; off + 4 <= nc->bpf.len;) {
                uint32_t count;
                memcpy(&count, nc->bpf.data + off, 4);
                size_t len = 4 + count * sizeof(struct sock_filter);
                rec(p, PLAN_SECCOMP, nc->bpf.data + off, len);
                off += len;
        }
}

/* The plan in a sealed memfd: kiln-sandbox reads it, nobody changes it. */
static int plan_fd(struct runner_build *b, struct kiln_error **err)
{
        struct kiln_buf p = KILN_BUF_INIT;
        struct plan_header h = {PLAN_MAGIC, PLAN_VERSION};
        kiln_buf_append(&p, &h, sizeof(h));
        plan_host(b, &p);
        plan_mounts(b, &p);
        plan_process(b, &p);
        int fd = memfd_create("kiln-plan", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        int r = fd < 0 ? -errno : kiln_write_all(fd, p.data, p.len);
        kiln_buf_done(&p);
        if (r < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
                                                    F_SEAL_SEAL) < 0) {
                int e = r < 0 ? -r : errno;
                if (fd >= 0)
                        close(fd);
                return kiln_error_errno(err, e, "sandbox: write the plan");
        }
        return fd;
}

/* --- the backend --- */

static int native_start(struct runner_build *b, int out_fd, int err_fd, struct kiln_error **err)
{
        const struct native_config *nc = b->svc->backend_data;
        if (mkdirat(b->dir_fd, "rootfs", 0755) < 0)
                return kiln_error_errno(err, errno, "bundle: create rootfs");
        _cleanup_close_ int plan = plan_fd(b, err);
        if (plan < 0)
                return plan;
        int report[2];
        if (pipe2(report, O_CLOEXEC) < 0)
                return kiln_error_errno(err, errno, "sandbox: pipe");
        char *argv[] = {nc->helper, NULL};
        struct runner_spawn sp = {
                .argv = argv,
                .out_fd = out_fd,
                .err_fd = err_fd,
                .extra_fds = {plan, report[1]},
        };
        pid_t pid = runner_spawn(&sp, err);
        close(report[1]);
        if (pid < 0) {
                close(report[0]);
                return kiln_error_prefix(err, pid, "sandbox");
        }
        int *state = kiln_malloc(sizeof(int));
        *state = report[0];
        b->backend_state = state;
        b->pid = pid;
        b->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (b->pidfd < 0) {
                int e = errno;
                kill(pid, SIGKILL);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                b->pid = 0;
                return kiln_error_errno(err, e, "sandbox: pidfd_open");
        }
        return 0;
}

/* kiln-sandbox's death takes the sandbox with it (PR_SET_PDEATHSIG, and
 * the sandbox is pid 1 of its namespace); the cgroup is killed as well. */
static void native_kill(struct runner_build *b)
{
        kill(b->pid, SIGKILL);
        while (waitpid(b->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        b->pid = 0;
}

static void native_release(struct runner_build *b)
{
        int *report = b->backend_state;
        if (report) {
                close(*report);
                free(report);
        }
        b->backend_state = NULL;
}

static char *native_setup_failure(struct runner_build *b, const char *what)
{
        (void)what;
        int *report = b->backend_state;
        if (!report)
                return NULL;
        char line[1024];
        fcntl(*report, F_SETFL, O_NONBLOCK);
        ssize_t n = read(*report, line, sizeof(line) - 1);
        if (n <= 0)
                return NULL;
        while (n > 0 && line[n - 1] == '\n')
                n--;
        line[n] = '\0';
        return kiln_asprintf("sandbox: %s", line);
}

char *kiln_runner_default_url(const char *root)
{
        char buf[32] = "";
        int fd = open("/proc/sys/user/max_user_namespaces", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0)
                close(fd);
        _cleanup_free_ char *helper = runner_find_helper();
        bool native = n > 0 && strtoul(buf, NULL, 10) > 0 && access(helper, X_OK) == 0;
        return kiln_asprintf("%s://%s", native ? "sandbox" : "oci", root);
}

const struct runner_backend runner_native_backend = {
        .scheme = "sandbox",
        .own_cgroup_leaf = true,
        .init = native_init,
        .done = native_done,
        .start = native_start,
        .kill = native_kill,
        .release = native_release,
        .setup_failure = native_setup_failure,
};
