/* The bundle of one build, on the host: <bundle root>/<uuid>/ holding
 *   root/etc/   passwd, group, hosts (the rootfs of the OCI backend)
 *   dev/        fresh device nodes and the mount points of pts and shm
 *   scratch/    a tmpfs (or a bind mount), nosuid and nodev: one directory
 *               per scratch path, and tmp/, the build's /tmp
 *   stdout.log, stderr.log   the build's output, capped
 * owned by the build's container root, mode 0700 (upstream's layout with kiln's
 * changes). Both backends build their sandbox from it, and from the inputs
 * in the service's inputs view (view.c). */
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include <kiln/util/base64.h>

#include "runner.h"

char *runner_scratch_name(const char *path, char buf[57])
{
        struct kiln_digest d;
        kiln_digest_of(path, strlen(path), &d);
        kiln_base32_encode(d.b, sizeof(d.b), buf);
        return buf;
}

/* Is `prefix` a component-wise prefix of `path`? ("" prefixes everything.) */
static bool component_prefix(const char *prefix, const char *path, const char **rest)
{
        size_t n = strlen(prefix);
        if (n == 0) {
                *rest = path;
                return true;
        }
        if (strncmp(prefix, path, n) != 0 || (path[n] != '\0' && path[n] != '/'))
                return false;
        *rest = path[n] == '/' ? path + n + 1 : path + n;
        return true;
}

const char *runner_scratch_prefix(const struct kiln_build_request *r, const char *path,
                                  const char **rest)
{
        const char *best = NULL;
        for (size_t i = 0; i < r->scratch_paths.n; i++) {
                const char *p = r->scratch_paths.v[i], *rr;
                if (component_prefix(p, path, &rr) && (!best || strlen(p) > strlen(best))) {
                        best = p;
                        *rest = rr;
                }
        }
        return best;
}

int runner_write_file_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                         struct kiln_error **err)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
                                        O_NOFOLLOW, mode);
        if (fd < 0)
                return kiln_error_errno(err, errno, "create %s", name);
        int r = kiln_write_all(fd, data, len);
        if (r < 0)
                return kiln_error_errno(err, -r, "write %s", name);
        return 0;
}

/* The user database Nix provides in its sandbox, plus localhost. A build
 * with network access also gets Nix's nsswitch.conf, and mount points for
 * the host's resolv.conf and services (and hosts, over this one). */
static int write_etc(struct runner_build *b, struct kiln_error **err)
{
        static const char passwd[] = "root:x:0:0:Nix build user:/build:/noshell\n"
                                     "nixbld:x:1000:100:Nix build user:/build:/noshell\n"
                                     "nobody:x:65534:65534:Nobody:/:/noshell\n";
        static const char group[] = "root:x:0:\n"
                                    "nixbld:!:100:\n"
                                    "nogroup:x:65534:\n";
        static const char hosts[] = "127.0.0.1 localhost\n"
                                    "::1 localhost\n";
        /* The runtime creates mount points in root/ as container root. */
        if (mkdirat(b->dir_fd, "root", 0755) < 0 ||
            fchownat(b->dir_fd, "root", b->ids.root_uid, b->ids.root_gid, 0) < 0 ||
            mkdirat(b->dir_fd, "root/etc", 0755) < 0 ||
            fchownat(b->dir_fd, "root/etc", b->ids.root_uid, b->ids.root_gid, 0) < 0)
                return kiln_error_errno(err, errno, "create the root filesystem");
        _cleanup_close_ int etc = openat(b->dir_fd, "root/etc", O_RDONLY | O_DIRECTORY |
                                         O_CLOEXEC);
        if (etc < 0)
                return kiln_error_errno(err, errno, "open root/etc");
        int r;
        if ((r = runner_write_file_at(etc, "passwd", passwd, sizeof(passwd) - 1, 0644, err)) < 0 ||
            (r = runner_write_file_at(etc, "group", group, sizeof(group) - 1, 0644, err)) < 0 ||
            (r = runner_write_file_at(etc, "hosts", hosts, sizeof(hosts) - 1, 0644, err)) < 0)
                return r;
        const struct kiln_build_constraints *c = &b->req->constraints;
        if (!c->present || !c->network_access)
                return 0;
        static const char nsswitch[] = "hosts: files dns\nservices: files\n";
        if ((r = runner_write_file_at(etc, "nsswitch.conf", nsswitch, sizeof(nsswitch) - 1, 0644,
                                      err)) < 0 ||
            (r = runner_write_file_at(etc, "resolv.conf", "", 0, 0644, err)) < 0 ||
            (r = runner_write_file_at(etc, "services", "", 0, 0644, err)) < 0)
                return r;
        return 0;
}

int runner_open_beneath(int dirfd, const char *path, int flags)
{
        struct open_how how = {
                .flags = (uint64_t)(flags | O_CLOEXEC),
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int)syscall(SYS_openat2, dirfd, *path ? path : ".", &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}

int runner_scratch_fd(struct runner_build *b, const char *scratch_path)
{
        char name[57];
        _cleanup_free_ char *rel = kiln_asprintf("scratch/%s",
                                                 runner_scratch_name(scratch_path, name));
        return runner_open_beneath(b->dir_fd, rel, O_RDONLY | O_DIRECTORY);
}

/* The build's /dev: fresh nodes of the harmless devices (never the host's,
 * so nothing done to them reaches the host), the mount points of pts and shm,
 * and the usual symlinks. Mounted read-only; owned by host root, which is
 * not mapped into the build. With kvm=1, also a node of the host's /dev/kvm
 * with its mode, as Nix's sandbox has it: a build can open it only if the
 * host lets anyone (mode 0666), since the build's users are never host root
 * nor in its group. */
static int make_dev(struct runner_build *b, struct kiln_error **err)
{
        static const struct {
                const char *name;
                unsigned major, minor;
        } nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
                     {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
        static const struct {
                const char *name, *target;
        } links[] = {{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
                     {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
                     {"ptmx", "pts/ptmx"}};
        if (mkdirat(b->dir_fd, "dev", 0755) < 0)
                return kiln_error_errno(err, errno, "create dev");
        _cleanup_close_ int dev = openat(b->dir_fd, "dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dev < 0)
                return kiln_error_errno(err, errno, "open dev");
        for (size_t i = 0; i < KILN_ARRAY_SIZE(nodes); i++)
                if (mknodat(dev, nodes[i].name, S_IFCHR | 0666,
                            makedev(nodes[i].major, nodes[i].minor)) < 0 ||
                    fchmodat(dev, nodes[i].name, 0666, 0) < 0)
                        return kiln_error_errno(err, errno, "create dev/%s", nodes[i].name);
        struct stat kvm;
        if (b->svc->cfg.kvm && stat("/dev/kvm", &kvm) == 0 && S_ISCHR(kvm.st_mode) &&
            (mknodat(dev, "kvm", S_IFCHR | (kvm.st_mode & 0777), kvm.st_rdev) < 0 ||
             fchmodat(dev, "kvm", kvm.st_mode & 0777, 0) < 0))
                return kiln_error_errno(err, errno, "create dev/kvm");
        for (size_t i = 0; i < KILN_ARRAY_SIZE(links); i++)
                if (symlinkat(links[i].target, dev, links[i].name) < 0)
                        return kiln_error_errno(err, errno, "create dev/%s", links[i].name);
        /* runc gives a tmpfs the mode of the directory it covers */
        if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0 ||
            fchmodat(dev, "shm", 01777, 0) < 0)
                return kiln_error_errno(err, errno, "create dev mount points");
        return 0;
}

/* The scratch space: a tmpfs of scratch-size bytes (or, with scratch-size=0,
 * the bundle's own filesystem bound onto itself), always nosuid and nodev on
 * the host, so nothing a build leaves there is a setuid program or a device
 * for a host user. It holds one directory per scratch path and the /tmp of
 * the build, all owned by the build user. */
static int make_scratch(struct runner_build *b, struct kiln_error **err)
{
        const struct runner_config *cfg = &b->svc->cfg;
        if (mkdirat(b->dir_fd, "scratch", 0755) < 0)
                return kiln_error_errno(err, errno, "create scratch");
        _cleanup_free_ char *where = kiln_asprintf("%s/scratch", b->dir);
        int r;
        if (cfg->scratch_size) {
                _cleanup_free_ char *opts = kiln_asprintf("size=%llu,mode=0755",
                                                          (unsigned long long)cfg->scratch_size);
                r = mount("kiln-scratch", where, "tmpfs", MS_NOSUID | MS_NODEV, opts);
        } else {
                r = mount(where, where, NULL, MS_BIND, NULL);
                if (r == 0) {
                        b->scratch_mounted = true;
                        r = mount(NULL, where, NULL,
                                  MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL);
                }
        }
        if (r < 0)
                return kiln_error_errno(err, errno, "mount scratch");
        b->scratch_mounted = true;
        if (mkdirat(b->dir_fd, "scratch/" RUNNER_SCRATCH_TMP, 01777) < 0 ||
            fchownat(b->dir_fd, "scratch/" RUNNER_SCRATCH_TMP, b->ids.build_uid,
                     b->ids.build_gid, 0) < 0 ||
            fchmodat(b->dir_fd, "scratch/" RUNNER_SCRATCH_TMP, 01777, 0) < 0)
                return kiln_error_errno(err, errno, "create scratch tmp");
        for (size_t i = 0; i < b->req->scratch_paths.n; i++) {
                char name[57];
                _cleanup_free_ char *rel = kiln_asprintf(
                        "scratch/%s", runner_scratch_name(b->req->scratch_paths.v[i], name));
                /* sorted, so duplicates are adjacent */
                if (mkdirat(b->dir_fd, rel, 0755) < 0 && errno != EEXIST)
                        return kiln_error_errno(err, errno, "create scratch directory");
                if (fchownat(b->dir_fd, rel, b->ids.build_uid, b->ids.build_gid, 0) < 0)
                        return kiln_error_errno(err, errno, "chown scratch directory");
        }
        return 0;
}

/* Makes the parent directories of rest below base, owned by uid:gid, and
 * opens the innermost without following symlinks; *leaf is rest's last
 * component. Returns the fd or -errno. */
static int make_parents(int base, const char *rest, uid_t uid, gid_t gid, const char **leaf)
{
        _cleanup_free_ char *dirs = kiln_strdup(rest);
        char *slash = strrchr(dirs, '/');
        *leaf = rest;
        if (!slash) {
                int fd = dup(base);
                return fd < 0 ? -errno : fd;
        }
        *slash = '\0';
        *leaf = rest + (slash - dirs) + 1;
        for (char *p = dirs;; p++) {
                if (*p != '/' && *p != '\0')
                        continue;
                char c = *p;
                *p = '\0';
                if (mkdirat(base, dirs, 0755) == 0)
                        (void)fchownat(base, dirs, uid, gid, 0);
                else if (errno != EEXIST)
                        return -errno;
                *p = c;
                if (!c)
                        break;
        }
        return runner_open_beneath(base, dirs, O_RDONLY | O_DIRECTORY);
}

/* kiln: every additional file lands at /<path> in the container, through
 * the scratch path it lives under. */
static int write_additional_files(struct runner_build *b, struct kiln_error **err)
{
        for (size_t i = 0; i < b->req->n_files; i++) {
                const struct kiln_additional_file *f = &b->req->files[i];
                const char *rest;
                const char *prefix = runner_scratch_prefix(b->req, f->path, &rest);
                if (!prefix || !*rest)
                        return kiln_error_set(err, EINVAL,
                                              "additional file %s is not below a scratch path",
                                              f->path);
                _cleanup_close_ int base = runner_scratch_fd(b, prefix);
                if (base < 0)
                        return kiln_error_errno(err, -base, "open scratch %s", prefix);
                const char *leaf;
                _cleanup_close_ int parent =
                        make_parents(base, rest, b->ids.build_uid, b->ids.build_gid, &leaf);
                if (parent < 0)
                        return kiln_error_errno(err, -parent, "additional file %s", f->path);
                int r = runner_write_file_at(parent, leaf, f->contents, f->len, 0644, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "additional file %s", f->path);
                (void)fchownat(parent, leaf, b->ids.build_uid, b->ids.build_gid,
                               AT_SYMLINK_NOFOLLOW);
        }
        return 0;
}

int runner_bundle_symlink_inputs(struct runner_build *b, struct kiln_error **err)
{
        const struct kiln_build_request *r = b->req;
        for (size_t i = 0; i < r->n_inputs; i++) {
                const struct kiln_node *in = &r->inputs[i];
                if (in->kind != KILN_NODE_SYMLINK)
                        continue;
                _cleanup_free_ char *path =
                        r->inputs_dir[0] ? kiln_asprintf("%s/%.*s", r->inputs_dir,
                                                         (int)in->name.len,
                                                         (const char *)in->name.data)
                                         : kiln_asprintf("%.*s", (int)in->name.len,
                                                         (const char *)in->name.data);
                const char *rest;
                const char *prefix = runner_scratch_prefix(r, path, &rest);
                if (prefix && !*rest)
                        return kiln_error_set(err, EINVAL, "input %s is a scratch path", path);
                /* Owned by the container's root, as the native sandbox makes
                 * it (and as Nix does): an input is not the build's. */
                uid_t uid = b->ids.root_uid;
                gid_t gid = b->ids.root_gid;
                _cleanup_close_ int base = prefix ? runner_scratch_fd(b, prefix)
                                                  : runner_open_beneath(b->dir_fd, "root",
                                                                        O_RDONLY | O_DIRECTORY);
                if (base < 0)
                        return kiln_error_errno(err, -base, "input %s", path);
                const char *leaf;
                _cleanup_close_ int parent =
                        make_parents(base, prefix ? rest : path, uid, gid, &leaf);
                _cleanup_free_ char *target = kiln_asprintf("%.*s", (int)in->target.len,
                                                            (const char *)in->target.data);
                if (parent < 0 || symlinkat(target, parent, leaf) < 0)
                        return kiln_error_errno(err, parent < 0 ? -parent : errno, "input %s",
                                                path);
                (void)fchownat(parent, leaf, uid, gid, AT_SYMLINK_NOFOLLOW);
        }
        return 0;
}

int runner_bundle_make(struct runner_build *b, struct kiln_error **err)
{
        const struct runner_config *cfg = &b->svc->cfg;
        b->dir = kiln_asprintf("%s/%s", cfg->bundle_root, b->id);
        /* 0700 and owned by the build's container root, who must reach
         * root/, dev/ and scratch/ while the runtime sets the build up: no
         * host user (but root) can enter it. */
        if (mkdir(b->dir, 0700) < 0)
                return kiln_error_errno(err, errno, "create %s", b->dir);
        b->dir_fd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (b->dir_fd < 0)
                return kiln_error_errno(err, errno, "open %s", b->dir);
        if (fchown(b->dir_fd, b->ids.root_uid, b->ids.root_gid) < 0)
                return kiln_error_errno(err, errno, "chown %s", b->dir);
        int r = runner_cgroup_create(&cfg->cgroups, b->id, cfg->memory_max, cfg->pids_max,
                                     b->svc->backend->own_cgroup_leaf,
                                     &b->cgroup, err);
        if (r < 0)
                return r;
        if ((r = write_etc(b, err)) < 0 || (r = make_dev(b, err)) < 0 ||
            (r = make_scratch(b, err)) < 0 || (r = write_additional_files(b, err)) < 0)
                return r;
        b->out_log = openat(b->dir_fd, "stdout.log", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                            0600);
        b->err_log = openat(b->dir_fd, "stderr.log", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                            0600);
        if (b->out_log < 0 || b->err_log < 0)
                return kiln_error_errno(err, errno, "create the build log");
        return 0;
}

int runner_bundle_mount_inputs(struct runner_build *b, struct kiln_error **err)
{
        const struct kiln_build_request *r = b->req;
        if (r->n_inputs == 0)
                return 0;
        int rc = runner_view_acquire(b->svc, &b->view, err);
        if (rc < 0)
                return rc;
        b->input_src = kiln_calloc(r->n_inputs, sizeof(*b->input_src));
        for (size_t i = 0; i < r->n_inputs; i++) {
                if (r->inputs[i].kind == KILN_NODE_SYMLINK)
                        continue; /* made in the sandbox, never bound */
                rc = runner_view_source(b->view, &r->inputs[i], &b->input_src[i], err);
                if (rc < 0)
                        return kiln_error_prefix(err, rc, "input %.*s", (int)r->inputs[i].name.len,
                                                 (const char *)r->inputs[i].name.data);
        }
        return 0;
}

void runner_bundle_release_inputs(struct runner_build *b)
{
        for (size_t i = 0; b->input_src && i < b->req->n_inputs; i++)
                free(b->input_src[i]);
        free(b->input_src);
        b->input_src = NULL;
        runner_view_release(b->svc, b->view);
        b->view = NULL;
}
